//! Group facts, defined once for the webhook, the extender, explain and the recovery audit:
//! which replica group a pod belongs to, its role, how many voting members `n` the group has,
//! how many of them one zone may hold under the quorum guard, and the `minDomains` of a
//! required zone spread. Pure functions over pod metadata and numbers the caller looked up.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::{
    config::is_label_value,
    vocab::{Quorum, Role},
};

/// Replica-group identity (annotation), and the label the webhook stamps with the group name so
/// selectors can match members.
pub const GROUP: &str = "stowage.io/group";
/// Fallback group source: the standard instance label.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";

/// Where a group's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSource {
    /// The `stowage.io/group` annotation.
    Annotation,
    /// The controlling StatefulSet.
    StatefulSet,
    /// The `app.kubernetes.io/instance` label.
    InstanceLabel,
}

/// A replica group: members share a namespace and a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// Namespace of the members.
    pub namespace: String,
    /// Group name.
    pub name: String,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Name of the controlling StatefulSet (an `apps/*` owner reference with `controller: true`).
#[must_use]
pub fn controlling_statefulset(meta: &ObjectMeta) -> Option<&str> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == "StatefulSet" && r.api_version.starts_with("apps/"))
        .map(|r| r.name.as_str())
}

/// The group a pod belongs to, by precedence: the `stowage.io/group` annotation, the
/// controlling StatefulSet, the non-empty `app.kubernetes.io/instance` label.
///
/// # Errors
/// The annotation's value when it is present but empty or not a label value (the pod then has
/// no group; policy resolution reports it, the cache ignores it).
pub fn group_name(meta: &ObjectMeta) -> Result<Option<(&str, GroupSource)>, &str> {
    match meta.annotations.as_ref().and_then(|a| a.get(GROUP)) {
        Some(g) if !g.is_empty() && is_label_value(g) => Ok(Some((g.as_str(), GroupSource::Annotation))),
        Some(g) => Err(g.as_str()),
        None => Ok(match controlling_statefulset(meta) {
            Some(sts) => Some((sts, GroupSource::StatefulSet)),
            None => meta
                .labels
                .as_ref()
                .and_then(|l| l.get(INSTANCE_LABEL))
                .filter(|v| !v.is_empty())
                .map(|v| (v.as_str(), GroupSource::InstanceLabel)),
        }),
    }
}

/// The group key of a pod (its namespace, `default` when unset, and [`group_name`]).
#[must_use]
pub fn group_key(meta: &ObjectMeta) -> Option<GroupKey> {
    let (name, _) = group_name(meta).ok().flatten()?;
    Some(GroupKey { namespace: meta.namespace.clone().unwrap_or_else(|| "default".to_owned()), name: name.to_owned() })
}

/// Largest accepted `stowage.io/members`.
pub const MAX_MEMBERS: u32 = 999;

/// `stowage.io/members` written canonically: 1 to [`MAX_MEMBERS`] in ASCII digits, no sign, no
/// leading zero, no spaces (`"+3"` and `"03"` are refused, though Rust's integer parser takes
/// them).
#[must_use]
pub fn parse_members(v: &str) -> Option<u32> {
    let canonical = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && !v.starts_with('0');
    canonical.then(|| v.parse().ok()).flatten().filter(|n| (1..=MAX_MEMBERS).contains(n))
}

/// The role from the pod's labels: the first of `role_labels` present decides; a value in
/// `primary_values` (any case) is a primary, any other a replica.
#[must_use]
pub fn role_from_labels<'a>(
    label: impl Fn(&str) -> Option<&'a str>,
    role_labels: &[String],
    primary_values: &[String],
) -> Option<Role> {
    role_labels
        .iter()
        .find_map(|key| label(key))
        .map(|v| if primary_values.iter().any(|p| p.eq_ignore_ascii_case(v)) { Role::Primary } else { Role::Replica })
}

/// Where the voting-member count `n` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MembersOrigin {
    /// `stowage.io/members`.
    Annotation,
    /// The owning StatefulSet's `spec.replicas`.
    StatefulSet,
    /// The members observed.
    Observed,
}

impl MembersOrigin {
    /// The word explain and decisions print.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            MembersOrigin::Annotation => "annotation",
            MembersOrigin::StatefulSet => "statefulset",
            MembersOrigin::Observed => "observed",
        }
    }
}

/// The declared member count: `stowage.io/members`, else the owning StatefulSet's replicas.
/// The webhook knows no more than this.
#[must_use]
pub fn declared_members(annotation: Option<u32>, replicas: Option<u32>) -> Option<(u32, MembersOrigin)> {
    annotation.map(|n| (n, MembersOrigin::Annotation)).or_else(|| replicas.map(|n| (n, MembersOrigin::StatefulSet)))
}

