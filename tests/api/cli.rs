//! The command line: `check-config` reports every bad field and its path.

use std::process::Command;

fn check_config(dir: &std::path::Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jenkins-autopilot"));
    cmd.arg("check-config").arg(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_lists_every_invalid_field_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("service.yaml"),
        "server:\n  listen: \"not an address\"\n  body_limt_bytes: 5\ndatabase:\n  url: mysql://x\n  max_connections: many\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "server: [unclosed\n").unwrap();
    let (code, _, stderr) = check_config(dir.path(), &[("AUTOPILOT_INGEST__MAX_BATCH", "0")]);
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "service.yaml: server.listen",
        "service.yaml: server.body_limt_bytes: is not a known setting",
        "service.yaml: database.url",
        "service.yaml: database.max_connections",
        "env AUTOPILOT_INGEST__MAX_BATCH: ingest.max_batch",
        "broken.yaml: is not valid YAML",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn check_config_accepts_the_shipped_files() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ci-cd-integration");
    let (code, stdout, stderr) = check_config(&shipped, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("settings are valid"));
}

#[test]
fn the_settings_in_the_kubernetes_configmap_are_valid() {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("ci-cd-integration/k8s/configmap.yaml");
    let map: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = map["data"].as_object().unwrap();
    assert!(files.contains_key("jenkins-scaling.yaml"));
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content.as_str().unwrap()).unwrap();
    }
    let (code, _, stderr) = check_config(dir.path(), &[]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn the_example_pools_are_valid() {
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ci-cd-integration/examples");
    let (code, _, stderr) = check_config(&examples, &[]);
    assert_eq!(code, 0, "{stderr}");
}
