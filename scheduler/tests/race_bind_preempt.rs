//! Bind idempotency and the preemption guard. (Back-to-back filters without binds:
//! tests/reservations.rs.)
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::*;
use stowage_fixtures::{PodBuilder, statefulset};
use stowage_scheduler::{
    binder::BindError,
    extender::v1::{ExtenderBindingArgs, ExtenderPreemptionArgs, MetaPod, MetaVictims, Victims},
    snapshot::Snapshot,
};

fn base() -> Snapshot {
    Snapshot { nodes: six_nodes(), stateful_sets: vec![statefulset("db", "pg", 3, &["data"])], ..Snapshot::default() }
}

fn bind_args(node: &str, uid: &str) -> ExtenderBindingArgs {
    ExtenderBindingArgs { pod_name: "pg-0".into(), pod_namespace: "db".into(), pod_uid: uid.into(), node: node.into() }
}

#[tokio::test]
async fn bind_is_idempotent_when_the_pod_is_already_on_that_node() {
    let w = world(PG_CONFIG, base());
    w.binder.add_pod("db", "pg-0", "u0", Some("a1"));
    let r = w.ext.bind(bind_args("a1", "u0")).await;
    assert_eq!(r.error, "");
    assert_eq!(w.ext.decisions().recent(Some("db/pg-0"), 1)[0].outcome, "already_bound");
}

#[tokio::test]
async fn bind_to_another_node_than_the_current_one_is_an_error_and_drops_the_ledger_entry() {
    let w = world(PG_CONFIG, base());
    w.binder.add_pod("db", "pg-0", "u0", Some("a2"));
    let r = w.ext.bind(bind_args("a1", "u0")).await;
    assert!(r.error.contains("already bound to node a2, not a1"), "{}", r.error);
    assert!(w.cache.ledger().placement("u0").is_none());
}

#[tokio::test]
async fn a_recreated_pod_is_not_bound() {
    let w = world(PG_CONFIG, base());
    w.binder.add_pod("db", "pg-0", "new", None);
    let r = w.ext.bind(bind_args("a1", "old")).await;
    assert!(r.error.contains("was recreated"), "{}", r.error);
}

#[tokio::test]
async fn failed_binds_remove_their_ledger_entry_and_successful_ones_keep_it() {
    let w = world(PG_CONFIG, base());
    w.binder.add_pod("db", "pg-0", "u0", None);
    w.binder.fail_next(BindError::Transport("connection reset".into()));
    let r = w.ext.bind(bind_args("a1", "u0")).await;
    assert!(r.error.contains("connection reset"), "{}", r.error);
    assert!(w.cache.ledger().placement("u0").is_none());
    let r = w.ext.bind(bind_args("a1", "u0")).await;
    assert_eq!(r.error, "");
    assert_eq!(w.cache.ledger().placement("u0").unwrap().node.as_ref(), "a1");
    assert_eq!(w.binder.calls().len(), 2);
}

#[tokio::test]
async fn the_ledger_entry_exists_before_the_api_call_returns() {
    let w = world(PG_CONFIG, base());
    w.binder.add_pod("db", "pg-0", "u0", None);
    w.binder.set_delay(Duration::from_millis(50));
    let ext = w.ext.clone();
    let bind = tokio::spawn(async move { ext.bind(bind_args("a1", "u0")).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(w.cache.ledger().placement("u0").is_some(), "recorded before binding");
    assert_eq!(bind.await.unwrap().error, "");
}

fn healthy_group(ready1: bool) -> Snapshot {
    let mut snap = base();
    let mut p1 = member(1).node("b1");
    if ready1 {
        p1 = p1.ready();
    }
    snap.pods = vec![
        member(0).node("a1").ready().build(),
        p1.build(),
        member(2).node("c1").ready().build(),
        PodBuilder::new("apps", "web").node("b2").build(),
    ];
    snap
}

fn meta(uids: &[&str]) -> MetaVictims {
    MetaVictims { pods: uids.iter().map(|u| MetaPod { uid: (*u).to_owned() }).collect(), num_pdb_violations: 1 }
}

fn preempt_args(cands: &[(&str, &[&str])]) -> ExtenderPreemptionArgs {
    ExtenderPreemptionArgs {
        pod: Some(PodBuilder::new("db", "urgent").build()),
        node_name_to_victims: None,
        node_name_to_meta_victims: Some(cands.iter().map(|(n, v)| ((*n).to_owned(), meta(v))).collect()),
    }
}

#[tokio::test]
async fn preemption_keeps_candidates_that_leave_a_majority() {
    let w = world(PG_CONFIG, healthy_group(true));
    let r = w.ext.preempt(preempt_args(&[("a1", &["uid-db-pg-0"]), ("b2", &["uid-apps-web"])]));
    assert_eq!(r.node_name_to_meta_victims.keys().collect::<Vec<_>>(), ["a1", "b2"]);
    assert_eq!(r.node_name_to_meta_victims["a1"], meta(&["uid-db-pg-0"]), "victims and PDB count kept");
}

#[tokio::test]
async fn preemption_drops_candidates_that_would_break_quorum() {
    // pg-1 is not Ready: only pg-0 and pg-2 are healthy, evicting either leaves 1 of 3.
    let w = world(PG_CONFIG, healthy_group(false));
    let r =
        w.ext.preempt(preempt_args(&[("a1", &["uid-db-pg-0"]), ("b1", &["uid-db-pg-1"]), ("b2", &["uid-apps-web"])]));
    assert_eq!(r.node_name_to_meta_victims.keys().collect::<Vec<_>>(), ["b1", "b2"]);
    let d = &w.ext.decisions().recent(Some("db/urgent"), 1)[0];
    assert!(d.detail[0].contains("dropped a1") && d.detail[0].contains("majority 2"), "{:?}", d.detail);
}

#[tokio::test]
async fn quorum_off_groups_are_protected_too() {
    let cfg = "profiles:\n  pg: {quorum: off}\n";
    let w = world(cfg, healthy_group(false));
    let r = w.ext.preempt(preempt_args(&[("a1", &["uid-db-pg-0"])]));
    assert!(r.node_name_to_meta_victims.is_empty());
}

#[tokio::test]
async fn full_victims_are_answered_as_meta_victims() {
    let w = world(PG_CONFIG, healthy_group(true));
    let web = PodBuilder::new("apps", "web").node("b2").build();
    let args = ExtenderPreemptionArgs {
        pod: Some(PodBuilder::new("db", "urgent").build()),
        node_name_to_victims: Some(BTreeMap::from([(
            "b2".to_owned(),
            Victims { pods: vec![web], num_pdb_violations: 2 },
        )])),
        node_name_to_meta_victims: None,
    };
    let r = w.ext.preempt(args);
    assert_eq!(
        r.node_name_to_meta_victims["b2"],
        MetaVictims { pods: vec![MetaPod { uid: "uid-apps-web".into() }], num_pdb_violations: 2 }
    );
}
