//! The webhook and the extender derive the same group facts from any pod: group, role, voting
//! members `n` and the `minDomains` of a required zone spread (both call `stowage_policy::group`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use proptest::{option, prelude::*, sample::select};
use serde_json::{Value, json};
use stowage_policy::{Config, group};
use stowage_scheduler::{
    ClusterCache,
    cache::{CacheConfig, Interner, objects::PodObj},
    explain,
    snapshot::Snapshot,
};
use stowage_webhook::{AdmissionRequest, AdmitContext, StaticMembers, decide};

#[derive(Debug, Clone)]
struct Input {
    group: Option<&'static str>,
    members: Option<&'static str>,
    role: Option<&'static str>,
    instance: Option<&'static str>,
    role_label: Option<&'static str>,
    statefulset: bool,
    replicas: Option<u32>,
    min_domains: u32,
}

fn input() -> impl Strategy<Value = Input> {
    (
        option::of(select(vec!["g", "", "bad/name"])),
        option::of(select(vec!["1", "2", "3", "5", "7", "03", "+3", "0", "1000"])),
        option::of(select(vec!["primary", "replica", "leader"])),
        option::of(select(vec!["inst", ""])),
        option::of(select(vec!["primary", "Primary", "replica"])),
        any::<bool>(),
        option::of(0u32..8),
        1u32..6,
    )
        .prop_map(|(group, members, role, instance, role_label, statefulset, replicas, min_domains)| Input {
            group,
            members,
            role,
            instance,
            role_label,
            statefulset,
            replicas,
            min_domains,
        })
}

fn pod(i: &Input) -> Value {
    let mut ann = serde_json::Map::new();
    ann.insert("stowage.io/profile".into(), json!("db"));
    for (k, v) in [("stowage.io/group", i.group), ("stowage.io/members", i.members), ("stowage.io/role", i.role)] {
        if let Some(v) = v {
            ann.insert(k.into(), json!(v));
        }
    }
    let mut labels = serde_json::Map::new();
    if let Some(v) = i.instance {
        labels.insert("app.kubernetes.io/instance".into(), json!(v));
    }
    if let Some(v) = i.role_label {
        labels.insert("role".into(), json!(v));
    }
    let mut meta = json!({"name": "m-0", "namespace": "db", "uid": "u-0", "annotations": ann, "labels": labels});
    if i.statefulset {
        meta["ownerReferences"] =
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "sts", "uid": "s", "controller": true}]);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "c"}]}})
}

fn config(min_domains: u32) -> Config {
    Config::from_yaml(&format!(
        "roleLabels: [role]\nprofiles:\n  db: {{quorum: zone, zoneSpread: required, minDomains: {min_domains}}}\n"
    ))
    .unwrap()
}

/// What the webhook's patch says: the group label and the zone spread's `minDomains`.
fn webhook(object: &Value, cfg: &Config, replicas: Option<u32>) -> Option<(Option<String>, Option<u64>)> {
    let request: AdmissionRequest = serde_json::from_value(json!({
        "uid": "r", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "db", "operation": "CREATE", "object": object,
    }))
    .unwrap();
    let members = replicas.map_or_else(StaticMembers::default, |r| StaticMembers::default().with("db", "sts", r));
    let verdict = decide(&request, &AdmitContext::new(cfg).members(&members));
    if !verdict.response.allowed {
        return None;
    }
    let mut patched = object.clone();
    if let Some(patch) = &verdict.response.patch {
        json_patch::patch(&mut patched, patch).unwrap();
    }
    let label = patched["metadata"]["labels"]["stowage.io/group"].as_str().map(str::to_owned);
    let min_domains = patched["spec"]["topologySpreadConstraints"]
        .as_array()
        .and_then(|c| c.iter().find_map(|c| c["minDomains"].as_u64()));
    Some((label, min_domains))
}

proptest! {
    #[test]
    fn webhook_and_extender_agree_on_group_facts(i in input()) {
        let cfg = config(i.min_domains);
        let object = pod(&i);
        let k8s: Pod = serde_json::from_value(object.clone()).unwrap();
        let admitted = webhook(&object, &cfg, i.replicas);
        let resolved = stowage_policy::resolve(&k8s.metadata, &cfg);
        // The webhook denies exactly the pods whose policy does not resolve.
        prop_assert_eq!(admitted.is_none(), resolved.is_err());
        let (Some((label, min_domains)), Ok(Some(policy))) = (admitted, resolved) else { return Ok(()) };

        // The cache's trimmed pod: the same group, role and declared members.
        let trimmed = PodObj::from_k8s(&k8s, &Interner::default(), &CacheConfig::from_config(&cfg)).unwrap();
        let bits = trimmed.stowage.as_deref().unwrap();
        prop_assert_eq!(bits.group.as_deref(), label.as_deref());
        prop_assert_eq!(bits.group.as_deref(), policy.group.as_ref().map(|g| g.name.as_str()));
        prop_assert_eq!(bits.role, policy.role);
        prop_assert_eq!(bits.members, policy.members);

        // The extender's `n` (explain runs the same context as filter): where the webhook knew a
        // count, `minDomains` follows from the same `n`.
        let mut snap = Snapshot::default();
        if let Some(r) = i.replicas {
            let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                             "metadata": {"name": "sts", "namespace": "db"}, "spec": {"replicas": r, "selector": {}, "template": {}}});
            snap.stateful_sets.push(serde_json::from_value(sts).unwrap());
        }
        let cache = Arc::new(ClusterCache::from_snapshot(&snap, &cfg));
        let ex = explain(&cache, &cfg, &k8s);
        if let Some(g) = &policy.group {
            prop_assert_eq!(ex.group.clone(), Some(g.to_string()));
            let replicas = if policy.statefulset.is_some() { i.replicas } else { None };
            let (n, origin) = group::voting_members(policy.members, replicas, || 1);
            prop_assert_eq!(ex.members, Some(n));
            prop_assert_eq!(ex.members_source, Some(origin.as_str()));
            let declared = group::declared_members(policy.members, replicas).map(|(n, _)| n);
            prop_assert_eq!(min_domains, Some(u64::from(group::min_domains(declared, i.min_domains))));
            if origin != group::MembersOrigin::Observed {
                prop_assert_eq!(min_domains, Some(u64::from(group::min_domains(Some(n), i.min_domains))));
            }
        } else {
            prop_assert_eq!(label, None);
            prop_assert_eq!(min_domains, None);
        }
    }
}
