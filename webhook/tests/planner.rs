//! Golden tests of the mutation planner: one per rule, plus missing parents and escaping.
//! Every `run` also applies the patch and checks that planning the result changes nothing.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

mod common;

use common::{assert_ops, config, deny, has_warning, pod, run, run_with};
use serde_json::json;
use stowage_webhook::Denial;

const GUARANTEED: &str = r"
profiles:
  g:
    qos: guaranteed
    integerCPU: true
    zoneSpread: 'off'
    nodeSpread: 'off'
    resources:
      default: {requests: {cpu: 100m, memory: 128Mi}}
";

/// Design scenario 10.4: an app container and a resource-less sidecar, Guaranteed + integer CPU.
#[test]
fn guaranteed_integer_cpu_with_a_bare_sidecar() {
    let cfg = config(GUARANTEED);
    let p = pod(
        json!({"stowage.io/profile": "g", "stowage.io/group": "pg"}),
        json!({
            "containers": [{"name": "app", "image": "postgres:17",
                "resources": {"requests": {"cpu": "1500m", "memory": "2Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}}}],
            "initContainers": [{"name": "sidecar", "image": "proxy", "restartPolicy": "Always"}],
        }),
    );
    let (plan, mutated) = run(&p, &cfg);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/metadata/labels", "value": {"stowage.io/group": "pg"}},
            {"op": "replace", "path": "/spec/containers/0/resources/requests/cpu", "value": "4"},
            {"op": "replace", "path": "/spec/containers/0/resources/requests/memory", "value": "4Gi"},
            {"op": "add", "path": "/spec/initContainers/0/resources", "value": {
                "requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}},
        ]),
    );
    assert_eq!(
        plan.warnings,
        [
            "added label stowage.io/group=pg",
            "container app: raised cpu request 1500m to 4 for Guaranteed QoS",
            "container app: raised memory request 2Gi to 4Gi for Guaranteed QoS",
            "container sidecar: added requests cpu=1 memory=128Mi, limits cpu=1 memory=128Mi",
            "rounded cpu of container sidecar from 100m to 1",
        ]
    );
    for c in [&mutated["spec"]["containers"][0], &mutated["spec"]["initContainers"][0]] {
        assert_eq!(c["resources"]["requests"], c["resources"]["limits"], "{c}");
    }
}

#[test]
fn missing_parents_are_created_whole() {
    let cfg = config(
        "profiles: {p: {zoneSpread: required, nodeSpread: required, resources: {default: {requests: {cpu: 250m}}}}}",
    );
    // No labels, no resources, no affinity, no topologySpreadConstraints.
    let p = pod(json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}), json!({"containers": [{"name": "db"}]}));
    let (plan, _) = run_with(&p, &cfg, None);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/metadata/labels", "value": {"stowage.io/group": "pg"}},
            {"op": "add", "path": "/spec/containers/0/resources", "value": {"requests": {"cpu": "250m"}}},
            {"op": "add", "path": "/spec/affinity", "value": {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"stowage.io/group": "pg"}}, "topologyKey": "kubernetes.io/hostname"}]}}},
            {"op": "add", "path": "/spec/topologySpreadConstraints", "value": [
                {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                 "labelSelector": {"matchLabels": {"stowage.io/group": "pg"}}, "minDomains": 3}]},
        ]),
    );
    assert!(has_warning(&plan, "added required pod anti-affinity on kubernetes.io/hostname"));
    assert!(has_warning(&plan, "added zone spread on topology.kubernetes.io/zone (DoNotSchedule, minDomains 3)"));
}

#[test]
fn empty_and_null_parents_are_filled() {
    let cfg = config(
        "profiles: {p: {nodeSpread: preferred, zoneSpread: 'off', resources: {default: {limits: {memory: 1Gi}}}}}",
    );
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"affinity": null, "containers": [
            {"name": "a", "resources": {}},
            {"name": "b", "resources": {"requests": null}},
            {"name": "c", "resources": null},
        ]}),
    );
    let mut p = p;
    p["metadata"]["labels"] = json!({});
    let (plan, _) = run(&p, &cfg);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/metadata/labels/stowage.io~1group", "value": "pg"},
            {"op": "add", "path": "/spec/containers/0/resources/limits", "value": {"memory": "1Gi"}},
            {"op": "add", "path": "/spec/containers/1/resources/limits", "value": {"memory": "1Gi"}},
            {"op": "replace", "path": "/spec/containers/2/resources", "value": {"limits": {"memory": "1Gi"}}},
            {"op": "replace", "path": "/spec/affinity", "value": {"podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm":
                    {"labelSelector": {"matchLabels": {"stowage.io/group": "pg"}}, "topologyKey": "kubernetes.io/hostname"}}]}}},
        ]),
    );
}