/// Voting members `n`: the [`declared_members`], else the members `observed` (called only
/// then); at least 1 (a StatefulSet scaled to 0 still has the pod being placed).
#[must_use]
pub fn voting_members(
    annotation: Option<u32>,
    replicas: Option<u32>,
    observed: impl FnOnce() -> u32,
) -> (u32, MembersOrigin) {
    let (n, origin) = declared_members(annotation, replicas).unwrap_or_else(|| (observed(), MembersOrigin::Observed));
    (n.max(1), origin)
}

/// Fewest voting members for which the quorum guard means anything: with one or two members
/// no placement survives losing a zone anyway.
pub const QUORUM_MIN_MEMBERS: u32 = 3;

/// True when the quorum guard applies to a group of `n` under `quorum`.
#[must_use]
pub fn quorum_guarded(quorum: Quorum, n: u32) -> bool {
    quorum == Quorum::Zone && n >= QUORUM_MIN_MEMBERS
}

/// Largest number of voting members one zone may hold under the quorum guard:
/// `floor((n-1)/2)`, so losing any one zone leaves a majority.
#[must_use]
pub const fn quorum_limit(n: u32) -> u32 {
    n.saturating_sub(1) / 2
}

/// Members a group of `n` needs to keep a majority: `floor(n/2) + 1`.
#[must_use]
pub const fn majority(n: u32) -> u32 {
    n / 2 + 1
}

/// `minDomains` of a required zone spread: the profile's value, capped by the declared member
/// count when one is known, and at least 1 (the API rejects 0).
#[must_use]
pub fn min_domains(members: Option<u32>, profile_min: u32) -> u32 {
    members.map_or(profile_min, |m| m.min(profile_min)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(ann: &[(&str, &str)], labels: &[(&str, &str)], sts: Option<&str>) -> ObjectMeta {
        let map = |kv: &[(&str, &str)]| {
            Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        };
        ObjectMeta {
            annotations: map(ann),
            labels: map(labels),
            owner_references: sts.map(|s| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    name: s.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn group_precedence() {
        let inst = [(INSTANCE_LABEL, "i")];
        type Found = Result<Option<(&'static str, GroupSource)>, &'static str>;
        let cases: [(ObjectMeta, Found); 6] = [
            (meta(&[(GROUP, "g")], &inst, Some("s")), Ok(Some(("g", GroupSource::Annotation)))),
            (meta(&[], &inst, Some("s")), Ok(Some(("s", GroupSource::StatefulSet)))),
            (meta(&[], &inst, None), Ok(Some(("i", GroupSource::InstanceLabel)))),
            (meta(&[], &[(INSTANCE_LABEL, "")], None), Ok(None)),
            (meta(&[(GROUP, "")], &inst, Some("s")), Err("")),
            (meta(&[(GROUP, "a/b")], &inst, None), Err("a/b")),
        ];
        for (m, want) in cases {
            assert_eq!(group_name(&m), want, "{m:?}");
        }
    }

    #[test]
    fn member_counts() {
        let cases = [
            (Some(5), Some(3), 2, (5, MembersOrigin::Annotation)),
            (None, Some(3), 2, (3, MembersOrigin::StatefulSet)),
            (None, None, 2, (2, MembersOrigin::Observed)),
            (None, Some(0), 2, (1, MembersOrigin::StatefulSet)),
            (None, None, 0, (1, MembersOrigin::Observed)),
        ];
        for (ann, sts, seen, want) in cases {
            assert_eq!(voting_members(ann, sts, || seen), want, "{ann:?} {sts:?} {seen}");
        }
    }

    #[test]
    fn quorum_arithmetic() {
        for (n, limit, maj) in [(1, 0, 1), (2, 0, 2), (3, 1, 2), (4, 1, 3), (5, 2, 3), (7, 3, 4)] {
            assert_eq!((quorum_limit(n), majority(n)), (limit, maj), "n={n}");
        }
        assert!(!quorum_guarded(Quorum::Zone, 2) && quorum_guarded(Quorum::Zone, 3));
        assert!(!quorum_guarded(Quorum::Off, 5));
    }

    #[test]
    fn min_domains_is_capped_and_positive() {
        for (members, profile, want) in [(None, 3, 3), (Some(2), 3, 2), (Some(5), 3, 3), (Some(0), 3, 1)] {
            assert_eq!(min_domains(members, profile), want);
        }
    }

    #[test]
    fn members_are_canonical() {
        for (v, want) in [
            ("3", Some(3)),
            ("999", Some(999)),
            ("1000", None),
            ("03", None),
            ("+3", None),
            (" 3", None),
            ("0", None),
            ("", None),
        ] {
            assert_eq!(parse_members(v), want, "{v:?}");
        }
    }
}
