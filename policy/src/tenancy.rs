//! Which namespaces may use a profile (`namespaces` in a profile).
//!
//! A profile carries privileges a tenant should not pick by annotating a pod: a pool's
//! tolerations, a `priorityClassName`, a density class and a role that other groups' rules
//! count (density caps, separate primaries). A profile limited to some namespaces is usable
//! only by pods there: the webhook denies it elsewhere ([`check`]), and the extender counts a
//! pod toward other groups' rules only when its profile is allowed where it runs ([`Scopes`]),
//! so an annotation forged in another namespace takes no slot from anyone.
//!
//! Pools follow their profiles: a pod may name a pool directly (`stowage.io/pool`) only where a
//! profile using that pool is allowed, unless no profile uses it ([`pool_allowed`]).
//!
//! An unknown profile is allowed nowhere: the webhook already denies it, and a pod that names
//! one (added later by an update, or left behind by a config change) counts for no one.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Config, text};

/// True when pods in `namespace` may use the profile named `profile`.
#[must_use]
pub fn allowed(config: &Config, profile: &str, namespace: &str) -> bool {
    config.profile(profile).is_some_and(|p| in_scope(p.namespaces.as_ref(), namespace))
}

/// True when pods in `namespace` may name the pool `pool`: no profile uses it, or a profile
/// that uses it is allowed there.
#[must_use]
pub fn pool_allowed(config: &Config, pool: &str, namespace: &str) -> bool {
    let mut users = config.profiles.values().filter(|p| p.pool.as_deref() == Some(pool)).peekable();
    users.peek().is_none() || users.any(|p| in_scope(p.namespaces.as_ref(), namespace))
}

/// [`allowed`] and [`pool_allowed`] for a pod's profile and pool, as a denial that names what
/// is not allowed, the namespace and (a few of) the namespaces it is limited to.
///
/// # Errors
/// [`Error::Profile`] when the profile is unknown or limited to other namespaces,
/// [`Error::Pool`] when the pool belongs to profiles limited to other namespaces.
pub fn check(config: &Config, profile: &str, pool: Option<&str>, namespace: &str) -> Result<(), Error> {
    if !allowed(config, profile, namespace) {
        let limited_to = match config.profile(profile).and_then(|p| p.namespaces.as_ref()) {
            Some(names) => namespaces_text(names.iter()),
            None => "no namespace (it is not in the cluster config)".to_owned(),
        };
        return Err(Error::Profile { profile: text::echo(profile), namespace: text::echo(namespace), limited_to });
    }
    if let Some(pool) = pool.filter(|pool| !pool_allowed(config, pool, namespace)) {
        let mut names = BTreeSet::new();
        for p in config.profiles.values().filter(|p| p.pool.as_deref() == Some(pool)) {
            names.extend(p.namespaces.iter().flatten());
        }
        return Err(Error::Pool {
            pool: text::echo(pool),
            namespace: text::echo(namespace),
            limited_to: namespaces_text(names.into_iter()),
        });
    }
    Ok(())
}

fn namespaces_text<'a>(names: impl ExactSizeIterator<Item = &'a String>) -> String {
    if names.len() == 0 {
        "no namespace".to_owned()
    } else {
        format!("namespace(s) {}", text::list(names, text::MAX_NAMED, text::MAX_ECHO))
    }
}

/// A profile or pool used outside its namespaces. Every field is already bounded for quoting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The pod's profile is not allowed in its namespace.
    #[error(
        "profile {profile:?} is not allowed in namespace {namespace:?}: the cluster config limits it to {limited_to}"
    )]
    Profile {
        /// The profile, clipped.
        profile: String,
        /// The pod's namespace, clipped.
        namespace: String,
        /// The namespaces the profile is limited to, a few named and the rest counted.
        limited_to: String,
    },
    /// The pod names a pool whose profiles are not allowed in its namespace.
    #[error(
        "pool {pool:?} is not allowed in namespace {namespace:?}: the profiles using it are limited to {limited_to}"
    )]
    Pool {
        /// The pool, clipped.
        pool: String,
        /// The pod's namespace, clipped.
        namespace: String,
        /// The namespaces of the profiles using the pool, a few named and the rest counted.
        limited_to: String,
    },
}