#[test]
fn anti_affinity_is_appended_to_other_terms_and_not_repeated() {
    let cfg = config("profiles: {p: {nodeSpread: required, zoneSpread: 'off'}}");
    let other = json!({"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "kubernetes.io/hostname"});
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db"}], "affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [other],
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": other}]},
            "nodeAffinity": {"x": 1}}}),
    );
    let (plan, mutated) = run(&p, &cfg);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/metadata/labels", "value": {"stowage.io/group": "pg"}},
            {"op": "add", "path": "/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/1",
             "value": {"labelSelector": {"matchLabels": {"stowage.io/group": "pg"}}, "topologyKey": "kubernetes.io/hostname"}},
        ]),
    );
    assert_eq!(
        mutated["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0],
        other
    );

    // An equivalent term in another spelling counts as present.
    let mut p2 = p.clone();
    p2["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!([{
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchExpressions": [{"key": "stowage.io/group", "operator": "In", "values": ["pg"]}]}}]);
    p2["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, _) = run(&p2, &cfg);
    assert!(plan.patch.0.is_empty(), "{:?}", plan.patch);
}

#[test]
fn preferred_anti_affinity_defers_to_a_required_term() {
    let cfg = config("profiles: {p: {nodeSpread: preferred, zoneSpread: 'off'}}");
    let term =
        json!({"labelSelector": {"matchLabels": {"stowage.io/group": "pg"}}, "topologyKey": "kubernetes.io/hostname"});
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db"}], "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, _) = run(&p, &cfg);
    assert!(plan.patch.0.is_empty());
}

#[test]
fn zone_spread_keeps_an_existing_constraint_with_the_same_key_and_mode() {
    let cfg = config("profiles: {p: {zoneSpread: required, nodeSpread: 'off'}}");
    let mine = json!({"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                      "labelSelector": {"matchLabels": {"app": "pg"}}});
    let host = json!({"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                      "labelSelector": {"matchLabels": {"app": "pg"}}});
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db"}], "topologySpreadConstraints": [mine]}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, _) = run(&p, &cfg);
    assert!(plan.patch.0.is_empty());
    assert!(has_warning(&plan, "kept the pod's DoNotSchedule spread constraint on topology.kubernetes.io/zone"));

    // Another key (or another mode) does not conflict: appended.
    p["spec"]["topologySpreadConstraints"] = json!([host]);
    let (plan, _) = run_with(&p, &cfg, Some(2));
    assert_ops(
        &plan.patch,
        json!([{"op": "add", "path": "/spec/topologySpreadConstraints/1", "value":
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"stowage.io/group": "pg"}}, "minDomains": 2}}]),
    );
}

#[test]
fn min_domains_comes_from_members_annotation_then_statefulset_then_profile() {
    let cfg = config("profiles: {p: {zoneSpread: required, nodeSpread: 'off', minDomains: 3}}");
    let min_domains = |annotations: serde_json::Value, members: Option<u32>| {
        let (_, m) = run_with(&pod(annotations, json!({"containers": [{"name": "db"}]})), &cfg, members);
        m["spec"]["topologySpreadConstraints"][0].get("minDomains").cloned()
    };
    let base = json!({"stowage.io/profile": "p", "stowage.io/group": "pg"});
    assert_eq!(min_domains(base.clone(), None), Some(json!(3)));
    assert_eq!(min_domains(base.clone(), Some(2)), Some(json!(2)));
    assert_eq!(min_domains(base.clone(), Some(5)), Some(json!(3)));
    let mut with_members = base.clone();
    with_members["stowage.io/members"] = json!("1");
    assert_eq!(min_domains(with_members, Some(5)), Some(json!(1)), "the annotation wins");
    let mut preferred = base;
    preferred["stowage.io/zone-spread"] = json!("preferred");
    let (_, m) = run(&pod(preferred, json!({"containers": [{"name": "db"}]})), &cfg);
    let c = &m["spec"]["topologySpreadConstraints"][0];
    assert_eq!(c["whenUnsatisfiable"], "ScheduleAnyway");
    assert!(c.get("minDomains").is_none(), "minDomains only with DoNotSchedule");
}

#[test]
fn sizes_by_container_name_then_default_for_containers_init_containers_and_sidecars() {
    let cfg = config(
        r"
profiles:
  p:
    zoneSpread: 'off'
    nodeSpread: 'off'
    resources:
      containers:
        postgres: {requests: {cpu: '2', memory: 8Gi}, limits: {memory: 8Gi}}
      default: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 64Mi}}
",
    );
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({
            "containers": [{"name": "postgres"}, {"name": "exporter", "resources": {"requests": {"cpu": "10m"}}}],
            "initContainers": [{"name": "init"}, {"name": "proxy", "restartPolicy": "Always"}],
        }),
    );
    let (plan, m) = run(&p, &cfg);
    assert_eq!(
        m["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"memory": "8Gi"}})
    );
    assert_eq!(
        m["spec"]["containers"][1]["resources"],
        json!({"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}}),
        "the user's cpu request stays"
    );
    for i in 0..2 {
        assert_eq!(
            m["spec"]["initContainers"][i]["resources"],
            json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}})
        );
    }
    assert!(has_warning(&plan, "container exporter: added requests memory=64Mi, limits memory=64Mi"));
}

