//! A bounded fuzz of the review decoder and the decision: arbitrary bytes and arbitrary JSON
//! shapes (inside and around a pod) never panic; they give a clean error or a valid response
//! whose patch applies. `PROPTEST_CASES` sets the number of cases.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use proptest::{collection, prelude::*, sample::select};
use serde_json::{Map, Value, json};
use stowage_policy::Config;
use stowage_webhook::{AdmissionRequest, AdmitContext, StaticMembers, decide, decode_request};

const CONFIG: &str = r#"
schedulerName: stowage
pools: {pg: {nodeSelector: {pool: pg}, tolerations: [{key: pool, value: pg, effect: NoSchedule}]}}
profiles:
  p:
    qos: guaranteed
    integerCPU: true
    pool: pg
    priorityClassName: db
    zoneSpread: required
    nodeSpread: required
    resources: {containers: {db: {requests: {cpu: 1500m}, limits: {memory: 1Gi}}}, default: {requests: {cpu: 100m, memory: 64Mi}}}
  o:
    override: true
    zoneSpread: preferred
    nodeSpread: preferred
    resources: {default: {requests: {cpu: "1", memory: 1Gi}, limits: {cpu: "2"}}}
"#;

/// Decodes and decides; panics only on a broken contract.
fn exercise(bytes: &[u8], cfg: &Config) {
    match decode_request(bytes) {
        Err(e) => assert!(!e.to_string().is_empty() && !e.reason().is_empty()),
        Ok(request) => {
            let members = StaticMembers::default().with("db", "sts", 3);
            let ctx = AdmitContext::new(cfg).members(&members);
            let verdict = decide(&request, &ctx);
            common::check_response(request.object.as_ref(), &request.uid, &verdict.response);
            // A mutated pod, admitted again, needs nothing more.
            if let (Some(patch), Some(object)) = (&verdict.response.patch, &request.object) {
                let again = AdmissionRequest { object: Some(common::apply(object, patch)), ..request.clone() };
                let second = decide(&again, &ctx).response;
                assert!(second.allowed && second.patch.is_none(), "not idempotent: {second:?}");
            }
        }
    }
}

const KEYS: &[&str] = &[
    "metadata",
    "annotations",
    "labels",
    "spec",
    "containers",
    "initContainers",
    "name",
    "resources",
    "requests",
    "limits",
    "cpu",
    "memory",
    "affinity",
    "podAntiAffinity",
    "nodeAffinity",
    "requiredDuringSchedulingIgnoredDuringExecution",
    "preferredDuringSchedulingIgnoredDuringExecution",
    "nodeSelectorTerms",
    "matchExpressions",
    "podAffinityTerm",
    "labelSelector",
    "matchLabels",
    "topologyKey",
    "tolerations",
    "topologySpreadConstraints",
    "whenUnsatisfiable",
    "maxSkew",
    "minDomains",
    "priorityClassName",
    "priority",
    "preemptionPolicy",
    "schedulerName",
    "restartPolicy",
    "ownerReferences",
    "stowage.io/group",
    "stowage.io/profile",
    "a/b~c",
    "~1",
    "",
];

const STRINGS: &[&str] = &[
    "",
    "p",
    "o",
    "db",
    "pg",
    "Always",
    "1",
    "1500m",
    "2Gi",
    "-1",
    "1e30",
    "Gi",
    "DoNotSchedule",
    "ScheduleAnyway",
    "topology.kubernetes.io/zone",
    "kubernetes.io/hostname",
    "default-scheduler",
    "In",
    "StatefulSet",
    "apps/v1",
];

const QUANTITIES: &[&str] = &["100m", "1500m", "1", "2", "0.5", "64Mi", "1Gi", "2Gi", "1e3", "0"];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => select(KEYS).prop_map(str::to_owned), 1 => "\\PC{0,8}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        select(STRINGS).prop_map(|s| json!(s)),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn quantity_map() -> impl Strategy<Value = Value> {
    let quantity = prop_oneof![6 => select(QUANTITIES).prop_map(|q| json!(q)), 1 => leaf()];
    collection::btree_map(select(vec!["cpu", "memory", "example.com/gpu"]), quantity, 0..3)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// Container resources: mostly well formed, sometimes arbitrary.
fn resources() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (quantity_map(), quantity_map()).prop_map(|(requests, limits)| json!({"requests": requests, "limits": limits})),
        1 => Just(json!({})),
        1 => Just(Value::Null),
        1 => arb_json(),
    ]
}

