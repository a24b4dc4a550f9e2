# syntax=docker/dockerfile:1
# The service's image: docker build -t ghcr.io/jenkins-autopilot/jenkins-autopilot:0.1.0 .
# (the name and tag the kustomization in ci-cd-integration/k8s sets). Runs as user 10001,
# as the manifests do, on a read-only root filesystem: it writes only to its data directory
# (a volume) and /tmp (an emptyDir in the manifests).

FROM docker.io/library/rust:1.95.0-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
COPY benches/ benches/
COPY tests/ tests/
COPY ci-cd-integration/ ci-cd-integration/
RUN cargo build --release --locked --bin jenkins-autopilot

# glibc and libgcc only: the binary links SQLite and TLS statically.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/jenkins-autopilot /usr/local/bin/jenkins-autopilot
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jenkins-autopilot"]
CMD ["serve", "--data-dir", "/var/lib/jenkins-autopilot"]