/// The namespace scope of every profile, the part of a config a pod cache keeps to decide
/// [`allowed`] without holding the whole config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeMap<String, Option<BTreeSet<String>>>);

impl Scopes {
    /// The scopes of `config`'s profiles.
    #[must_use]
    pub fn of(config: &Config) -> Self {
        Self(config.profiles.iter().map(|(name, p)| (name.clone(), p.namespaces.clone())).collect())
    }

    /// Same answer as [`allowed`] on the config the scopes were taken from.
    #[must_use]
    pub fn allows(&self, profile: &str, namespace: &str) -> bool {
        self.0.get(profile).is_some_and(|scope| in_scope(scope.as_ref(), namespace))
    }
}

fn in_scope(scope: Option<&BTreeSet<String>>, namespace: &str) -> bool {
    scope.is_none_or(|names| names.contains(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "
profiles:
  pg: {namespaces: [db, db-staging]}
  open: {}
  off: {namespaces: []}
";

    #[test]
    fn table() {
        let cfg = Config::from_yaml(CONFIG).unwrap();
        let scopes = Scopes::of(&cfg);
        for (profile, namespace, want) in [
            ("pg", "db", true),
            ("pg", "db-staging", true),
            ("pg", "tenant", false),
            ("pg", "", false),
            ("open", "tenant", true),
            ("default", "tenant", true),
            ("off", "db", false),
            ("missing", "db", false),
        ] {
            assert_eq!(allowed(&cfg, profile, namespace), want, "{profile} in {namespace}");
            assert_eq!(scopes.allows(profile, namespace), want, "scopes: {profile} in {namespace}");
            assert_eq!(check(&cfg, profile, None, namespace).is_ok(), want, "check: {profile} in {namespace}");
        }
    }

    #[test]
    fn pools_follow_the_profiles_that_use_them() {
        let cfg = Config::from_yaml(
            "pools: {nvme: {nodeSelector: {pool: nvme}}, shared: {nodeSelector: {pool: shared}}, free: {nodeSelector: {pool: free}}}
profiles:
  pg: {pool: nvme, namespaces: [db]}
  kafka: {pool: shared, namespaces: [queue]}
  cache: {pool: shared}
",
        )
        .unwrap();
        for (pool, namespace, want) in [
            ("nvme", "db", true),
            ("nvme", "tenant", false),
            ("shared", "tenant", true),
            ("free", "tenant", true),
            ("missing", "tenant", true),
        ] {
            assert_eq!(pool_allowed(&cfg, pool, namespace), want, "{pool} in {namespace}");
        }
        assert_eq!(
            check(&cfg, "default", Some("nvme"), "tenant").unwrap_err().to_string(),
            "pool \"nvme\" is not allowed in namespace \"tenant\": the profiles using it are limited to namespace(s) db"
        );
        assert_eq!(check(&cfg, "pg", Some("nvme"), "db"), Ok(()));
    }

    #[test]
    fn denials_name_profile_namespace_and_scope() {
        let cfg = Config::from_yaml(CONFIG).unwrap();
        assert_eq!(
            check(&cfg, "pg", None, "tenant").unwrap_err().to_string(),
            "profile \"pg\" is not allowed in namespace \"tenant\": the cluster config limits it to namespace(s) db, db-staging"
        );
        assert_eq!(
            check(&cfg, "off", None, "db").unwrap_err().to_string(),
            "profile \"off\" is not allowed in namespace \"db\": the cluster config limits it to no namespace"
        );
    }

    #[test]
    fn denials_stay_short_with_many_namespaces() {
        let names: Vec<String> = (0..5000).map(|i| format!("ns-{i:04}-{}", "x".repeat(50))).collect();
        let yaml = format!("profiles:\n  pg: {{namespaces: [{}]}}\n", names.join(", "));
        let cfg = Config::from_yaml(&yaml).unwrap();
        let denial = check(&cfg, "pg", None, &"t".repeat(63)).unwrap_err().to_string();
        assert!(denial.len() < 1024, "{} bytes", denial.len());
        assert!(denial.contains("and 4995 more"), "{denial}");
    }
}