#[test]
fn without_override_user_values_stay_and_added_ones_fit_them() {
    let cfg = config(
        "profiles: {p: {zoneSpread: 'off', nodeSpread: 'off', resources: {default: {requests: {cpu: '2', memory: 1Gi}, limits: {cpu: '2', memory: 1Gi}}}}}",
    );
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [
            // A user limit below the profile's request: the request is capped at it.
            {"name": "a", "resources": {"limits": {"cpu": "500m"}}},
            // A user request above the profile's limit: the limit is raised to it.
            {"name": "b", "resources": {"requests": {"memory": "3Gi"}}},
            // Everything set: untouched, even though it differs from the profile.
            {"name": "c", "resources": {"requests": {"cpu": "100m", "memory": "10Mi"}, "limits": {"cpu": "200m", "memory": "20Mi"}}},
        ], "securityContext": {}}),
    );
    let mut p = p;
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, m) = run(&p, &cfg);
    assert_eq!(
        m["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(
        m["spec"]["containers"][1]["resources"],
        json!({"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}})
    );
    assert_eq!(m["spec"]["containers"][2], p["spec"]["containers"][2]);
    assert!(
        has_warning(&plan, "container a: capped the profile's cpu request 2 at the limit 500m"),
        "{:?}",
        plan.warnings
    );
    assert!(
        has_warning(&plan, "container b: raised the profile's memory limit 1Gi to the request 3Gi"),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn override_replaces_user_values_with_a_warning_each() {
    let cfg = config(
        "profiles: {p: {override: true, zoneSpread: 'off', nodeSpread: 'off', resources: {default: {requests: {cpu: '1'}, limits: {memory: 2Gi}}}}}",
    );
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "3Gi"}, "limits": {"cpu": "500m", "memory": "4Gi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "1000m"}, "limits": {"memory": "2048Mi"}}},
        ]}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, m) = run(&p, &cfg);
    // cpu request 1 > the user's limit 500m: the limit follows; memory request 3Gi > the profile's
    // limit 2Gi: the request follows.
    assert_eq!(
        m["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}})
    );
    // Equal values in another spelling are kept as written.
    assert_eq!(m["spec"]["containers"][1], p["spec"]["containers"][1]);
    for w in [
        "container a: replaced cpu request 250m with 1 (profile override)",
        "container a: replaced memory limit 4Gi with 2Gi (profile override)",
        "container a: raised cpu limit 500m to the request 1",
        "container a: lowered memory request 3Gi to the limit 2Gi",
    ] {
        assert!(has_warning(&plan, w), "missing {w:?} in {:?}", plan.warnings);
    }
}

#[test]
fn guaranteed_raises_the_smaller_side_and_warns_when_impossible() {
    let cfg = config("profiles: {p: {qos: guaranteed, zoneSpread: 'off', nodeSpread: 'off'}}");
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "c"},
        ]}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, m) = run(&p, &cfg);
    assert_eq!(
        m["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    );
    assert_eq!(
        m["spec"]["containers"][1]["resources"],
        json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
    );
    assert!(m["spec"]["containers"][2].get("resources").is_none(), "no values are invented");
    assert!(has_warning(&plan, "container a: raised cpu limit 1 to 2 for Guaranteed QoS"));
    assert!(has_warning(
        &plan,
        "pod will not be Guaranteed: no request or limit for c cpu, c memory in the pod or profile p"
    ));
}

#[test]
fn integer_cpu_rounds_up_and_keeps_whole_values_as_written() {
    let cfg = config("profiles: {p: {integerCPU: true, zoneSpread: 'off', nodeSpread: 'off'}}");
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1500m"}, "limits": {"cpu": "2500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "2000m", "memory": "100Mi"}}},
            {"name": "c", "resources": {"requests": {"cpu": "0.1"}, "limits": {"cpu": "0.1"}}},
        ]}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, m) = run(&p, &cfg);
    assert_eq!(m["spec"]["containers"][0]["resources"], json!({"requests": {"cpu": "2"}, "limits": {"cpu": "3"}}));
    assert_eq!(m["spec"]["containers"][1], p["spec"]["containers"][1]);
    assert_eq!(m["spec"]["containers"][2]["resources"], json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}));
    assert!(has_warning(&plan, "rounded cpu request of container a from 1500m to 2"));
    assert!(has_warning(&plan, "rounded cpu limit of container a from 2500m to 3"));
    assert!(has_warning(&plan, "rounded cpu of container c from 0.1 to 1"));
}

