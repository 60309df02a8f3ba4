//! Properties of the planner over generated pods and profiles: the patch applies, planning its
//! result changes nothing, and the resource rules hold (Guaranteed means requests == limits,
//! nothing the user set is lowered without override, integer CPU means whole cores, requests
//! never exceed limits, lists are only appended to).
//!
//! `PROPTEST_CASES` sets the number of cases.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use std::collections::BTreeMap;

use proptest::{option, prelude::*, sample::select};
use serde_json::{Map, Value, json};
use stowage_policy::{
    Config, GroupKey, LocalData, Policy, Profile, QosMode, Quantity, Quorum, Spread,
    config::{Pool, PoolToleration, QuantityText, ResourceSpec, Resources, Weights},
};
use stowage_webhook::plan;

const CPUS: &[&str] = &["50m", "100m", "250m", "0.5", "1", "1000m", "1500m", "2", "2.5", "4"];
const MEMS: &[&str] = &["64Mi", "128Mi", "1Gi", "1024Mi", "2Gi", "3G", "4Gi"];

fn q(text: &str) -> Quantity {
    Quantity::parse(text).unwrap()
}

/// An optional (request, limit) pair with request <= limit.
fn pair(values: &'static [&'static str]) -> impl Strategy<Value = (Option<&'static str>, Option<&'static str>)> {
    (option::of(select(values)), option::of(select(values))).prop_map(|(a, b)| match (a, b) {
        (Some(a), Some(b)) if q(a) > q(b) => (Some(b), Some(a)),
        other => other,
    })
}

/// Container resources in every shape a pod may carry them.
fn resources() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!({}))),
        1 => Just(Some(json!({"requests": null, "limits": {}}))),
        6 => (pair(CPUS), pair(MEMS), any::<bool>()).prop_map(|((rc, lc), (rm, lm), extra)| {
            let mut requests = Map::new();
            let mut limits = Map::new();
            for (is_request, key, v) in [(true, "cpu", rc), (false, "cpu", lc), (true, "memory", rm), (false, "memory", lm)] {
                if let Some(v) = v {
                    let map = if is_request { &mut requests } else { &mut limits };
                    map.insert(key.to_owned(), json!(v));
                }
            }
            if extra {
                limits.insert("example.com/gpu".to_owned(), json!("1"));
            }
            let mut r = Map::new();
            if !requests.is_empty() {
                r.insert("requests".to_owned(), Value::Object(requests));
            }
            if !limits.is_empty() {
                r.insert("limits".to_owned(), Value::Object(limits));
            }
            Some(Value::Object(r))
        }),
    ]
}

fn container(name: String, sidecar: bool) -> impl Strategy<Value = Value> {
    resources().prop_map(move |res| {
        let mut c = Map::new();
        c.insert("name".to_owned(), json!(name));
        c.insert("image".to_owned(), json!("img"));
        if sidecar {
            c.insert("restartPolicy".to_owned(), json!("Always"));
        }
        if let Some(res) = res {
            c.insert("resources".to_owned(), res);
        }
        Value::Object(c)
    })
}

fn containers(prefix: &'static str, min: usize, max: usize) -> impl Strategy<Value = Vec<Value>> {
    proptest::collection::vec(any::<bool>(), min..=max).prop_flat_map(move |sidecars| {
        sidecars
            .into_iter()
            .enumerate()
            .map(|(i, sidecar)| container(format!("{prefix}{i}"), prefix == "i" && sidecar))
            .collect::<Vec<_>>()
    })
}

fn spec_of(cpu: (Option<&str>, Option<&str>), mem: (Option<&str>, Option<&str>)) -> ResourceSpec {
    let mut spec = ResourceSpec::default();
    for (res, (req, lim)) in [("cpu", cpu), ("memory", mem)] {
        if let Some(t) = req {
            spec.requests.insert(res.to_owned(), QuantityText { text: t.to_owned(), value: q(t) });
        }
        if let Some(t) = lim {
            spec.limits.insert(res.to_owned(), QuantityText { text: t.to_owned(), value: q(t) });
        }
    }
    spec
}

fn spread() -> impl Strategy<Value = Spread> {
    select(vec![Spread::Required, Spread::Preferred, Spread::Off])
}

#[derive(Debug, Clone)]
struct Case {
    pod: Value,
    profile: Profile,
    group: Option<String>,
    members: Option<u32>,
    zone: Spread,
    node: Spread,
    pool: bool,
    scheduler: Option<String>,
    managed: bool,
}

const GROUP: &str = "pg";

fn other_term() -> Value {
    json!({"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"})
}

fn group_term() -> Value {
    json!({"labelSelector": {"matchExpressions": [{"key": "stowage.io/group", "operator": "In", "values": [GROUP]}]},
           "topologyKey": "kubernetes.io/hostname"})
}

