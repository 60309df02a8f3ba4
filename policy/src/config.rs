//! The cluster-wide config file: profiles, pools, plugin weights and scheduler settings.
//!
//! The file is YAML. Parsing walks the document by hand rather than through `serde` derive so
//! that **every** problem in a file is reported at once, each naming its path, the bad value and
//! what is allowed. See `docs/policy.md` for the reference and `examples/config.yaml` for a
//! commented example.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

use serde_json::{Map, Value};

use crate::{
    quantity::Quantity,
    text,
    vocab::{LocalData, QosMode, Quorum, Spread, allowed_list, closest},
};

/// The `apiVersion` a config file must declare (when it declares one).
pub const API_VERSION: &str = "stowage.io/v1alpha1";
/// The `kind` a config file must declare (when it declares one).
pub const KIND: &str = "StowageConfig";
/// The profile every cluster has, used when a pod names none of its own.
pub const DEFAULT_PROFILE: &str = "default";
/// The extended resource the webhook adds to opted-in pods when [`Config::managed_resource`] is
/// on; kube-scheduler's extender stanza names it in `managedResources` so that only pods
/// requesting it are sent to the extender.
pub const MANAGED_RESOURCE: &str = "stowage.io/managed";

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Dotted path of the offending field, e.g. `profiles.pg.qos`.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Problems shown by [`Error`]'s `Display` (a log line); the rest are counted. The list itself
/// keeps every problem for `stowage config check`.
const SHOWN_ISSUES: usize = 20;
/// Longest issue path and message kept; both may quote the file.
const MAX_ISSUE_PATH: usize = 200;
const MAX_ISSUE_MESSAGE: usize = 384;
/// Longest YAML syntax error kept (the parser may quote the offending line).
const MAX_YAML_ERROR: usize = 512;

/// Errors from loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not valid YAML.
    #[error("config is not valid YAML: {0}")]
    Yaml(String),
    /// The file is YAML but breaks the schema (or holds no document at all); every problem is
    /// kept, the first few are shown.
    #[error("config has {} problem(s):\n{}", .0.len(), issues_text(.0))]
    Invalid(Vec<Issue>),
}

fn issues_text(issues: &[Issue]) -> String {
    let mut lines: Vec<String> = issues.iter().take(SHOWN_ISSUES).map(|i| format!("  - {i}")).collect();
    if issues.len() > SHOWN_ISSUES {
        lines.push(format!("  {} and {} more problem(s)", text::ELLIPSIS, issues.len() - SHOWN_ISSUES));
    }
    lines.join("\n")
}

/// Plugin weights: how much each plugin's 0..100 score counts in the combined score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// Weight of the local-data plugin.
    pub local_data: u32,
    /// Weight of the zone-spread / quorum plugin.
    pub zone_spread: u32,
    /// Weight of the contention plugin.
    pub contention: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self { local_data: 3, zone_spread: 2, contention: 1 }
    }
}

/// A point of a broken-linear score shape over utilisation (as in KEP-4049).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapePoint {
    /// Utilisation in percent, 0..=100.
    pub utilization: u32,
    /// Score at that utilisation, 0..=10.
    pub score: u32,
}

/// Requests and limits for one container (or the default for unnamed ones).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourceSpec {
    /// Requested resources by name (`cpu`, `memory`, `ephemeral-storage`, ...).
    pub requests: BTreeMap<String, QuantityText>,
    /// Limits by name.
    pub limits: BTreeMap<String, QuantityText>,
}

/// A quantity as written in the config, kept verbatim for patches, with its parsed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityText {
    /// The text as written (numbers are rendered as plain decimal text).
    pub text: String,
    /// The parsed value.
    pub value: Quantity,
}

/// Container sizing of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Per container name; matches containers, init containers and sidecars by name.
    pub containers: BTreeMap<String, ResourceSpec>,
    /// For every container not named in `containers` (sidecars included).
    pub default: Option<ResourceSpec>,
}

/// Cap on database pods of one class per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Density {
    /// The class shared by profiles that count together (defaults to the profile name).
    pub class: String,
    /// At most this many pods of the class on one node.
    pub max_per_node: u32,
}

/// Which neighbours a database pod accepts on its node (`neighbours` in a profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Neighbours {
    /// Any pod; noisy neighbours only lower the node's score.
    #[default]
    Any,
    /// Nodes running a BestEffort pod or a pod without cpu or memory limits are refused.
    AvoidUnlimited,
}

impl Neighbours {
    /// Every accepted spelling, in documentation order.
    pub const ALLOWED: &'static [&'static str] = &["any", "avoid-unlimited"];

    /// The canonical spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::AvoidUnlimited => "avoid-unlimited",
        }
    }

    /// Parses the exact canonical spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "any" => Some(Self::Any),
            "avoid-unlimited" => Some(Self::AvoidUnlimited),
            _ => None,
        }
    }
}

