//! The `stowage` binary's offline commands, run as a user would run them.

use std::process::Command;

fn stowage(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stowage")).args(args).output().expect("run stowage");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn config_check_accepts_the_bundled_example() {
    let (code, out, err) = stowage(&["config", "check", &example("config.yaml")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok (3 profile(s)"), "{out}");
}

#[test]
fn config_check_prints_every_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "profiles:\n  pg:\n    qos: gold\n    zoneSpred: required\n    resources: {default: {requests: {memory: 2Gb}}}\n",
    )
    .unwrap();
    let (code, out, _) = stowage(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("3 problem(s)"), "{out}");
    assert!(out.contains("profiles.pg.qos: \"gold\" is not allowed; allowed values: guaranteed, burstable"), "{out}");
    assert!(out.contains("profiles.pg.zoneSpred: unknown field (did you mean \"zoneSpread\"?)"), "{out}");
    assert!(
        out.contains("profiles.pg.resources.default.requests.memory: \"2Gb\" is not a Kubernetes quantity"),
        "{out}"
    );
}

#[test]
fn config_check_reports_yaml_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "profiles: [unclosed\n").unwrap();
    let (code, out, _) = stowage(&["config", "check", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("is not valid YAML"), "{out}");
}

#[test]
fn config_check_of_a_missing_file_fails_cleanly() {
    let (code, _, err) = stowage(&["config", "check", "/nonexistent/stowage.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read config /nonexistent/stowage.yaml"), "{err}");
}