#[test]
fn group_label_conflict_is_denied_naming_both() {
    let cfg = config("profiles: {p: {}}");
    let mut p =
        pod(json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}), json!({"containers": [{"name": "db"}]}));
    p["metadata"]["labels"] = json!({"stowage.io/group": "other"});
    let d = deny(&p, &cfg);
    assert_eq!(d, Denial::GroupConflict { existing: "other".into(), wanted: "pg".into() });
    let text = d.to_string();
    assert!(text.contains("\"other\"") && text.contains("\"pg\""), "{text}");
}

#[test]
fn without_a_group_no_spread_is_injected_and_the_user_is_told_why() {
    let cfg = config("profiles: {p: {zoneSpread: required, nodeSpread: required}}");
    let p = pod(json!({"stowage.io/profile": "p"}), json!({"containers": [{"name": "db"}]}));
    let (plan, _) = run(&p, &cfg);
    assert!(plan.patch.0.is_empty());
    assert_eq!(plan.warnings.len(), 1);
    assert!(has_warning(&plan, "set stowage.io/group, use a StatefulSet or app.kubernetes.io/instance"));
}

#[test]
fn pool_adds_missing_tolerations_and_ands_its_labels_into_every_term() {
    let cfg = config(
        r"
pools:
  pg:
    nodeSelector: {node-role.kubernetes.io/postgres: '', disk: nvme}
    tolerations: [{key: dedicated, value: postgres, effect: NoSchedule}, {key: db, operator: Exists}]
profiles:
  p: {pool: pg, zoneSpread: 'off', nodeSpread: 'off'}
",
    );
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db"}],
               "tolerations": [{"key": "db", "operator": "Exists"}, {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
               "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                   {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["nvme"]}]},
                   {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, _) = run(&p, &cfg);
    let terms = "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms";
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/spec/tolerations/2", "value": {"key": "dedicated", "operator": "Equal", "value": "postgres", "effect": "NoSchedule"}},
            {"op": "add", "path": format!("{terms}/0/matchExpressions/1"), "value": {"key": "node-role.kubernetes.io/postgres", "operator": "In", "values": [""]}},
            {"op": "add", "path": format!("{terms}/1/matchExpressions"), "value": [
                {"key": "disk", "operator": "In", "values": ["nvme"]},
                {"key": "node-role.kubernetes.io/postgres", "operator": "In", "values": [""]}]},
        ]),
    );
    assert!(has_warning(
        &plan,
        "pool pg: added 1 toleration(s) and node affinity disk=nvme,node-role.kubernetes.io/postgres="
    ));

    // No node affinity yet: one term holding every label.
    let mut bare = p.clone();
    bare["spec"].as_object_mut().unwrap().remove("affinity");
    bare["spec"].as_object_mut().unwrap().remove("tolerations");
    let (plan, _) = run(&bare, &cfg);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/spec/tolerations", "value": [
                {"key": "dedicated", "operator": "Equal", "value": "postgres", "effect": "NoSchedule"},
                {"key": "db", "operator": "Exists"}]},
            {"op": "add", "path": "/spec/affinity", "value": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "disk", "operator": "In", "values": ["nvme"]},
                    {"key": "node-role.kubernetes.io/postgres", "operator": "In", "values": [""]}]}]}}}},
        ]),
    );
}