impl fmt::Display for Neighbours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the recovery controller does for members of a profile (`recovery.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RecoveryMode {
    /// Nothing: members stranded on a dead node are left alone.
    #[default]
    Off,
    /// Events and metrics say what would be done; nothing is changed.
    Report,
    /// A member stranded with its local volume on a dead node is rebuilt elsewhere.
    Rebuild,
}

impl RecoveryMode {
    /// Every accepted spelling, in documentation order.
    pub const ALLOWED: &'static [&'static str] = &["off", "report", "rebuild"];

    /// The canonical spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Report => "report",
            Self::Rebuild => "rebuild",
        }
    }

    /// Parses the exact canonical spelling.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(Self::Off),
            "report" => Some(Self::Report),
            "rebuild" => Some(Self::Rebuild),
            _ => None,
        }
    }
}

impl fmt::Display for RecoveryMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Recovery of members whose node died (`recovery` in a profile; docs/recovery.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Off, report or rebuild.
    pub mode: RecoveryMode,
    /// How long a node must be NotReady/Unknown, with no Lease renewal, before it counts as dead.
    pub after: Duration,
    /// How long a rebuilt member may take to become Ready before its rebuild counts as stuck
    /// (`stuckAfter`): the group stays held, but the rebuild stops counting against the
    /// cluster-wide cap.
    pub stuck_after: Duration,
}

impl Recovery {
    /// Shortest accepted `after`: below it a slow node would be taken for a dead one.
    pub const MIN_AFTER: Duration = Duration::from_secs(10);
    /// Longest accepted `after`.
    pub const MAX_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
    /// Shortest accepted `stuckAfter`: a rebuild needs at least a pod start and a volume bind.
    pub const MIN_STUCK_AFTER: Duration = Duration::from_secs(60);
    /// Longest accepted `stuckAfter`.
    pub const MAX_STUCK_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
}

impl Default for Recovery {
    fn default() -> Self {
        Self { mode: RecoveryMode::Off, after: Duration::from_secs(600), stuck_after: Duration::from_secs(900) }
    }
}

/// A named placement profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Container sizing.
    pub resources: Resources,
    /// QoS shaping.
    pub qos: QosMode,
    /// Round cpu up to whole cores (for the static CPU manager).
    pub integer_cpu: bool,
    /// Replace values the user set instead of keeping them (with a warning per change).
    pub override_user: bool,
    /// Dedicated node pool (a key of [`Config::pools`]).
    pub pool: Option<String>,
    /// priorityClassName to set when the pod has none.
    pub priority_class_name: Option<String>,
    /// Zone spread default.
    pub zone_spread: Spread,
    /// Node (hostname) spread default.
    pub node_spread: Spread,
    /// Quorum guard default.
    pub quorum: Quorum,
    /// Local-data default.
    pub local_data: LocalData,
    /// `minDomains` for required zone spread (capped by the member count).
    pub min_domains: u32,
    /// Never place two primaries of any group on one node.
    pub separate_primaries: bool,
    /// Density cap, if any.
    pub density: Option<Density>,
    /// Which neighbours the pod accepts on its node.
    pub neighbours: Neighbours,
    /// Plugin weights for this profile (else the config's).
    pub weights: Option<Weights>,
    /// Score shape for local capacity fit.
    pub capacity_shape: Vec<ShapePoint>,
    /// Recovery of members whose node died.
    pub recovery: Recovery,
    /// The namespaces whose pods may use the profile; `None` (the field left out) allows every
    /// namespace, an empty set none. See [`crate::tenancy`].
    pub namespaces: Option<BTreeSet<String>>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            resources: Resources::default(),
            qos: QosMode::Burstable,
            integer_cpu: false,
            override_user: false,
            pool: None,
            priority_class_name: None,
            zone_spread: Spread::Preferred,
            node_spread: Spread::Preferred,
            quorum: Quorum::Off,
            local_data: LocalData::Prefer,
            min_domains: 3,
            separate_primaries: false,
            density: None,
            neighbours: Neighbours::Any,
            weights: None,
            capacity_shape: default_shape(),
            recovery: Recovery::default(),
            namespaces: None,
        }
    }
}

/// The default capacity shape: prefer the most free space (0% used scores 10, full scores 0).
#[must_use]
pub fn default_shape() -> Vec<ShapePoint> {
    vec![ShapePoint { utilization: 0, score: 10 }, ShapePoint { utilization: 100, score: 0 }]
}

/// A toleration the webhook adds for a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolToleration {
    /// Taint key.
    pub key: String,
    /// `Equal` (with value) or `Exists`.
    pub operator: String,
    /// Taint value for `Equal`.
    pub value: Option<String>,
    /// Taint effect, or `None` for all effects.
    pub effect: Option<String>,
}

/// A dedicated node pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Labels a node of the pool carries (all must match).
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for the pool's taints.
    pub tolerations: Vec<PoolToleration>,
}

/// The parsed, validated cluster config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Scheduler name the webhook sets on opted-in pods that use `default-scheduler`.
    pub scheduler_name: Option<String>,
    /// Node label naming the zone.
    pub zone_label: String,
    /// Node label naming the host.
    pub hostname_label: String,
    /// Pod labels read (in order) for a member's role when `stowage.io/role` is absent.
    pub role_labels: Vec<String>,
    /// Role-label values meaning "primary".
    pub primary_values: Vec<String>,
    /// Default plugin weights.
    pub weights: Weights,
    /// How long an in-flight placement is remembered without informer confirmation.
    pub ledger_ttl: Duration,
    /// Dedicated pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Profiles by name; always contains [`DEFAULT_PROFILE`].
    pub profiles: BTreeMap<String, Profile>,
    /// `managedResource`: the webhook adds [`MANAGED_RESOURCE`] (request = limit = 1) to opted-in
    /// pods, for the extender registered in the cluster's own kube-scheduler with
    /// `managedResources`.
    pub managed_resource: bool,
}

impl Default for Config {
    fn default() -> Self {
        let mut profiles = BTreeMap::new();
        profiles.insert(DEFAULT_PROFILE.to_owned(), Profile::default());
        Self {
            scheduler_name: None,
            zone_label: "topology.kubernetes.io/zone".to_owned(),
            hostname_label: "kubernetes.io/hostname".to_owned(),
            role_labels: ["cnpg.io/instanceRole", "spilo-role", "role"].map(str::to_owned).to_vec(),
            primary_values: ["primary", "master", "leader"].map(str::to_owned).to_vec(),
            weights: Weights::default(),
            ledger_ttl: Duration::from_secs(60),
            pools: BTreeMap::new(),
            profiles,
            managed_resource: false,
        }
    }
}

impl Config {
    /// Parses and validates a YAML config, reporting every problem together.
    ///
    /// A file with no document (empty, blank or only comments) is invalid rather than "all
    /// defaults": a ConfigMap key emptied by mistake or a truncated write must never replace a
    /// good config on reload. `{}` asks for the defaults explicitly.
    ///
    /// # Errors
    /// [`Error::Yaml`] for syntax errors, [`Error::Invalid`] listing every schema problem.
    pub fn from_yaml(yaml: &str) -> Result<Self, Error> {
        let value: Value = if yaml.trim().is_empty() {
            Value::Null
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| Error::Yaml(text::clip(&e.to_string(), MAX_YAML_ERROR)))?
        };
        Self::from_value(&value)
    }

    /// Validates an already-parsed document.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing every problem.
    pub fn from_value(value: &Value) -> Result<Self, Error> {
        let mut w = Walker::default();
        let cfg = parse_config(&mut w, value);
        if w.issues.is_empty() { Ok(cfg) } else { Err(Error::Invalid(w.issues)) }
    }

    /// The profile named `name`.
    #[must_use]
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// Effective plugin weights for a profile.
    #[must_use]
    pub fn weights_for(&self, profile: &Profile) -> Weights {
        profile.weights.unwrap_or(self.weights)
    }
}

// === parsing ===

/// Accumulates issues while walking the document.
#[derive(Default)]
struct Walker {
    issues: Vec<Issue>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// A value as quoted in a message, cut short.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{:?}", text::echo(s)),
        other => text::echo(&other.to_string()),
    }
}

impl Walker {
    /// Records a problem; path and message are cut short, as both may quote the file.
    fn issue(&mut self, path: &str, message: impl Into<String>) {
        let mut message = message.into();
        text::truncate(&mut message, MAX_ISSUE_MESSAGE);
        self.issues.push(Issue { path: text::clip(path, MAX_ISSUE_PATH), message });
    }

    /// The object at `path`, reporting a wrong type and any key outside `known`.
    fn object<'a>(&mut self, path: &str, v: &'a Value, known: &[&str]) -> Option<&'a Map<String, Value>> {
        match v {
            Value::Object(map) => {
                for key in map.keys() {
                    if !known.is_empty() && !known.contains(&key.as_str()) {
                        let hint = closest(key, known).map(|k| format!(" (did you mean {k:?}?)")).unwrap_or_default();
                        self.issue(
                            &join(path, key),
                            format!("unknown field{hint}; allowed fields: {}", known.join(", ")),
                        );
                    }
                }
                Some(map)
            }
            Value::Null => None,
            other => {
                self.issue(path, format!("expected a mapping, got {}", describe(other)));
                None
            }
        }
    }

    fn string(&mut self, path: &str, v: Option<&Value>) -> Option<String> {
        match v? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => {
                self.issue(path, format!("expected a string, got {}", describe(other)));
                None
            }
        }
    }

    fn boolean(&mut self, path: &str, v: Option<&Value>) -> Option<bool> {
        match v? {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            other => {
                self.issue(path, format!("expected true or false, got {}", describe(other)));
                None
            }
        }
    }

    fn uint(&mut self, path: &str, v: Option<&Value>, min: u32, max: u32) -> Option<u32> {
        let v = v?;
        if v.is_null() {
            return None;
        }
        match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.issue(path, format!("{} is not allowed; expected an integer from {min} to {max}", describe(v)));
                None
            }
        }
    }

    fn choice<T>(
        &mut self,
        path: &str,
        v: Option<&Value>,
        parse: fn(&str) -> Option<T>,
        allowed: &[&str],
    ) -> Option<T> {
        // YAML 1.1 reads an unquoted `off` as false; where "off" is a value, take it as meant.
        if v == Some(&Value::Bool(false)) && allowed.contains(&"off") {
            return parse("off");
        }
        let s = self.string(path, v)?;
        let parsed = parse(&s);
        if parsed.is_none() {
            self.issue(path, format!("{:?} is not allowed; allowed values: {}", text::echo(&s), allowed_list(allowed)));
        }
        parsed
    }

    fn string_list(&mut self, path: &str, v: Option<&Value>) -> Option<Vec<String>> {
        match v? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.string(&format!("{path}[{i}]"), Some(item)))
                    .collect(),
            ),
            Value::Null => None,
            other => {
                self.issue(path, format!("expected a list of strings, got {}", describe(other)));
                None
            }
        }
    }

    fn string_map(&mut self, path: &str, v: Option<&Value>) -> BTreeMap<String, String> {
        let Some(map) = v.and_then(|v| self.object(path, v, &[])) else {
            return BTreeMap::new();
        };
        map.iter().filter_map(|(k, v)| self.string(&join(path, k), Some(v)).map(|s| (k.clone(), s))).collect()
    }

    fn quantity(&mut self, path: &str, v: &Value) -> Option<QuantityText> {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => {
                self.issue(path, format!("expected a quantity such as 500m or 2Gi, got {}", describe(other)));
                return None;
            }
        };
        match Quantity::parse_non_negative(&text) {
            Ok(value) => Some(QuantityText { text, value }),
            Err(e) => {
                self.issue(path, e.to_string());
                None
            }
        }
    }

    fn duration(&mut self, path: &str, v: Option<&Value>) -> Option<Duration> {
        let s = self.string(path, v)?;
        let d = parse_duration(&s);
        if d.is_none() {
            self.issue(path, format!("{:?} is not a duration; expected e.g. 30s, 2m, 1h30m", text::echo(&s)));
        }
        d
    }
}

/// Parses a Go-style duration made of `<number><unit>` parts (`ms`, `s`, `m`, `h`).
#[must_use]
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return None;
        };
        total = total.checked_add(unit.checked_mul(u32::try_from(n).ok()?)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

const TOP_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "schedulerName",
    "zoneLabel",
    "hostnameLabel",
    "roleLabels",
    "primaryRoleValues",
    "weights",
    "ledgerTTL",
    "pools",
    "profiles",
    "managedResource",
];

const PROFILE_FIELDS: &[&str] = &[
    "resources",
    "qos",
    "integerCPU",
    "override",
    "pool",
    "priorityClassName",
    "zoneSpread",
    "nodeSpread",
    "quorum",
    "localData",
    "minDomains",
    "separatePrimaries",
    "density",
    "neighbours",
    "weights",
    "capacityShape",
    "recovery",
    "namespaces",
];

fn parse_config(w: &mut Walker, root: &Value) -> Config {
    let mut cfg = Config::default();
    if root.is_null() {
        w.issue("", "the config is empty (no document, or only comments); write {} to use the defaults");
        return cfg;
    }
    let Some(top) = w.object("", root, TOP_FIELDS) else {
        return cfg;
    };
    if let Some(v) = w.string("apiVersion", top.get("apiVersion"))
        && v != API_VERSION
    {
        w.issue("apiVersion", format!("{v:?} is not supported; use {API_VERSION:?}"));
    }
    if let Some(v) = w.string("kind", top.get("kind"))
        && v != KIND
    {
        w.issue("kind", format!("{v:?} is not allowed; use {KIND:?}"));
    }
    if let Some(name) = w.string("schedulerName", top.get("schedulerName")) {
        if is_dns_subdomain(&name) {
            cfg.scheduler_name = Some(name);
        } else if !name.is_empty() {
            w.issue("schedulerName", format!("{name:?} is not a valid scheduler name (a DNS subdomain)"));
        }
    }
    for (key, slot) in [("zoneLabel", &mut cfg.zone_label), ("hostnameLabel", &mut cfg.hostname_label)] {
        if let Some(v) = w.string(key, top.get(key)) {
            match check_label_key(&v) {
                Ok(()) => *slot = v,
                Err(why) => w.issue(key, format!("{v:?} is not a label key: {why}")),
            }
        }
    }
    if let Some(list) = w.string_list("roleLabels", top.get("roleLabels")) {
        for (i, key) in list.iter().enumerate() {
            if let Err(why) = check_label_key(key) {
                w.issue(&format!("roleLabels[{i}]"), format!("{key:?} is not a label key: {why}"));
            }
        }
        cfg.role_labels = list;
    }
    if let Some(list) = w.string_list("primaryRoleValues", top.get("primaryRoleValues")) {
        if list.is_empty() {
            w.issue("primaryRoleValues", "must name at least one value");
        }
        cfg.primary_values = list;
    }
    if let Some(weights) = top.get("weights").and_then(|v| parse_weights(w, "weights", v)) {
        cfg.weights = weights;
    }
    if let Some(ttl) = w.duration("ledgerTTL", top.get("ledgerTTL")) {
        if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
            w.issue("ledgerTTL", format!("{ttl:?} is out of range; allowed: 1s to 1h"));
        } else {
            cfg.ledger_ttl = ttl;
        }
    }
    if let Some(on) = w.boolean("managedResource", top.get("managedResource")) {
        cfg.managed_resource = on;
    }
    if let Some(pools) = top.get("pools").and_then(|v| w.object("pools", v, &[])) {
        for (name, v) in pools {
            let path = join("pools", name);
            if !is_label_value(name) || name.is_empty() {
                w.issue(&path, "pool names must be valid label values (63 chars of [A-Za-z0-9_.-])");
            }
            cfg.pools.insert(name.clone(), parse_pool(w, &path, name, v));
        }
    }
    if let Some(profiles) = top.get("profiles").and_then(|v| w.object("profiles", v, &[])) {
        for (name, v) in profiles {
            let path = join("profiles", name);
            if !is_label_value(name) || name.is_empty() {
                w.issue(&path, "profile names must be valid label values (63 chars of [A-Za-z0-9_.-])");
            }
            let profile = parse_profile(w, &path, name, v);
            cfg.profiles.insert(name.clone(), profile);
        }
    }
    // Cross references.
    for (name, profile) in &cfg.profiles {
        if let Some(pool) = &profile.pool
            && !cfg.pools.contains_key(pool)
        {
            let known: Vec<&str> = cfg.pools.keys().map(String::as_str).collect();
            w.issue(
                &format!("profiles.{name}.pool"),
                format!(
                    "{pool:?} names no pool; pools defined: {}",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            );
        }
    }
    cfg
}

fn parse_weights(w: &mut Walker, path: &str, v: &Value) -> Option<Weights> {
    let map = w.object(path, v, &["localData", "zoneSpread", "contention"])?;
    let d = Weights::default();
    let weights = Weights {
        local_data: w.uint(&join(path, "localData"), map.get("localData"), 0, 100).unwrap_or(d.local_data),
        zone_spread: w.uint(&join(path, "zoneSpread"), map.get("zoneSpread"), 0, 100).unwrap_or(d.zone_spread),
        contention: w.uint(&join(path, "contention"), map.get("contention"), 0, 100).unwrap_or(d.contention),
    };
    if weights.local_data + weights.zone_spread + weights.contention == 0 {
        w.issue(path, "at least one weight must be positive");
    }
    Some(weights)
}

fn parse_pool(w: &mut Walker, path: &str, name: &str, v: &Value) -> Pool {
    let mut pool = Pool { node_selector: BTreeMap::new(), tolerations: Vec::new() };
    let Some(map) = w.object(path, v, &["nodeSelector", "tolerations"]) else {
        return pool;
    };
    pool.node_selector = w.string_map(&join(path, "nodeSelector"), map.get("nodeSelector"));
    for (k, v) in &pool.node_selector {
        if let Err(why) = check_label_key(k) {
            w.issue(&join(&join(path, "nodeSelector"), k), format!("{k:?} is not a label key: {why}"));
        } else if !is_label_value(v) {
            w.issue(&join(&join(path, "nodeSelector"), k), format!("{v:?} is not a valid label value"));
        }
    }
    if pool.node_selector.is_empty() {
        w.issue(
            &join(path, "nodeSelector"),
            format!("pool {name:?} needs at least one node label to select its nodes"),
        );
    }
    match map.get("tolerations") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let tpath = format!("{path}.tolerations[{i}]");
                let Some(t) = w.object(&tpath, item, &["key", "operator", "value", "effect"]) else { continue };
                let key = w.string(&join(&tpath, "key"), t.get("key")).unwrap_or_default();
                if key.is_empty() {
                    w.issue(&join(&tpath, "key"), "a pool toleration needs a key");
                }
                let operator = w
                    .choice(
                        &join(&tpath, "operator"),
                        t.get("operator"),
                        |s| matches!(s, "Equal" | "Exists").then(|| s.to_owned()),
                        &["Equal", "Exists"],
                    )
                    .unwrap_or_else(|| "Equal".to_owned());
                let value = w.string(&join(&tpath, "value"), t.get("value"));
                if operator == "Exists" && value.is_some() {
                    w.issue(&join(&tpath, "value"), "must be empty when operator is Exists");
                }
                let effect = w.choice(
                    &join(&tpath, "effect"),
                    t.get("effect"),
                    |s| matches!(s, "NoSchedule" | "PreferNoSchedule" | "NoExecute").then(|| s.to_owned()),
                    &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                );
                pool.tolerations.push(PoolToleration { key, operator, value, effect });
            }
        }
        Some(Value::Null) | None => {}
        Some(other) => w.issue(&join(path, "tolerations"), format!("expected a list, got {}", describe(other))),
    }
    pool
}

fn parse_resource_spec(w: &mut Walker, path: &str, v: &Value) -> ResourceSpec {
    let mut spec = ResourceSpec::default();
    let Some(map) = w.object(path, v, &["requests", "limits"]) else { return spec };
    for (field, slot) in [("requests", &mut spec.requests), ("limits", &mut spec.limits)] {
        let fpath = join(path, field);
        let Some(res) = map.get(field).and_then(|v| w.object(&fpath, v, &[])) else { continue };
        for (name, q) in res {
            let qpath = join(&fpath, name);
            if let Err(why) = check_label_key(name) {
                w.issue(&qpath, format!("{name:?} is not a resource name: {why}"));
                continue;
            }
            if let Some(q) = w.quantity(&qpath, q) {
                slot.insert(name.clone(), q);
            }
        }
    }
    for (name, req) in &spec.requests {
        if let Some(lim) = spec.limits.get(name)
            && req.value > lim.value
        {
            w.issue(
                &format!("{path}.requests.{name}"),
                format!("request {} is above limit {}; a request may not exceed its limit", req.text, lim.text),
            );
        }
    }
    spec
}

fn parse_profile(w: &mut Walker, path: &str, name: &str, v: &Value) -> Profile {
    let mut p = Profile::default();
    let Some(map) = w.object(path, v, PROFILE_FIELDS) else { return p };
    let f = |k: &str| join(path, k);
    if let Some(res) = map.get("resources").and_then(|v| w.object(&f("resources"), v, &["containers", "default"])) {
        let cpath = join(&f("resources"), "containers");
        if let Some(containers) = res.get("containers").and_then(|v| w.object(&cpath, v, &[])) {
            for (cname, spec) in containers {
                let s = parse_resource_spec(w, &join(&cpath, cname), spec);
                p.resources.containers.insert(cname.clone(), s);
            }
        }
        if let Some(d) = res.get("default") {
            p.resources.default = Some(parse_resource_spec(w, &join(&f("resources"), "default"), d));
        }
    }
    if let Some(q) = w.choice(&f("qos"), map.get("qos"), QosMode::parse, QosMode::ALLOWED) {
        p.qos = q;
    }
    if let Some(b) = w.boolean(&f("integerCPU"), map.get("integerCPU")) {
        p.integer_cpu = b;
    }
    if let Some(b) = w.boolean(&f("override"), map.get("override")) {
        p.override_user = b;
    }
    p.pool = w.string(&f("pool"), map.get("pool")).filter(|s| !s.is_empty());
    if let Some(pc) = w.string(&f("priorityClassName"), map.get("priorityClassName")) {
        if is_dns_subdomain(&pc) {
            p.priority_class_name = Some(pc);
        } else {
            w.issue(&f("priorityClassName"), format!("{pc:?} is not a valid PriorityClass name"));
        }
    }
    if let Some(s) = w.choice(&f("zoneSpread"), map.get("zoneSpread"), Spread::parse, Spread::ALLOWED) {
        p.zone_spread = s;
    }
    if let Some(s) = w.choice(&f("nodeSpread"), map.get("nodeSpread"), Spread::parse, Spread::ALLOWED) {
        p.node_spread = s;
    }
    if let Some(q) = w.choice(&f("quorum"), map.get("quorum"), Quorum::parse, Quorum::ALLOWED) {
        p.quorum = q;
    }
    if let Some(l) = w.choice(&f("localData"), map.get("localData"), LocalData::parse, LocalData::ALLOWED) {
        p.local_data = l;
    }
    if let Some(n) = w.uint(&f("minDomains"), map.get("minDomains"), 1, 100) {
        p.min_domains = n;
    }
    if let Some(b) = w.boolean(&f("separatePrimaries"), map.get("separatePrimaries")) {
        p.separate_primaries = b;
    }
    if let Some(d) = map.get("density").and_then(|v| w.object(&f("density"), v, &["class", "maxPerNode"])) {
        let class = w.string(&join(&f("density"), "class"), d.get("class")).unwrap_or_else(|| name.to_owned());
        match w.uint(&join(&f("density"), "maxPerNode"), d.get("maxPerNode"), 1, 1000) {
            Some(max_per_node) => p.density = Some(Density { class, max_per_node }),
            None if d.get("maxPerNode").is_none() => w.issue(&join(&f("density"), "maxPerNode"), "is required"),
            None => {}
        }
    }
    if let Some(n) = w.choice(&f("neighbours"), map.get("neighbours"), Neighbours::parse, Neighbours::ALLOWED) {
        p.neighbours = n;
    }
    if let Some(v) = map.get("weights") {
        p.weights = parse_weights(w, &f("weights"), v);
    }
    match map.get("capacityShape") {
        Some(Value::Array(points)) => {
            let mut shape = Vec::new();
            for (i, point) in points.iter().enumerate() {
                let ppath = format!("{}[{i}]", f("capacityShape"));
                let Some(pm) = w.object(&ppath, point, &["utilization", "score"]) else { continue };
                let u = w.uint(&join(&ppath, "utilization"), pm.get("utilization"), 0, 100);
                let s = w.uint(&join(&ppath, "score"), pm.get("score"), 0, 10);
                if let (Some(utilization), Some(score)) = (u, s) {
                    shape.push(ShapePoint { utilization, score });
                }
            }
            if shape.len() < 2 {
                w.issue(&f("capacityShape"), "needs at least two points");
            } else if shape.windows(2).any(|p| p[0].utilization >= p[1].utilization) {
                w.issue(&f("capacityShape"), "utilization must increase strictly from point to point");
            } else {
                p.capacity_shape = shape;
            }
        }
        None | Some(Value::Null) => {}
        Some(other) => w.issue(&f("capacityShape"), format!("expected a list of points, got {}", describe(other))),
    }
    if let Some(r) = map.get("recovery").and_then(|v| w.object(&f("recovery"), v, &["mode", "after", "stuckAfter"])) {
        let rpath = f("recovery");
        if let Some(mode) = w.choice(&join(&rpath, "mode"), r.get("mode"), RecoveryMode::parse, RecoveryMode::ALLOWED) {
            p.recovery.mode = mode;
        }
        if let Some(after) = w.duration(&join(&rpath, "after"), r.get("after")) {
            if (Recovery::MIN_AFTER..=Recovery::MAX_AFTER).contains(&after) {
                p.recovery.after = after;
            } else {
                w.issue(&join(&rpath, "after"), format!("{after:?} is out of range; allowed: 10s to 168h"));
            }
        }
        if let Some(stuck) = w.duration(&join(&rpath, "stuckAfter"), r.get("stuckAfter")) {
            if (Recovery::MIN_STUCK_AFTER..=Recovery::MAX_STUCK_AFTER).contains(&stuck) {
                p.recovery.stuck_after = stuck;
            } else {
                w.issue(&join(&rpath, "stuckAfter"), format!("{stuck:?} is out of range; allowed: 1m to 168h"));
            }
        }
    }
    p.namespaces = parse_namespaces(w, &f("namespaces"), map.get("namespaces"));
    p
}

/// `namespaces`: exact namespace names (DNS-1123 labels), each once.
fn parse_namespaces(w: &mut Walker, path: &str, v: Option<&Value>) -> Option<BTreeSet<String>> {
    let names = w.string_list(path, v)?;
    let mut set = BTreeSet::new();
    for (i, name) in names.into_iter().enumerate() {
        let ipath = format!("{path}[{i}]");
        if !is_dns_label(&name) {
            w.issue(
                &ipath,
                format!(
                    "{:?} is not a namespace name: 1 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
                    text::echo(&name)
                ),
            );
        } else if set.contains(&name) {
            w.issue(&ipath, format!("{name:?} is listed twice"));
        } else {
            set.insert(name);
        }
    }
    Some(set)
}

// === Kubernetes name rules ===

/// Checks a qualified label/annotation key (`[prefix/]name`).
///
/// # Errors
/// A short reason when the key breaks the Kubernetes rules.
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Err("the prefix must be a DNS subdomain");
    }
    if name.is_empty() || name.len() > 63 {
        return Err("the name part must be 1 to 63 characters");
    }
    if !is_label_value(name) {
        return Err("the name part must be alphanumeric with '-', '_' or '.' inside");
    }
    Ok(())
}

/// True for a valid label value (empty allowed).
#[must_use]
pub fn is_label_value(v: &str) -> bool {
    if v.is_empty() {
        return true;
    }
    let b = v.as_bytes();
    v.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// True for a DNS-1123 label (what a namespace name is).
#[must_use]
pub fn is_dns_label(v: &str) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// True for a DNS-1123 subdomain.
#[must_use]
pub fn is_dns_subdomain(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(yaml: &str) -> Vec<String> {
        match Config::from_yaml(yaml) {
            Ok(_) => vec![],
            Err(Error::Invalid(issues)) => issues.iter().map(ToString::to_string).collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn neighbours_parses_and_rejects_unknown_values() {
        let cfg = Config::from_yaml("profiles:\n  pg: {neighbours: avoid-unlimited}\n").unwrap();
        assert_eq!(cfg.profile("pg").unwrap().neighbours, Neighbours::AvoidUnlimited);
        assert_eq!(cfg.profile(DEFAULT_PROFILE).unwrap().neighbours, Neighbours::Any);
        let got = issues("profiles:\n  pg: {neighbours: quiet}\n");
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("profiles.pg.neighbours:")
                && got[0].contains("\"quiet\"")
                && got[0].contains("avoid-unlimited"),
            "{got:#?}"
        );
    }

    #[test]
    fn recovery_parses_with_defaults_and_rejects_bad_values() {
        let cfg = Config::from_yaml(
            "profiles:\n  pg: {recovery: {mode: rebuild, after: 2m, stuckAfter: 30m}}\n  r: {recovery: {mode: report}}\n",
        )
        .unwrap();
        assert_eq!(
            cfg.profile("pg").unwrap().recovery,
            Recovery {
                mode: RecoveryMode::Rebuild,
                after: Duration::from_secs(120),
                stuck_after: Duration::from_secs(1800)
            }
        );
        assert_eq!(cfg.profile("r").unwrap().recovery.after, Duration::from_secs(600));
        assert_eq!(cfg.profile("r").unwrap().recovery.stuck_after, Duration::from_secs(900));
        assert_eq!(cfg.profile(DEFAULT_PROFILE).unwrap().recovery.mode, RecoveryMode::Off);
        let off = Config::from_yaml("profiles: {a: {recovery: {mode: off}}}").unwrap();
        assert_eq!(off.profile("a").unwrap().recovery.mode, RecoveryMode::Off, "unquoted off means off");
        let got = issues("profiles:\n  pg: {recovery: {mode: heal, after: 1s, when: now, stuckAfter: 5s}}\n");
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("profiles.pg.recovery.stuckAfter:") && i.contains("1m")), "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("profiles.pg.recovery.mode:") && i.contains("rebuild")), "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("profiles.pg.recovery.after:") && i.contains("10s")), "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("profiles.pg.recovery.when:")), "{got:#?}");
    }

    #[test]
    fn an_empty_mapping_has_the_default_profile() {
        let cfg = Config::from_yaml("{}").unwrap();
        assert!(cfg.profile(DEFAULT_PROFILE).is_some());
        assert_eq!(cfg.ledger_ttl, Duration::from_secs(60));
    }

    #[test]
    fn parses_a_full_config() {
        let cfg = Config::from_yaml(
            r#"
apiVersion: stowage.io/v1alpha1
kind: StowageConfig
schedulerName: stowage
weights: {localData: 5, zoneSpread: 4, contention: 1}
ledgerTTL: 90s
pools:
  postgres:
    nodeSelector: {node-role.kubernetes.io/postgres: ""}
    tolerations: [{key: dedicated, value: postgres, effect: NoSchedule}]
profiles:
  pg:
    qos: guaranteed
    integerCPU: true
    pool: postgres
    quorum: zone
    zoneSpread: required
    resources:
      containers:
        postgres: {requests: {cpu: 2, memory: 8Gi}, limits: {cpu: "2", memory: 8Gi}}
      default: {requests: {cpu: 100m, memory: 128Mi}}
    density: {maxPerNode: 2}
"#,
        )
        .unwrap();
        let pg = cfg.profile("pg").unwrap();
        assert_eq!(pg.qos, QosMode::Guaranteed);
        assert_eq!(pg.quorum, Quorum::Zone);
        assert_eq!(pg.resources.containers["postgres"].requests["cpu"].value, Quantity::from_units(2));
        assert_eq!(pg.density, Some(Density { class: "pg".into(), max_per_node: 2 }));
        assert_eq!(cfg.ledger_ttl, Duration::from_secs(90));
        assert_eq!(cfg.scheduler_name.as_deref(), Some("stowage"));
        assert_eq!(cfg.pools["postgres"].tolerations[0].operator, "Equal");
        assert!(cfg.profile("default").is_some(), "default stays available");
    }

    #[test]
    fn reports_every_problem_together() {
        let got = issues(
            r"
profiles:
  pg:
    qos: gold
    zoneSpred: required
    resources:
      default: {requests: {memory: 2Gb}}
    pool: missing
",
        );
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(
            got.iter().any(|i| i.contains("profiles.pg.qos")
                && i.contains("\"gold\"")
                && i.contains("guaranteed, burstable"))
        );
        assert!(got.iter().any(|i| i.contains("profiles.pg.zoneSpred") && i.contains("did you mean \"zoneSpread\"")));
        assert!(got.iter().any(|i| i.contains("profiles.pg.resources.default.requests.memory") && i.contains("2Gb")));
        assert!(got.iter().any(|i| i.contains("profiles.pg.pool") && i.contains("\"missing\"")));
    }

    #[test]
    fn rejects_request_above_limit_and_bad_types() {
        let got = issues(
            r"
weights: {localData: 0, zoneSpread: 0, contention: 0}
ledgerTTL: forever
profiles:
  a:
    integerCPU: yes please
    minDomains: 0
    resources:
      containers:
        db: {requests: {cpu: '2'}, limits: {cpu: 1}}
",
        );
        assert!(got.iter().any(|i| i.starts_with("weights:")), "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("ledgerTTL:")), "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("profiles.a.integerCPU:")), "{got:#?}");
        assert!(got.iter().any(|i| i.starts_with("profiles.a.minDomains:")), "{got:#?}");
        assert!(got.iter().any(|i| i.contains("above limit")), "{got:#?}");
    }

    #[test]
    fn unquoted_off_means_off() {
        let cfg = Config::from_yaml("profiles: {a: {zoneSpread: off, quorum: off, localData: off}}").unwrap();
        let a = cfg.profile("a").unwrap();
        assert_eq!((a.zone_spread, a.quorum, a.local_data), (Spread::Off, Quorum::Off, LocalData::Off));
        assert!(Config::from_yaml("profiles: {a: {qos: off}}").is_err(), "qos has no off");
    }

    #[test]
    fn yaml_syntax_errors_are_reported() {
        assert!(matches!(Config::from_yaml("profiles: [unclosed"), Err(Error::Yaml(_))));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
    }

    #[test]
    fn namespaces_are_exact_names_each_once() {
        let cfg = Config::from_yaml("profiles:\n  pg: {namespaces: [db, db-2]}\n  none: {namespaces: []}\n").unwrap();
        let names = |p: &str| cfg.profile(p).unwrap().namespaces.clone().map(|n| n.into_iter().collect::<Vec<_>>());
        assert_eq!(names("pg"), Some(vec!["db".to_owned(), "db-2".to_owned()]));
        assert_eq!(names("none"), Some(vec![]));
        assert_eq!(names(DEFAULT_PROFILE), None, "left out: every namespace");
        assert_eq!(
            issues("profiles:\n  pg: {namespaces: [db, Db, \"db*\", db, 3]}\n  q: {namespaces: db}\n"),
            [
                "profiles.pg.namespaces[4]: expected a string, got 3",
                "profiles.pg.namespaces[1]: \"Db\" is not a namespace name: 1 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
                "profiles.pg.namespaces[2]: \"db*\" is not a namespace name: 1 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
                "profiles.pg.namespaces[3]: \"db\" is listed twice",
                "profiles.q.namespaces: expected a list of strings, got \"db\"",
            ]
        );
    }

    #[test]
    fn label_rules() {
        assert!(check_label_key("cnpg.io/instanceRole").is_ok());
        assert!(check_label_key("role").is_ok());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_key("").is_err());
        assert!(is_label_value("pg-main"));
        assert!(!is_label_value("-pg"));
    }

    #[test]
    fn managed_resource_is_a_boolean_off_by_default() {
        assert!(!Config::from_yaml("{}").unwrap().managed_resource);
        assert!(Config::from_yaml("managedResource: true").unwrap().managed_resource);
        let Err(Error::Invalid(issues)) = Config::from_yaml("managedResource: yes please") else { panic!() };
        assert_eq!(issues[0].path, "managedResource");
    }
}