fn case() -> impl Strategy<Value = Case> {
    let profile = (
        (select(vec![QosMode::Guaranteed, QosMode::Burstable]), any::<bool>(), any::<bool>()),
        option::of((pair(CPUS), pair(MEMS))),
        option::of((pair(CPUS), pair(MEMS))),
        option::of(Just("db-critical".to_owned())),
        1u32..=5,
    )
        .prop_map(|((qos, integer_cpu, override_user), default, named, priority_class_name, min_domains)| {
            let mut containers = BTreeMap::new();
            if let Some((cpu, mem)) = named {
                containers.insert("c0".to_owned(), spec_of(cpu, mem));
                containers.insert("i0".to_owned(), spec_of(cpu, mem));
            }
            Profile {
                resources: Resources { containers, default: default.map(|(cpu, mem)| spec_of(cpu, mem)) },
                qos,
                integer_cpu,
                override_user,
                priority_class_name,
                min_domains,
                ..Profile::default()
            }
        });
    let labels = select(vec![
        None,
        Some(Value::Null),
        Some(json!({})),
        Some(json!({"app": "x", "a/b~c": "1"})),
        Some(json!({"stowage.io/group": GROUP})),
    ]);
    let affinity = select(vec![
        None,
        Some(Value::Null),
        Some(json!({})),
        Some(json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [other_term()]}})),
        Some(json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [group_term()],
                                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": other_term()}]}})),
        Some(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]},
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["pg"]}]}]}}})),
        Some(json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}},
                    "podAntiAffinity": null})),
    ]);
    let tolerations = select(vec![
        None,
        Some(Value::Null),
        Some(json!([])),
        Some(json!([{"key": "pool", "operator": "Equal", "value": "pg", "effect": "NoSchedule"}])),
        Some(
            json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]),
        ),
    ]);
    let spreads = select(vec![
        None,
        Some(json!([])),
        Some(json!([{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                     "labelSelector": {"matchLabels": {"app": "x"}}}])),
        Some(
            json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                     "labelSelector": {"matchLabels": {"stowage.io/group": GROUP}}}]),
        ),
        Some(
            json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"a": "b"}}}]),
        ),
    ]);
    let scalars = (
        select(vec![None, Some("other-class")]),
        select(vec![None, Some(json!(0))]),
        select(vec![None, Some("PreemptLowerPriority"), Some("Never")]),
        select(vec![None, Some("default-scheduler"), Some("volcano")]),
    );
    (
        containers("c", 1, 3),
        containers("i", 0, 2),
        (labels, affinity, tolerations, spreads, scalars),
        profile,
        (option::of(Just(GROUP.to_owned())), option::of(1u32..=7), spread(), spread(), any::<bool>()),
        (option::of(Just("stowage".to_owned())), any::<bool>()),
    )
        .prop_map(
            |(
                cs,
                inits,
                (labels, affinity, tolerations, spreads, scalars),
                profile,
                (group, members, zone, node, pool),
                (scheduler, managed),
            )| {
                let mut spec = Map::new();
                spec.insert("containers".to_owned(), Value::Array(cs));
                if !inits.is_empty() {
                    spec.insert("initContainers".to_owned(), Value::Array(inits));
                }
                for (key, v) in
                    [("affinity", affinity), ("tolerations", tolerations), ("topologySpreadConstraints", spreads)]
                {
                    if let Some(v) = v {
                        spec.insert(key.to_owned(), v);
                    }
                }
                let (pc, priority, preemption, scheduler_name) = scalars;
                if let Some(pc) = pc {
                    spec.insert("priorityClassName".to_owned(), json!(pc));
                }
                if let Some(p) = priority {
                    spec.insert("priority".to_owned(), p);
                }
                if let Some(p) = preemption {
                    spec.insert("preemptionPolicy".to_owned(), json!(p));
                }
                if let Some(s) = scheduler_name {
                    spec.insert("schedulerName".to_owned(), json!(s));
                }
                spec.insert("futureField".to_owned(), json!({"kept": true}));
                let mut meta = Map::new();
                meta.insert("name".to_owned(), json!("p-0"));
                meta.insert("annotations".to_owned(), json!({"stowage.io/profile": "p"}));
                if let Some(l) = labels {
                    // A group label only where it matches, or the pod is (rightly) denied.
                    if group.is_some() || l.get("stowage.io/group").is_none() {
                        meta.insert("labels".to_owned(), l);
                    }
                }
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
                Case { pod, profile, group, members, zone, node, pool, scheduler, managed }
            },
        )
}

