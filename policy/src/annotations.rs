//! The `stowage.io/*` pod annotations and their resolution into an effective [`Policy`].
//!
//! A pod opts in by carrying any `stowage.io/` annotation; `stowage.io/profile` picks the
//! profile (default: `default`). Every other key overrides one profile setting for that pod.
//! Unknown `stowage.io/` keys are errors, so a typo never silently does nothing.

use std::{collections::BTreeMap, fmt};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use crate::group::{GROUP, GroupKey, GroupSource, INSTANCE_LABEL, MAX_MEMBERS};
use crate::{
    config::{Config, DEFAULT_PROFILE, Pool, Profile, Weights},
    group, text,
    vocab::{LocalData, Quorum, Role, Spread, allowed_list, closest},
};

/// Prefix shared by every policy annotation.
pub const PREFIX: &str = "stowage.io/";
/// Profile name (opt-in).
pub const PROFILE: &str = "stowage.io/profile";
/// Number of voting members of the group.
pub const MEMBERS: &str = "stowage.io/members";
/// Zone spread: required | preferred | off.
pub const ZONE_SPREAD: &str = "stowage.io/zone-spread";
/// Node spread: required | preferred | off.
pub const NODE_SPREAD: &str = "stowage.io/node-spread";
/// Quorum guard: zone | off.
pub const QUORUM: &str = "stowage.io/quorum";
/// Local-data affinity: require | prefer | off.
pub const LOCAL_DATA: &str = "stowage.io/local-data";
/// Role: primary | replica.
pub const ROLE: &str = "stowage.io/role";
/// Dedicated pool name.
pub const POOL: &str = "stowage.io/pool";
/// Recovery mode override for the group: off | report | rebuild (read by the recovery
/// controller; placement ignores it).
pub const RECOVERY: &str = "stowage.io/recovery";
/// `"true"` pauses every recovery action for the group (read by the recovery controller).
pub const RECOVERY_PAUSED: &str = "stowage.io/recovery-paused";
/// The values [`RECOVERY`] accepts.
pub const RECOVERY_MODES: &[&str] = &["off", "report", "rebuild"];

/// The label the webhook stamps with the group name so selectors can match members.
pub const GROUP_LABEL: &str = GROUP;

/// Every annotation key the policy understands.
pub const KEYS: &[&str] =
    &[PROFILE, GROUP, MEMBERS, ZONE_SPREAD, NODE_SPREAD, QUORUM, LOCAL_DATA, ROLE, POOL, RECOVERY, RECOVERY_PAUSED];

/// Most names of defined profiles or pools listed in an error.
const KNOWN_NAMES: usize = 20;

/// One invalid annotation. Values taken from the pod are cut to [`text::MAX_ECHO`] bytes, so
/// every message stays short whatever the pod carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A value outside a closed vocabulary.
    #[error("annotation {key}: {value:?} is not allowed; allowed values: {allowed}")]
    NotAllowed {
        /// The annotation key.
        key: &'static str,
        /// The rejected value, cut short.
        value: String,
        /// The accepted values.
        allowed: String,
    },
    /// A value of the wrong shape.
    #[error("annotation {key}: {value:?} is not allowed; {expected}")]
    Invalid {
        /// The annotation key.
        key: &'static str,
        /// The rejected value, cut short.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// `stowage.io/` keys that mean nothing: all of a pod's in one error, the first few named
    /// and the rest counted, with the known keys listed once.
    #[error("{}", unknown_keys_text(.named, *.more))]
    UnknownKeys {
        /// The first [`text::MAX_NAMED`] unknown keys (in key order), cut short.
        named: Vec<UnknownKey>,
        /// How many more unknown keys the pod carries.
        more: usize,
    },
    /// A name that refers to nothing in the config.
    #[error("annotation {key}: {value:?} names no {what} in the stowage config; defined: {known}")]
    Unknown {
        /// The annotation key.
        key: &'static str,
        /// The rejected value, cut short.
        value: String,
        /// What kind of thing was looked up.
        what: &'static str,
        /// The names that exist (the first few, then a count).
        known: String,
    },
}

/// An unknown `stowage.io/` key as named in [`Error::UnknownKeys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key, cut short.
    pub key: String,
    /// The known key it is probably a typo of.
    pub hint: Option<&'static str>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        match self.hint {
            Some(hint) => write!(f, " (did you mean {hint}?)"),
            None => Ok(()),
        }
    }
}

fn unknown_keys_text(named: &[UnknownKey], more: usize) -> String {
    let known = KEYS.join(", ");
    match (named, more) {
        ([one], 0) => {
            let hint = one.hint.map(|h| format!(" (did you mean {h}?)")).unwrap_or_default();
            format!("annotation {} is not a stowage policy key{hint}; known keys: {known}", one.key)
        }
        _ => {
            let names: Vec<String> = named.iter().map(ToString::to_string).collect();
            let rest = if more > 0 { format!(" {} and {more} more", text::ELLIPSIS) } else { String::new() };
            format!("annotations {}{rest} are not stowage policy keys; known keys: {known}", names.join(", "))
        }
    }
}

