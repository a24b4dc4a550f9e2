//! The Jenkins shared library (jenkins/) in the real Groovy runtime against this service:
//! jenkins/test/AutopilotTest.groovy drives vars/autopilot.groovy through a harness that
//! provides the pipeline steps, with real HTTP and a real shell.

use crate::scaling::{NS, rig};
use jenkins_autopilot::config::KubernetesMode;
use jenkins_autopilot::tokens::Scope;
use std::path::{Path, PathBuf};
use std::process::Command;

/// JAVA_HOME for the `groovy` launcher: as set, else the JDK behind `java` on the PATH.
fn java_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        return Some(PathBuf::from(home));
    }
    let out = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v java)\""])
        .output()
        .ok()?;
    let java = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    Some(java.parent()?.parent()?.to_path_buf())
}

/// The library's tests run against a service with a `linux` pool on a fake Jenkins and a
/// fake Kubernetes API server: `autopilot.node('linux')` must scale it.
#[tokio::test]
async fn the_shared_library_passes_its_groovy_tests_against_the_live_service() {
    let rig = rig(
        KubernetesMode::Apply,
        |j, k| {
            j.add_agent("agent-linux-a", "linux", 1, 1);
            k.add_deployment(NS, "agent-linux", &["agent-linux-a"]);
        },
        |_| {},
    )
    .await;
    rig.settled().await;
    let app = &rig.app;
    let token = app.jwt(&[Scope::ProfilesRead, Scope::BuildsWrite]);
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("jenkins");
    let mut cmd = Command::new("groovy");
    cmd.arg("-cp")
        .arg(format!(
            "{}:{}",
            lib.join("src").display(),
            lib.join("test").display()
        ))
        .arg(lib.join("test/AutopilotTest.groovy"))
        .env("AUTOPILOT_TEST_URL", &app.address)
        .env("AUTOPILOT_TEST_TOKEN", &token)
        .env("AUTOPILOT_TEST_LIB", &lib)
        .current_dir(&lib);
    if let Some(home) = java_home() {
        cmd.env("JAVA_HOME", home);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run groovy (Debian package `groovy`; ./scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Groovy tests failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("13 passed, 0 failed"), "{stdout}");

    // node('linux') woke the pool: the only scale-up, by the announcement (the periodic
    // reconcile is an hour away and the fake Jenkins lists no queued build).
    let announced_ms: u128 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("announced-at-ms "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the node() test prints when it announced");
    assert!(rig.kube.replicas(NS, "agent-linux") >= 2);
    let patch = rig.kube.scale_patches().remove(0);
    let patched_ms = patch
        .wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(patched_ms >= announced_ms, "the scale-up followed the call");
    println!(
        "autopilot.node('linux') -> scale PATCH: {} ms",
        patched_ms - announced_ms
    );
    let applied = rig.applied("linux", "event").await;
    let announced = rig
        .decisions("linux")
        .await
        .into_iter()
        .any(|d| d["outcome"] == "applied" && d["inputs"]["queue_sources"]["announced"] == 1);
    assert!(announced, "{applied}");

    // What the library reported is in the service: the build it ran, with its stage.
    let (status, a) = app
        .get_authed(
            "/api/v1/builds/prod/groovy/app/1/analysis",
            &app.jwt(&[Scope::ReportsRead]),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["performance"]["profile"], "heavy");
    assert_eq!(a["performance"]["memory_peak"], "300Mi");
    assert_eq!(a["performance"]["cpu_average"], "250m");
    assert_eq!(a["performance"]["stages"][0]["name"], "Compile");
    let (_, rec) = app
        .get_authed(
            "/api/v1/jobs/prod/groovy/learner/recommendation?type=test",
            &app.jwt(&[Scope::ProfilesRead]),
        )
        .await;
    assert_eq!(rec["samples"], 5, "{rec}");
    assert_eq!(rec["source"], "learned", "{rec}");
}
