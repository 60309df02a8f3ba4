//! Error messages that echo pod or config input stay small whatever the input (security review,
//! issue 12), and values that only look like numbers are refused.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stowage_policy::{Config, config, resolve};

fn meta(ann: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta { namespace: Some("db".into()), annotations: Some(ann), ..ObjectMeta::default() }
}

fn cfg() -> Config {
    Config::from_yaml("profiles: {pg: {quorum: zone}}\n").unwrap()
}

/// The apiserver allows 256 KiB of annotations; about 10,000 unknown keys fit.
#[test]
fn unknown_keys_are_named_a_few_times_then_counted() {
    let ann: BTreeMap<String, String> =
        (0..10_000).map(|i| (format!("stowage.io/unknown-key-{i:05}"), String::new())).collect();
    let text = resolve(&meta(ann), &cfg()).unwrap_err().to_string();
    assert!(text.len() < 1024, "{} bytes: {}", text.len(), &text[..text.len().min(600)]);
    assert!(text.contains("stowage.io/unknown-key-00000"), "{text}");
    assert!(text.contains("and 9995 more"), "{text}");
    assert_eq!(text.matches("stowage.io/members").count(), 1, "the known keys are listed once: {text}");
}

#[test]
fn one_unknown_key_keeps_its_hint() {
    let ann = BTreeMap::from([("stowage.io/zone-sprad".to_owned(), "x".to_owned())]);
    let text = resolve(&meta(ann), &cfg()).unwrap_err().to_string();
    assert!(text.starts_with("annotation stowage.io/zone-sprad is not a stowage policy key"), "{text}");
    assert!(text.contains("did you mean stowage.io/zone-spread?"), "{text}");
}

#[test]
fn long_keys_and_values_are_cut_short() {
    let long = "x".repeat(200_000);
    let ann = BTreeMap::from([
        (format!("stowage.io/{long}"), String::new()),
        ("stowage.io/profile".to_owned(), long.clone()),
        ("stowage.io/quorum".to_owned(), long.clone()),
        ("stowage.io/members".to_owned(), long.clone()),
        ("stowage.io/group".to_owned(), long.clone()),
        ("stowage.io/pool".to_owned(), long),
    ]);
    let errors = resolve(&meta(ann), &cfg()).unwrap_err();
    assert_eq!(errors.0.len(), 6, "{errors}");
    for e in &errors.0 {
        let text = e.to_string();
        assert!(text.len() < 400, "{} bytes: {}", text.len(), &text[..400]);
        assert!(text.contains('…'), "{text}");
    }
}

#[test]
fn members_must_be_a_canonical_decimal() {
    for bad in ["+3", "03", "0", "-1", " 3", "3 ", "1000", "3.0", "٣"] {
        let ann = BTreeMap::from([("stowage.io/members".to_owned(), bad.to_owned())]);
        assert!(resolve(&meta(ann), &cfg()).is_err(), "{bad:?} must be refused");
    }
    for (good, n) in [("1", 1), ("3", 3), ("999", 999)] {
        let ann = BTreeMap::from([("stowage.io/members".to_owned(), good.to_owned())]);
        assert_eq!(resolve(&meta(ann), &cfg()).unwrap().unwrap().members, Some(n));
    }
}

/// An empty file (a ConfigMap key emptied by mistake, a truncated write) must not hot-reload
/// over a good config as "all defaults".
#[test]
fn an_empty_or_comment_only_config_is_invalid() {
    for text in ["", "  \n\n", "# profiles were here\n", "---\n", "--- # nothing\n...\n", "null\n", "~"] {
        match Config::from_yaml(text) {
            Err(config::Error::Invalid(issues)) => {
                assert_eq!(issues.len(), 1, "{text:?}: {issues:?}");
                assert!(issues[0].to_string().contains("empty"), "{text:?}: {}", issues[0]);
            }
            other => panic!("{text:?} must be invalid, got {other:?}"),
        }
    }
    assert!(Config::from_yaml("{}\n").is_ok(), "an explicit empty mapping means the defaults");
    assert!(Config::from_yaml("# defaults\napiVersion: stowage.io/v1alpha1\n").is_ok());
}

#[test]
fn config_problems_echo_input_briefly() {
    let long = "y".repeat(100_000);
    let many: String = (0..5_000).map(|i| format!("field{i}: 1\n")).collect();
    // YAML keys are at most 1024 characters.
    let key = "k".repeat(1000);
    let text = format!("profiles:\n  pg:\n    qos: {long}\n    zoneSpread: {long}\n{key}: 1\n{many}");
    let Err(e) = Config::from_yaml(&text) else { panic!("invalid") };
    let shown = e.to_string();
    assert!(shown.len() < 8 * 1024, "{} bytes", shown.len());
    assert!(shown.contains("more problem(s)"), "{}", &shown[..shown.len().min(2000)]);
    let config::Error::Invalid(issues) = e else { panic!("schema problems") };
    assert!(issues.len() > 5_000, "every problem is still kept for `config check`");
    assert!(issues.iter().all(|i| i.to_string().len() < 600), "each problem is short");
}