/// The unknown `stowage.io/` keys among `keys`, as one error. Only the named keys get a
/// "did you mean" hint, and only when they are short enough to be a typo: the work stays
/// small whatever the number or length of the keys.
fn unknown_keys<'k>(keys: impl Iterator<Item = &'k String>) -> Option<Error> {
    let longest = KEYS.iter().map(|k| k.len()).max().unwrap_or(0);
    let mut named = Vec::new();
    let mut more = 0;
    for key in keys.filter(|k| k.starts_with(PREFIX) && !KEYS.contains(&k.as_str())) {
        if named.len() < text::MAX_NAMED {
            let hint = if key.len() <= longest + 2 { closest(key, KEYS) } else { None };
            named.push(UnknownKey { key: text::echo(key), hint });
        } else {
            more += 1;
        }
    }
    (!named.is_empty()).then_some(Error::UnknownKeys { named, more })
}

/// Every annotation error of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for Errors {}

/// The effective policy of one opted-in pod: its profile with the pod's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy<'c> {
    /// Profile name.
    pub profile_name: String,
    /// The profile itself.
    pub profile: &'c Profile,
    /// Group identity, if any could be derived.
    pub group: Option<GroupKey>,
    /// How the group was found.
    pub group_source: Option<GroupSource>,
    /// Name of the controlling StatefulSet, if any (for the member count).
    pub statefulset: Option<String>,
    /// Voting members given by annotation.
    pub members: Option<u32>,
    /// Zone spread.
    pub zone_spread: Spread,
    /// Node spread.
    pub node_spread: Spread,
    /// Quorum guard.
    pub quorum: Quorum,
    /// Local-data affinity.
    pub local_data: LocalData,
    /// The member's role, if known.
    pub role: Option<Role>,
    /// Dedicated pool (name and definition).
    pub pool: Option<(String, &'c Pool)>,
    /// Plugin weights.
    pub weights: Weights,
}

impl Policy<'_> {
    /// Largest number of voting members one zone may hold under the quorum guard:
    /// floor((n-1)/2), so losing any one zone leaves a majority.
    #[must_use]
    pub fn max_per_zone(members: u32) -> u32 {
        group::quorum_limit(members)
    }
}

/// True when the pod carries any `stowage.io/` annotation.
#[must_use]
pub fn opted_in(meta: &ObjectMeta) -> bool {
    meta.annotations.as_ref().is_some_and(|a| a.keys().any(|k| k.starts_with(PREFIX)))
}