/// A value for a pod spec field: a well-formed sample or arbitrary JSON.
fn spec_field() -> impl Strategy<Value = (&'static str, Value)> {
    let term =
        json!({"labelSelector": {"matchLabels": {"stowage.io/group": "g"}}, "topologyKey": "kubernetes.io/hostname"});
    prop_oneof![
        4 => select(vec![
            ("affinity", json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term.clone()]}})),
            ("affinity", json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 3, "podAffinityTerm": term}]}})),
            ("affinity", json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": []}, {}]}}})),
            ("affinity", Value::Null),
            ("tolerations", json!([{"key": "pool", "value": "pg", "effect": "NoSchedule"}, {"operator": "Exists"}])),
            ("topologySpreadConstraints", json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}])),
            ("priorityClassName", json!("")),
            ("priority", json!(2_000_000_000)),
            ("schedulerName", json!("default-scheduler")),
            ("futureField", json!({"x": [1, 2]})),
        ]),
        1 => (select(KEYS), arb_json()),
    ]
}

/// A pod whose parts are each either well formed or arbitrary JSON.
fn pod() -> impl Strategy<Value = Value> {
    let container = prop_oneof![
        4 => (select(vec!["db", "side", "x"]), resources(), any::<bool>()).prop_map(|(name, resources, sidecar)| {
            let mut c = json!({"name": name, "resources": resources});
            if sidecar {
                c["restartPolicy"] = json!("Always");
            }
            c
        }),
        1 => arb_json(),
    ];
    (
        collection::vec(container.clone(), 0..3),
        collection::vec(container, 0..2),
        select(vec![
            json!({"stowage.io/profile": "p"}),
            json!({"stowage.io/profile": "o", "stowage.io/group": "g"}),
            json!({"stowage.io/profile": "p", "stowage.io/members": "2"}),
            json!({"stowage.io/zone-spread": "x"}),
        ]),
        collection::vec(spec_field(), 0..4),
        collection::vec((select(KEYS), arb_json()), 0..2),
        any::<bool>(),
    )
        .prop_map(|(containers, inits, annotations, spec_extra, meta_extra, owned)| {
            let mut spec = Map::new();
            spec.insert("containers".to_owned(), Value::Array(containers));
            spec.insert("initContainers".to_owned(), Value::Array(inits));
            for (k, v) in spec_extra {
                spec.insert(k.to_owned(), v);
            }
            let mut meta = Map::new();
            meta.insert("name".to_owned(), json!("p"));
            meta.insert("annotations".to_owned(), annotations);
            if owned {
                meta.insert("ownerReferences".to_owned(), json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "sts", "uid": "u", "controller": true}]));
            }
            for (k, v) in meta_extra {
                if k != "annotations" {
                    meta.insert(k.to_owned(), v);
                }
            }
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        })
}

fn review() -> impl Strategy<Value = Value> {
    let object = prop_oneof![8 => pod(), 1 => arb_json()];
    let operation = prop_oneof![8 => Just(json!("CREATE")), 1 => select(vec![json!("UPDATE"), json!("DELETE"), json!("CONNECT"), json!(7)])];
    let uid = prop_oneof![12 => Just(json!("u-1")), 1 => leaf()];
    let sub = prop_oneof![12 => Just(None), 1 => arb_json().prop_map(Some)];
    (object, operation, uid, any::<bool>(), sub).prop_map(|(object, operation, uid, dry_run, sub)| {
        let mut request = json!({
            "uid": uid, "operation": operation, "namespace": "db", "dryRun": dry_run, "object": object,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
        });
        if let Some(sub) = sub {
            request["subResource"] = sub;
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(512)))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes, &common::config(CONFIG));
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        exercise(&serde_json::to_vec(&v).unwrap(), &common::config(CONFIG));
    }

    #[test]
    fn arbitrary_reviews_get_a_valid_answer(v in review()) {
        exercise(&serde_json::to_vec(&v).unwrap(), &common::config(CONFIG));
    }

    #[test]
    fn truncated_reviews_are_clean_errors(v in review(), cut in any::<prop::sample::Index>()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let cut = cut.index(bytes.len());
        prop_assert!(decode_request(&bytes[..cut]).is_err());
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_clean_errors() {
    let cfg = common::config(CONFIG);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    exercise(deep.as_bytes(), &cfg);
    let deep_object = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","operation":"CREATE","object":{}1{}}}}}"#,
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert!(decode_request(deep_object.as_bytes()).is_err());
    let huge = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","object":{"spec":{"priority":1e400}}}}"#;
    assert!(decode_request(huge).is_err());
    // Huge arrays decode and are answered.
    let many: Vec<Value> = (0..20_000).map(|i| json!({"key": format!("k{i}"), "operator": "Exists"})).collect();
    let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "operation": "CREATE", "namespace": "db",
        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "resource": {"group": "", "version": "v1", "resource": "pods"},
        "object": {"metadata": {"annotations": {"stowage.io/profile": "p", "stowage.io/group": "g"}},
                   "spec": {"containers": [{"name": "db"}], "tolerations": many}}}});
    exercise(&serde_json::to_vec(&review).unwrap(), &cfg);
}