fn quantities(pod: &Value) -> Vec<(String, &'static str, &'static str, Option<Quantity>)> {
    let mut out = Vec::new();
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array().map_or(&[][..], Vec::as_slice) {
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            for field in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    let v =
                        c.get("resources").and_then(|r| r.get(field)).and_then(|f| f.get(res)).and_then(Value::as_str);
                    out.push((name.clone(), field, res, v.map(q)));
                }
            }
        }
    }
    out
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::cases(512)))]

    #[test]
    fn planning_is_idempotent_and_keeps_the_resource_rules(case in case()) {
        let mut cfg = Config { scheduler_name: case.scheduler.clone(), managed_resource: case.managed, ..Config::default() };
        cfg.pools.insert("pg".to_owned(), Pool {
            node_selector: [("pool".to_owned(), "pg".to_owned())].into(),
            tolerations: vec![PoolToleration { key: "pool".into(), operator: "Equal".into(), value: Some("pg".into()), effect: Some("NoSchedule".into()) }],
        });
        let pool_def = cfg.pools["pg"].clone();
        let policy = Policy {
            profile_name: "p".to_owned(),
            profile: &case.profile,
            group: case.group.clone().map(|name| GroupKey { namespace: "db".into(), name }),
            group_source: None,
            statefulset: None,
            members: None,
            zone_spread: case.zone,
            node_spread: case.node,
            quorum: Quorum::Off,
            local_data: LocalData::Off,
            role: None,
            pool: case.pool.then(|| ("pg".to_owned(), &pool_def)),
            weights: Weights::default(),
        };
        let pod = &case.pod;
        let first = plan(pod, &policy, &cfg, case.members).map_err(|d| TestCaseError::fail(d.to_string()))?;
        let mut mutated = pod.clone();
        json_patch::patch(&mut mutated, &first.patch).map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
        let second = plan(&mutated, &policy, &cfg, case.members).map_err(|d| TestCaseError::fail(d.to_string()))?;
        prop_assert!(second.patch.0.is_empty(), "second patch: {}", serde_json::to_string(&second.patch).unwrap());
        prop_assert!(first.warnings.iter().map(String::len).sum::<usize>() < 4096);
        let managed = &mutated["spec"]["containers"][0]["resources"];
        prop_assert_eq!(case.managed, managed["requests"]["stowage.io/managed"] == "1" && managed["limits"]["stowage.io/managed"] == "1");

        let before = quantities(pod);
        let after = quantities(&mutated);
        prop_assert_eq!(before.len(), after.len());
        let profile = &case.profile;
        for ((name, field, res, old), (_, _, _, new)) in before.iter().zip(&after) {
            if let (Some(old), Some(new)) = (old, new) && !profile.override_user {
                prop_assert!(new >= old, "{} {} {} lowered from {:?} to {:?}", name, field, res, old, new);
            }
            if profile.integer_cpu && *res == "cpu" && let Some(new) = new {
                prop_assert!(new.is_integer(), "{} cpu {} not whole: {:?}", name, field, new);
            }
        }
        for chunk in after.chunks(4) {
            // Order per container: requests cpu, requests memory, limits cpu, limits memory.
            let name = &chunk[0].0;
            for (req, lim) in [(&chunk[0].3, &chunk[2].3), (&chunk[1].3, &chunk[3].3)] {
                if let (Some(r), Some(l)) = (req, lim) {
                    prop_assert!(r <= l, "{}: request {:?} above limit {:?}", name, r, l);
                }
                if profile.qos == QosMode::Guaranteed {
                    match (req, lim) {
                        (Some(r), Some(l)) => prop_assert_eq!(r, l, "{} not Guaranteed", name),
                        (None, None) => prop_assert!(first.warnings.iter().any(|w| w.starts_with("pod will not be Guaranteed") && w.contains(name.as_str()))),
                        _ => prop_assert!(false, "{}: only one of request and limit", name),
                    }
                }
            }
        }

        // Lists are appended to, never rewritten.
        for path in [
            &["spec", "tolerations"][..],
            &["spec", "topologySpreadConstraints"],
            &["spec", "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution"],
            &["spec", "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution"],
        ] {
            if let Some(Value::Array(old)) = lookup(pod, path) {
                let new = lookup(&mutated, path).and_then(Value::as_array).expect("list kept");
                prop_assert!(new.len() >= old.len() && new[..old.len()] == old[..], "{:?} rewritten", path);
            }
        }
        if case.pool {
            let terms = lookup(&mutated, &["spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution", "nodeSelectorTerms"])
                .and_then(Value::as_array).expect("pool terms");
            prop_assert!(!terms.is_empty());
            for term in terms {
                prop_assert!(term["matchExpressions"].as_array().unwrap().iter().any(|e| e["key"] == "pool"), "term without the pool: {}", term);
            }
        }
        if case.group.is_some() {
            prop_assert_eq!(&mutated["metadata"]["labels"]["stowage.io/group"], &json!(GROUP));
        }
        prop_assert_eq!(&mutated["spec"]["futureField"], &json!({"kept": true}));
    }
}