/// Resolves the effective policy of a pod. `Ok(None)` when the pod has not opted in.
///
/// # Errors
/// Every invalid annotation of the pod, together.
pub fn resolve<'c>(meta: &ObjectMeta, cfg: &'c Config) -> Result<Option<Policy<'c>>, Errors> {
    let empty = BTreeMap::new();
    let ann = meta.annotations.as_ref().unwrap_or(&empty);
    if !ann.keys().any(|k| k.starts_with(PREFIX)) {
        return Ok(None);
    }
    let mut errors: Vec<Error> = unknown_keys(ann.keys()).into_iter().collect();

    let profile_name = ann.get(PROFILE).map_or(DEFAULT_PROFILE, String::as_str).to_owned();
    let fallback = cfg.profiles.get(DEFAULT_PROFILE);
    let profile = match cfg.profiles.get(&profile_name) {
        Some(p) => Some(p),
        None => {
            errors.push(Error::Unknown {
                key: PROFILE,
                value: text::echo(&profile_name),
                what: "profile",
                known: text::list(cfg.profiles.keys(), KNOWN_NAMES, text::MAX_ECHO),
            });
            None
        }
    };

    let mut choice = |key: &'static str, allowed: &'static [&'static str]| -> Option<&str> {
        let v = ann.get(key)?;
        if allowed.contains(&v.as_str()) {
            Some(v.as_str())
        } else {
            errors.push(Error::NotAllowed { key, value: text::echo(v), allowed: allowed_list(allowed) });
            None
        }
    };
    let zone_spread = choice(ZONE_SPREAD, Spread::ALLOWED).and_then(Spread::parse);
    let node_spread = choice(NODE_SPREAD, Spread::ALLOWED).and_then(Spread::parse);
    let quorum = choice(QUORUM, Quorum::ALLOWED).and_then(Quorum::parse);
    let local_data = choice(LOCAL_DATA, LocalData::ALLOWED).and_then(LocalData::parse);
    let role_ann = choice(ROLE, Role::ALLOWED).and_then(Role::parse);
    // Validated here so a typo is denied at admission; the recovery controller acts on them.
    let _ = choice(RECOVERY, RECOVERY_MODES);
    let _ = choice(RECOVERY_PAUSED, &["true", "false"]);

    let members = match ann.get(MEMBERS) {
        None => None,
        Some(v) => match group::parse_members(v) {
            Some(n) => Some(n),
            None => {
                errors.push(Error::Invalid {
                    key: MEMBERS,
                    value: text::echo(v),
                    expected: "expected a whole number from 1 to 999 in plain digits (no sign, no leading zero)",
                });
                None
            }
        },
    };

    let statefulset = group::controlling_statefulset(meta).map(str::to_owned);
    let (group_name, group_source) = match group::group_name(meta) {
        Ok(Some((name, source))) => (Some(name.to_owned()), Some(source)),
        Ok(None) => (None, None),
        Err(g) => {
            errors.push(Error::Invalid {
                key: GROUP,
                value: text::echo(g),
                expected: "expected a label value: 1 to 63 characters, alphanumeric with '-', '_' or '.' inside",
            });
            (None, None)
        }
    };
    let group = group_name
        .map(|name| GroupKey { namespace: meta.namespace.clone().unwrap_or_else(|| "default".to_owned()), name });

    let pool_name = ann.get(POOL).cloned().or_else(|| profile.and_then(|p| p.pool.clone()));
    let pool = match pool_name {
        Some(name) if !name.is_empty() => match cfg.pools.get(&name) {
            Some(pool) => Some((name, pool)),
            None => {
                errors.push(Error::Unknown {
                    key: POOL,
                    value: text::echo(&name),
                    what: "pool",
                    known: if cfg.pools.is_empty() {
                        "none".to_owned()
                    } else {
                        text::list(cfg.pools.keys(), KNOWN_NAMES, text::MAX_ECHO)
                    },
                });
                None
            }
        },
        _ => None,
    };

    let role = role_ann.or_else(|| role_from_labels(meta, cfg));

    if !errors.is_empty() {
        return Err(Errors(errors));
    }
    let Some(profile) = profile.or(fallback) else {
        return Ok(None);
    };
    Ok(Some(Policy {
        profile_name,
        profile,
        group,
        group_source,
        statefulset,
        members,
        zone_spread: zone_spread.unwrap_or(profile.zone_spread),
        node_spread: node_spread.unwrap_or(profile.node_spread),
        quorum: quorum.unwrap_or(profile.quorum),
        local_data: local_data.unwrap_or(profile.local_data),
        role,
        pool,
        weights: cfg.weights_for(profile),
    }))
}