#[test]
fn priority_class_is_set_and_the_defaulted_priority_cleared() {
    let cfg = config("profiles: {p: {priorityClassName: db-critical, zoneSpread: 'off', nodeSpread: 'off'}}");
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db"}], "priority": 0, "preemptionPolicy": "PreemptLowerPriority"}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, _) = run(&p, &cfg);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/spec/priorityClassName", "value": "db-critical"},
            {"op": "remove", "path": "/spec/priority"},
            {"op": "remove", "path": "/spec/preemptionPolicy"},
        ]),
    );
    // Without spec.priority the Priority plugin has not run: a preemptionPolicy is the user's.
    p["spec"].as_object_mut().unwrap().remove("priority");
    let (plan, _) = run(&p, &cfg);
    assert_ops(&plan.patch, json!([{"op": "add", "path": "/spec/priorityClassName", "value": "db-critical"}]));
    // The pod's own class is kept, with a warning.
    p["spec"]["priorityClassName"] = json!("system-cluster-critical");
    let (plan, _) = run(&p, &cfg);
    assert!(plan.patch.0.is_empty());
    assert!(has_warning(&plan, "kept priorityClassName system-cluster-critical"));
}

#[test]
fn scheduler_name_replaces_only_the_default_scheduler() {
    let cfg = config("schedulerName: stowage\nprofiles: {p: {zoneSpread: 'off', nodeSpread: 'off'}}");
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db"}], "schedulerName": "default-scheduler"}),
    );
    p["metadata"]["labels"] = json!({"stowage.io/group": "pg"});
    let (plan, _) = run(&p, &cfg);
    assert_ops(&plan.patch, json!([{"op": "replace", "path": "/spec/schedulerName", "value": "stowage"}]));
    p["spec"].as_object_mut().unwrap().remove("schedulerName");
    let (plan, _) = run(&p, &cfg);
    assert_ops(&plan.patch, json!([{"op": "add", "path": "/spec/schedulerName", "value": "stowage"}]));
    p["spec"]["schedulerName"] = json!("volcano");
    let (plan, _) = run(&p, &cfg);
    assert!(plan.patch.0.is_empty());
    assert!(has_warning(&plan, "kept schedulerName volcano"));
}

#[test]
fn keys_are_escaped_per_rfc_6901() {
    let cfg = config(
        "profiles: {p: {zoneSpread: 'off', nodeSpread: 'off', resources: {default: {limits: {example.com/gpu: '1', hugepages-2Mi: 4Mi}}}}}",
    );
    let mut p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg", "a~b/c": "x"}),
        json!({"containers": [{"name": "db", "resources": {"limits": {"cpu": "1"}}}]}),
    );
    p["metadata"]["labels"] = json!({"x/~1y": "1", "é/~0": "2"});
    let (plan, m) = run(&p, &cfg);
    assert_ops(
        &plan.patch,
        json!([
            {"op": "add", "path": "/metadata/labels/stowage.io~1group", "value": "pg"},
            {"op": "add", "path": "/spec/containers/0/resources/limits/example.com~1gpu", "value": "1"},
            {"op": "add", "path": "/spec/containers/0/resources/limits/hugepages-2Mi", "value": "4Mi"},
        ]),
    );
    assert_eq!(m["metadata"]["labels"], json!({"x/~1y": "1", "é/~0": "2", "stowage.io/group": "pg"}));
}

#[test]
fn invalid_quantities_the_planner_must_compare_are_denied() {
    let cfg = config("profiles: {p: {qos: guaranteed}}");
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db", "resources": {"requests": {"cpu": "lots"}}}]}),
    );
    let d = deny(&p, &cfg);
    assert!(
        matches!(&d, Denial::Quantity { container, field: "requests", resource, .. } if container == "db" && resource == "cpu"),
        "{d:?}"
    );
    assert_eq!(d.code(), 400);
    // Values the planner does not need to compare are left alone, whatever they are.
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "example.com/x": "?"}}}]}),
    );
    let (_, m) = run(&p, &cfg);
    assert_eq!(m["spec"]["containers"][0]["resources"]["requests"]["example.com/x"], "?");
}

#[test]
fn an_already_mutated_pod_yields_no_patch_and_no_change_warnings() {
    let cfg = config(
        r"
schedulerName: stowage
pools: {pg: {nodeSelector: {pool: pg}, tolerations: [{key: pool, value: pg, effect: NoSchedule}]}}
profiles:
  p:
    qos: guaranteed
    integerCPU: true
    override: true
    pool: pg
    priorityClassName: db
    zoneSpread: required
    nodeSpread: required
    resources: {default: {requests: {cpu: 1500m, memory: 1Gi}}}
",
    );
    let p = pod(
        json!({"stowage.io/profile": "p", "stowage.io/group": "pg"}),
        json!({"containers": [{"name": "db", "resources": {"limits": {"cpu": "3", "memory": "2Gi"}}}], "priority": 0}),
    );
    let (_, m) = run(&p, &cfg);
    let again = common::plan_again(&m, &cfg, None);
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
}
