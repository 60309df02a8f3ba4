//! Invariants of the verbs over random clusters.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use proptest::prelude::*;
use stowage_fixtures::{PodBuilder, node, statefulset};
use stowage_scheduler::snapshot::Snapshot;

#[derive(Debug, Clone)]
struct Case {
    zones: Vec<Option<u8>>,
    members: Vec<Option<u8>>,
    others: Vec<(u8, u8)>,
    candidates: Vec<u8>,
    config: u8,
    replicas: i32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(proptest::option::weighted(0.9, 0u8..4), 1..12),
        proptest::collection::vec(proptest::option::of(0u8..14), 0..6),
        proptest::collection::vec((0u8..14, 0u8..8), 0..20),
        proptest::collection::btree_set(0u8..14, 0..14),
        0u8..4,
        1i32..7,
    )
        .prop_map(|(zones, members, others, candidates, config, replicas)| Case {
            zones,
            members,
            others,
            candidates: candidates.into_iter().collect(),
            config,
            replicas,
        })
}

const CONFIGS: [&str; 4] = [
    PG_CONFIG,
    "profiles:\n  pg: {quorum: zone, zoneSpread: preferred, nodeSpread: preferred}\n",
    "profiles:\n  pg: {zoneSpread: required, nodeSpread: off, density: {maxPerNode: 2}, weights: {localData: 0, zoneSpread: 5, contention: 1}}\n",
    "profiles:\n  pg: {quorum: off, zoneSpread: off, nodeSpread: off, separatePrimaries: true}\n",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn every_input_node_passes_or_has_a_reason_and_scores_stay_in_range(c in case()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let nodes: Vec<_> = c
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| node(&format!("n{i}"), z.map(|z| format!("z{z}")).as_deref(), "8", "32Gi"))
            .collect();
        let n_nodes = nodes.len() as u8;
        let mut pods = Vec::new();
        for (i, m) in c.members.iter().enumerate() {
            let mut b = member(u32::try_from(i).unwrap() + 1).annotate("stowage.io/role", if i == 0 { "primary" } else { "replica" });
            if let Some(n) = m.filter(|n| *n < n_nodes) {
                b = b.node(&format!("n{n}"));
            }
            pods.push(b.build());
        }
        for (i, (n, cpu)) in c.others.iter().enumerate() {
            if *n < n_nodes {
                pods.push(PodBuilder::new("apps", &format!("w{i}")).node(&format!("n{n}")).requests(&cpu.to_string(), "1Gi").build());
            }
        }
        let snap = Snapshot { nodes, pods, stateful_sets: vec![statefulset("db", "pg", c.replicas, &["data"])], ..Snapshot::default() };
        let w = world(CONFIGS[c.config as usize], snap);
        // Candidates may name nodes the cache does not know.
        let names: Vec<String> = c.candidates.iter().map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let pod = member(0).annotate("stowage.io/role", "primary").build();
        let r = rt.block_on(w.filter(&pod, &refs));
        prop_assert!(r.error.is_empty(), "{}", r.error);
        let passing = r.node_names.clone().unwrap();
        let mut seen: Vec<String> = passing.clone();
        seen.extend(r.failed_nodes.0.iter().map(|(n, _)| n.clone()));
        seen.extend(r.failed_and_unresolvable_nodes.0.iter().map(|(n, _)| n.clone()));
        seen.sort();
        let mut want = names.clone();
        want.sort();
        prop_assert_eq!(seen, want, "every input node exactly once, nothing else");
        for (_, reason) in r.failed_nodes.0.iter().chain(&r.failed_and_unresolvable_nodes.0) {
            prop_assert!(reason.starts_with("node(s) "), "{}", reason);
        }
        let prefs: Vec<&str> = passing.iter().map(String::as_str).collect();
        let scores = w.prioritize(&pod, &prefs);
        prop_assert_eq!(scores.iter().map(|s| s.host.as_str()).collect::<Vec<_>>(), prefs);
        for s in &scores {
            prop_assert!((0..=10).contains(&s.score), "{:?}", s);
        }
    }
}