/// The role read from the configured role labels (first present wins).
#[must_use]
pub fn role_from_labels(meta: &ObjectMeta, cfg: &Config) -> Option<Role> {
    let labels = meta.labels.as_ref()?;
    group::role_from_labels(|k| labels.get(k).map(String::as_str), &cfg.role_labels, &cfg.primary_values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use proptest::prelude::*;

    fn meta(ann: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("db".into()),
            annotations: Some(ann.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            ..ObjectMeta::default()
        }
    }

    fn cfg() -> Config {
        Config::from_yaml(
            "pools: {pg: {nodeSelector: {pool: pg}}}\nprofiles: {pg: {quorum: zone, zoneSpread: required}}\n",
        )
        .unwrap()
    }

    #[test]
    fn pods_without_stowage_annotations_are_not_opted_in() {
        let cfg = cfg();
        assert_eq!(resolve(&meta(&[("other.io/x", "1")]), &cfg).unwrap(), None);
        assert_eq!(resolve(&ObjectMeta::default(), &cfg).unwrap(), None);
    }

    #[test]
    fn profile_defaults_apply_and_annotations_override() {
        let cfg = cfg();
        let p = resolve(&meta(&[(PROFILE, "pg"), (ZONE_SPREAD, "preferred"), (MEMBERS, "5")]), &cfg).unwrap().unwrap();
        assert_eq!(p.quorum, Quorum::Zone);
        assert_eq!(p.zone_spread, Spread::Preferred);
        assert_eq!(p.members, Some(5));
        let d = resolve(&meta(&[(QUORUM, "zone")]), &cfg).unwrap().unwrap();
        assert_eq!(d.profile_name, "default");
        assert_eq!(d.quorum, Quorum::Zone);
    }

    #[test]
    fn every_bad_annotation_is_reported_with_key_value_and_allowed() {
        let cfg = cfg();
        let err = resolve(
            &meta(&[
                (PROFILE, "gold"),
                (QUORUM, "rack"),
                (MEMBERS, "0"),
                ("stowage.io/zone-sprad", "x"),
                (POOL, "nvme"),
            ]),
            &cfg,
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 5, "{text}");
        assert!(text.contains("stowage.io/quorum: \"rack\" is not allowed; allowed values: zone, off"), "{text}");
        assert!(text.contains("stowage.io/profile: \"gold\" names no profile"), "{text}");
        assert!(text.contains("stowage.io/members: \"0\""), "{text}");
        assert!(text.contains("did you mean stowage.io/zone-spread?"), "{text}");
        assert!(text.contains("stowage.io/pool: \"nvme\" names no pool in the stowage config; defined: pg"), "{text}");
    }

    #[test]
    fn group_comes_from_annotation_then_statefulset_then_instance_label() {
        let cfg = cfg();
        let mut m = meta(&[(PROFILE, "pg")]);
        m.labels = Some([(INSTANCE_LABEL.to_owned(), "inst".to_owned())].into());
        assert_eq!(resolve(&m, &cfg).unwrap().unwrap().group.unwrap().name, "inst");
        m.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: "pg-main".into(),
            uid: "u".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
        let p = resolve(&m, &cfg).unwrap().unwrap();
        assert_eq!(p.group, Some(GroupKey { namespace: "db".into(), name: "pg-main".into() }));
        assert_eq!(p.group_source, Some(GroupSource::StatefulSet));
        m.annotations.as_mut().unwrap().insert(GROUP.into(), "explicit".into());
        assert_eq!(resolve(&m, &cfg).unwrap().unwrap().group_source, Some(GroupSource::Annotation));
    }

    #[test]
    fn role_from_annotation_or_labels() {
        let cfg = cfg();
        let mut m = meta(&[(PROFILE, "pg")]);
        m.labels = Some([("cnpg.io/instanceRole".to_owned(), "primary".to_owned())].into());
        assert_eq!(resolve(&m, &cfg).unwrap().unwrap().role, Some(Role::Primary));
        m.labels = Some([("spilo-role".to_owned(), "replica".to_owned())].into());
        assert_eq!(resolve(&m, &cfg).unwrap().unwrap().role, Some(Role::Replica));
        m.annotations.as_mut().unwrap().insert(ROLE.into(), "primary".into());
        assert_eq!(resolve(&m, &cfg).unwrap().unwrap().role, Some(Role::Primary));
    }

    #[test]
    fn recovery_annotations_are_known_and_validated() {
        let cfg = cfg();
        let m = meta(&[(PROFILE, "pg"), (RECOVERY, "rebuild"), (RECOVERY_PAUSED, "true")]);
        assert!(resolve(&m, &cfg).unwrap().is_some());
        let m = meta(&[(PROFILE, "pg"), (RECOVERY, "always")]);
        let err = resolve(&m, &cfg).unwrap_err().to_string();
        assert!(err.contains("stowage.io/recovery") && err.contains("off, report, rebuild"), "{err}");
        let m = meta(&[(PROFILE, "pg"), (RECOVERY_PAUSED, "yes")]);
        assert!(resolve(&m, &cfg).is_err());
    }

    #[test]
    fn quorum_arithmetic() {
        assert_eq!(Policy::max_per_zone(3), 1);
        assert_eq!(Policy::max_per_zone(4), 1);
        assert_eq!(Policy::max_per_zone(5), 2);
        assert_eq!(Policy::max_per_zone(1), 0);
    }

    proptest! {
        #[test]
        fn any_annotation_values_resolve_or_fail_cleanly(
            entries in proptest::collection::btree_map(
                prop_oneof![Just(PROFILE.to_owned()), Just(QUORUM.to_owned()), Just(MEMBERS.to_owned()),
                            Just(ZONE_SPREAD.to_owned()), Just(GROUP.to_owned()), "stowage\\.io/[a-z-]{1,12}"],
                "\\PC{0,20}", 1..6)
        ) {
            let cfg = cfg();
            let m = ObjectMeta { annotations: Some(entries.clone()), ..ObjectMeta::default() };
            match resolve(&m, &cfg) {
                Ok(Some(p)) => {
                    // Every accepted value is one of the allowed spellings.
                    if let Some(q) = entries.get(QUORUM) { prop_assert_eq!(p.quorum.as_str(), q.as_str()); }
                    if let Some(n) = entries.get(MEMBERS) { prop_assert_eq!(p.members.map(|m| m.to_string()), Some(n.clone())); }
                }
                Ok(None) => prop_assert!(false, "stowage annotations always opt in"),
                Err(errors) => {
                    prop_assert!(!errors.0.is_empty());
                    for e in &errors.0 {
                        let text = e.to_string();
                        prop_assert!(
                            text.starts_with("annotation stowage.io/") || text.starts_with("annotations stowage.io/"),
                            "{}", text
                        );
                    }
                }
            }
        }
    }
}
