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

/// `stowage explain` on the bundled examples, as the README runs it.
fn explain_examples(snapshot: &str, output: &str) -> (i32, String, String) {
    stowage(&[
        "explain",
        "--snapshot",
        snapshot,
        "--pod",
        &example("pod.yaml"),
        "--config",
        &example("config.yaml"),
        "--output",
        output,
    ])
}

#[test]
fn explain_places_the_example_member_in_the_zone_without_one() {
    let (code, out, err) = explain_examples(&example("cluster.yaml"), "text");
    assert_eq!(code, 0, "{out}{err}");
    // Members run in zone-a and zone-b; the quorum guard refuses both zones, local data
    // prefers the node with the fitting volume.
    assert!(out.contains("members per zone: zone-a=1 zone-b=1 zone-c=0"), "{out}");
    assert!(out.contains("extender prefers: node-c1"), "{out}");
    assert!(out.contains("set schedulerName stowage"), "{out}");
    let refused = out.lines().filter(|l| l.contains("(quorum guard)")).count();
    assert_eq!(refused, 2, "{out}");
}

#[test]
fn explain_reads_a_kubectl_json_snapshot_like_the_yaml_one() {
    let yaml = std::fs::read_to_string(example("cluster.yaml")).unwrap();
    let items: Vec<serde_json::Value> = yaml
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
        .filter(|v| !v.is_null())
        .flat_map(|v| match v.get("items") {
            Some(serde_json::Value::Array(items)) => items.clone(),
            _ => vec![v],
        })
        .collect();
    assert!(items.len() > 10, "{} documents", items.len());
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.json");
    std::fs::write(&file, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    for output in ["text", "json"] {
        let from_yaml = explain_examples(&example("cluster.yaml"), output);
        let from_json = explain_examples(file.to_str().unwrap(), output);
        assert_eq!(from_yaml.0, 0, "{}", from_yaml.2);
        assert_eq!(from_json, from_yaml, "--output {output}");
    }
}

#[test]
fn explain_json_output_has_every_node_of_the_snapshot() {
    let (code, out, err) = explain_examples(&example("cluster.yaml"), "json");
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["admission"]["allowed"], true, "{out}");
    let text = serde_json::to_string(&v["placement"]).unwrap();
    for node in ["node-a1", "node-a2", "node-b1", "node-b2", "node-c1", "node-c2"] {
        assert!(text.contains(node), "{node} missing from {text}");
    }
}

#[test]
fn explain_of_a_malformed_snapshot_names_the_document_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, "apiVersion: v1\nkind: Node\nmetadata: {name: a}\n---\nkind: Pod\nspec: [\n").unwrap();
    let (code, out, err) = explain_examples(file.to_str().unwrap(), "text");
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("snapshot document 2 (line 5) is not valid YAML"), "{err}");
    std::fs::write(&file, "{\"kind\": \"List\", \"items\": [}").unwrap();
    let (code, _, err) = explain_examples(file.to_str().unwrap(), "text");
    assert_ne!(code, 0);
    assert!(err.contains("snapshot document 1 (line 1) is not valid JSON"), "{err}");
}

#[test]
fn mutate_prints_a_patch_that_applies_to_the_example_pod() {
    let (code, out, err) = stowage(&["mutate", "--pod", &example("pod.yaml"), "--config", &example("config.yaml")]);
    assert_eq!(code, 0, "{err}");
    let patch: json_patch::Patch = serde_json::from_str(&out).unwrap();
    let mut pod: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(example("pod.yaml")).unwrap()).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(pod["spec"]["schedulerName"], "stowage");
    assert_eq!(pod["metadata"]["labels"]["stowage.io/group"], "pg-main");
    for c in pod["spec"]["containers"].as_array().unwrap() {
        assert_eq!(c["resources"]["requests"], c["resources"]["limits"], "Guaranteed QoS: {c}");
    }
    assert!(err.contains("warning: set schedulerName stowage"), "{err}");
}

/// `stowage serve` (from a snapshot: no cluster needed) disconnects a client that sends part of
/// a request head and stalls after the header read timeout, on the plain extender port and on
/// the TLS webhook port, long before the idle keep-alive timeout (120 s by default).
#[tokio::test(flavor = "multi_thread")]
async fn serve_disconnects_a_stalled_request_head_before_the_idle_timeout() {
    use std::time::{Duration, Instant};

    /// Sends a partial request head and waits for the server to close; returns how long it held.
    fn held(mut stream: impl std::io::Read + std::io::Write) -> Duration {
        stream.write_all(b"POST /scheduler/filter HTTP/1.1\r\nHost: stowage\r\nContent-Ty").unwrap();
        stream.flush().unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        started.elapsed()
    }

    let dir = tempfile::tempdir().unwrap();
    let generated = stowage_certs::generate_to_dir(&stowage_certs::GenerateOptions::default(), dir.path()).unwrap();
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_stowage"));
    let args = stowage_testkit::StowageArgs::new(&binary, "extender,webhook")
        .arg(format!("--snapshot={}", example("cluster.yaml")))
        .tls_dir(dir.path());
    let stowage = stowage_testkit::StowageProcess::start(&args, &dir.path().join("stowage.log")).await.unwrap();
    let limit = Duration::from_secs(10);
    let (extender, webhook) = (stowage.extender, stowage.webhook);
    let ca = std::fs::read_to_string(&generated.ca_cert).unwrap();

    let plain = tokio::task::spawn_blocking(move || {
        let tcp = std::net::TcpStream::connect(extender).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        held(tcp)
    });
    let tls = tokio::task::spawn_blocking(move || {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
        let tcp = std::net::TcpStream::connect(webhook).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        held(rustls::StreamOwned::new(conn, tcp))
    });
    let (plain, tls) = (plain.await.unwrap(), tls.await.unwrap());
    assert!(plain < limit, "the plain extender port kept a stalled request head open for {plain:?}");
    assert!(tls < limit, "the TLS webhook port kept a stalled request head open for {tls:?}");
    drop(stowage);
}
