//! The mutation planner: a pod (raw JSON) and its policy in, a JSON Patch and warnings out.
//!
//! The planner edits a clone of the pod exactly as received and diffs it against the original,
//! so fields this crate does not know about survive untouched and the patch creates missing
//! parents by construction (`json_patch::diff` adds the first absent object whole, escaping
//! keys per RFC 6901). Every rule only adds what is absent, appends to lists, or raises values,
//! so running the planner on its own output yields no operations.
//!
//! Steps, in order: the group label (on the pod's metadata), container resources (profile
//! sizes, then Guaranteed QoS, then integer CPU), the managed resource (when the config asks for
//! it), node anti-affinity, zone spread, the dedicated pool, `priorityClassName`,
//! `schedulerName`.

mod managed;
mod placement;
mod resources;

use serde_json::{Map, Value};
use stowage_policy::{Config, Policy, group};

/// The outcome of planning: what to change and what to tell the user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Operations turning the pod as received into the pod as wanted; empty when nothing changes.
    pub patch: json_patch::Patch,
    /// Short messages on what was injected or skipped, and why.
    pub warnings: Vec<String>,
}

/// Why a pod cannot be admitted as it is. Text taken from the pod is cut to
/// [`stowage_policy::text::MAX_ECHO`] bytes, so a denial stays short whatever the pod carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The pod carries a group label naming another group than its policy.
    #[error(
        "label stowage.io/group is {existing:?} but the pod's group is {wanted:?}; \
         remove the label or set the annotation stowage.io/group to {existing:?}"
    )]
    GroupConflict {
        /// The label's value.
        existing: String,
        /// The group derived from the policy.
        wanted: String,
    },
    /// The derived group name cannot be a label value.
    #[error(
        "group name {0:?} is not a valid label value (at most 63 characters of [A-Za-z0-9_.-]); \
         set the annotation stowage.io/group"
    )]
    GroupName(String),
    /// A container quantity the planner must compare is not a Kubernetes quantity.
    #[error("container {container:?}: resources.{field}.{resource} {value} is not a valid quantity")]
    Quantity {
        /// Container name.
        container: String,
        /// `requests` or `limits`.
        field: &'static str,
        /// Resource name.
        resource: String,
        /// The offending value, quoted (a string) or as JSON (anything else), cut short.
        value: String,
    },
    /// Integer CPU is on but a cpu value has no whole number of cores within the quantity range
    /// (above about 9.2 peta-cores and not whole).
    #[error(
        "container {container:?}: cpu {field} {value} cannot be rounded up to whole cores for integerCPU; \
         the largest whole value is {max} cores"
    )]
    CpuRange {
        /// Container name.
        container: String,
        /// `request` or `limit`.
        field: &'static str,
        /// The value as written.
        value: String,
        /// The largest whole number of cores a quantity holds.
        max: i64,
    },
    /// The pod is not shaped like a pod.
    #[error("the pod is malformed: {0}")]
    Malformed(String),
}

impl Denial {
    /// The status code of the admission denial.
    #[must_use]
    pub const fn code(&self) -> u16 {
        400
    }
}

/// Plans the mutation of one opted-in pod.
///
/// `members` is the voting-member count of the owning StatefulSet, resolved by the caller; the
/// policy's `stowage.io/members` wins over it. It only shapes `minDomains` of required zone spread.
///
/// # Errors
/// [`Denial`] when the pod contradicts its policy (a foreign group label) or is malformed.
pub fn plan(pod: &Value, policy: &Policy<'_>, cfg: &Config, members: Option<u32>) -> Result<Plan, Denial> {
    let Value::Object(root) = pod else {
        return Err(Denial::Malformed("the pod is not a JSON object".to_owned()));
    };
    if !root.get("spec").is_some_and(Value::is_object) {
        return Err(Denial::Malformed("spec is missing or not an object".to_owned()));
    }
    let before = working_copy(root);
    let mut after = before.clone();
    let Value::Object(work) = &mut after else { unreachable!("a working copy is an object") };
    let mut notes = Notes::default();
    apply_rules(work, policy, cfg, members, &mut notes)?;
    Ok(Plan { patch: json_patch::diff(&before, &after), warnings: notes.finish() })
}

/// Keys of `spec` the rules read or write.
const SPEC_KEYS: [&str; 7] = [
    "affinity",
    "topologySpreadConstraints",
    "tolerations",
    "priorityClassName",
    "priority",
    "preemptionPolicy",
    "schedulerName",
];
/// Keys of a container (or init container) the rules read or write.
const CONTAINER_KEYS: [&str; 2] = ["name", "resources"];

/// The parts of a pod the rules read or write: `metadata.labels`; in `spec`, the [`SPEC_KEYS`]
/// and the [`CONTAINER_KEYS`] of every container and init container, which keep their
/// positions. Planning on this copy instead of the whole pod keeps the clone and the diff
/// proportional to what can change, not to env vars, probes, volumes or status, and the
/// patch's paths are the pod's own. A rule that reads or writes another key must add it to
/// these lists; `planning_on_the_working_copy_gives_the_whole_pod_patch` checks the patch against
/// planning on the whole pod.
fn working_copy(pod: &Map<String, Value>) -> Value {
    let mut copy = Map::new();
    match pod.get("metadata") {
        Some(Value::Object(meta)) => {
            let labels = meta.get("labels").map(|l| ("labels".to_owned(), l.clone()));
            copy.insert("metadata".to_owned(), Value::Object(labels.into_iter().collect()));
        }
        Some(other) => {
            copy.insert("metadata".to_owned(), other.clone());
        }
        None => {}
    }
    let mut spec = Map::new();
    if let Some(Value::Object(full)) = pod.get("spec") {
        for key in SPEC_KEYS {
            if let Some(v) = full.get(key) {
                spec.insert(key.to_owned(), v.clone());
            }
        }
        for list in ["containers", "initContainers"] {
            let Some(items) = full.get(list) else { continue };
            let items = match items {
                Value::Array(items) => Value::Array(
                    items
                        .iter()
                        .map(|item| match item {
                            Value::Object(c) => Value::Object(
                                CONTAINER_KEYS
                                    .iter()
                                    .filter_map(|k| Some(((*k).to_owned(), c.get(*k)?.clone())))
                                    .collect(),
                            ),
                            other => other.clone(),
                        })
                        .collect(),
                ),
                other => other.clone(),
            };
            spec.insert(list.to_owned(), items);
        }
    }
    copy.insert("spec".to_owned(), Value::Object(spec));
    Value::Object(copy)
}

/// Runs every rule on `root` (a whole pod, or its [`working_copy`]), in order.
fn apply_rules(
    root: &mut Map<String, Value>,
    policy: &Policy<'_>,
    cfg: &Config,
    members: Option<u32>,
    notes: &mut Notes,
) -> Result<(), Denial> {
    let group = placement::group_label(root, policy, notes)?;
    let Some(Value::Object(spec)) = root.get_mut("spec") else {
        return Err(Denial::Malformed("spec is missing or not an object".to_owned()));
    };
    resources::shape(spec, policy, notes)?;
    if cfg.managed_resource {
        managed::add(spec);
    }
    if let Some(group) = &group {
        placement::node_spread(spec, group, policy.node_spread, &cfg.hostname_label, notes);
        let declared = group::declared_members(policy.members, members).map(|(n, _)| n);
        let min_domains = group::min_domains(declared, policy.profile.min_domains);
        placement::zone_spread(spec, group, policy.zone_spread, &cfg.zone_label, min_domains, notes);
    }
    if let Some((name, pool)) = &policy.pool {
        placement::pool(spec, name, pool, notes);
    }
    placement::priority_class(spec, policy.profile.priority_class_name.as_deref(), notes);
    placement::scheduler_name(spec, cfg.scheduler_name.as_deref(), notes);
    Ok(())
}

/// Longest single warning sent; the apiserver may truncate beyond 256 characters.
const MAX_WARNING: usize = 200;
/// Budget for all warnings together; the apiserver ignores warnings past 4096 characters.
const MAX_WARNINGS_TOTAL: usize = 3000;

/// Collects warnings in order.
#[derive(Debug, Default)]
struct Notes(Vec<String>);

impl Notes {
    fn push(&mut self, message: impl Into<String>) {
        self.0.push(message.into());
    }

    /// The warnings, each shortened to [`MAX_WARNING`] and all within [`MAX_WARNINGS_TOTAL`].
    fn finish(self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.0.len());
        let mut total = 0;
        let count = self.0.len();
        for (i, mut w) in self.0.into_iter().enumerate() {
            truncate(&mut w, MAX_WARNING);
            if total + w.len() > MAX_WARNINGS_TOTAL {
                out.push(format!("{} more warning(s) omitted", count - i));
                break;
            }
            total += w.len();
            out.push(w);
        }
        out
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max.saturating_sub(3);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str("...");
}

// === JSON helpers ===

/// The object under `key`, created when absent and replacing `null` (or any non-object).
fn object_entry<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = parent.entry(key.to_owned()).or_insert(Value::Null);
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(map) => map,
        _ => unreachable!("the slot was just made an object"),
    }
}

/// The array under `key`, created when absent and replacing `null` (or any non-array).
fn array_entry<'a>(parent: &'a mut Map<String, Value>, key: &str) -> &'a mut Vec<Value> {
    let slot = parent.entry(key.to_owned()).or_insert(Value::Null);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => items,
        _ => unreachable!("the slot was just made an array"),
    }
}

/// Follows object keys from `map`; `None` when any step is absent or not an object.
fn lookup<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(map.get(*first)?, |v, key| v.as_object()?.get(*key))
}

/// The array at `path` under `map`, or an empty slice.
fn array_at<'a>(map: &'a Map<String, Value>, path: &[&str]) -> &'a [Value] {
    lookup(map, path).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde::Deserialize as _;
    use serde_json::json;

    /// The patch of planning on the whole pod, as the planner did before it planned on a
    /// working copy.
    fn plan_on_whole_pod(pod: &Value, policy: &Policy<'_>, cfg: &Config) -> Result<Plan, Denial> {
        let mut doc = pod.clone();
        let Value::Object(root) = &mut doc else { unreachable!() };
        let mut notes = Notes::default();
        apply_rules(root, policy, cfg, Some(3), &mut notes)?;
        Ok(Plan { patch: json_patch::diff(pod, &doc), warnings: notes.finish() })
    }

    #[test]
    fn planning_on_the_working_copy_gives_the_whole_pod_patch() {
        let cfg = Config::from_yaml(include_str!("../../examples/config.yaml")).unwrap();
        let fixture: Value =
            serde_json::from_str(include_str!("../tests/fixtures/statefulset-pod-create.json")).unwrap();
        let container = |name: &str, resources: Value| json!({"name": name, "image": "x", "env": [{"name": "A", "value": "b"}], "resources": resources});
        let mut pods = vec![fixture["request"]["object"].clone()];
        for profile in ["default", "postgres", "kafka"] {
            let meta = |labels: Value| {
                json!({"name": "p-0", "namespace": "db", "labels": labels,
                       "annotations": {"stowage.io/profile": profile, "stowage.io/group": "g"}})
            };
            pods.push(json!({"metadata": meta(json!({"app": "x"})), "spec": {"containers": [
                container("postgres", json!({"requests": {"cpu": "1500m"}})), container("side", Value::Null),
                json!("not a container")],
                "initContainers": [container("init", json!({"limits": {"memory": "1Gi"}}))],
                "volumes": [{"name": "v", "emptyDir": {}}], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "k", "operator": "In", "values": ["v"]}]}]}}},
                "tolerations": [{"key": "t", "operator": "Exists"}], "schedulerName": "default-scheduler",
                "priority": 0, "preemptionPolicy": "PreemptLowerPriority"},
                "status": {"phase": "Pending"}}));
            pods.push(json!({"metadata": meta(Value::Null), "spec": {"containers": [container("a", json!({}))],
                "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
                "priorityClassName": "other"}}));
            let mut bare = json!({"metadata": meta(json!({})), "spec": {"containers": []}});
            bare["metadata"].as_object_mut().unwrap().remove("labels");
            pods.push(bare);
        }
        for pod in &pods {
            let mut meta = ObjectMeta::deserialize(&pod["metadata"]).unwrap();
            meta.namespace.get_or_insert_with(|| "db".to_owned());
            let policy = stowage_policy::resolve(&meta, &cfg).unwrap().unwrap();
            let fast = plan(pod, &policy, &cfg, Some(3)).unwrap();
            let whole = plan_on_whole_pod(pod, &policy, &cfg).unwrap();
            assert!(!fast.patch.0.is_empty());
            assert_eq!(fast, whole, "{pod:#}");
        }
    }

    #[test]
    fn warnings_are_bounded() {
        let mut notes = Notes::default();
        notes.push("é".repeat(300));
        for _ in 0..100 {
            notes.push("x".repeat(100));
        }
        let out = notes.finish();
        assert!(out[0].len() <= MAX_WARNING && out[0].ends_with("..."));
        assert!(out.iter().map(String::len).sum::<usize>() < 4096);
        assert!(out.last().unwrap().ends_with("more warning(s) omitted"));
    }

    #[test]
    fn entries_replace_null_and_wrong_types() {
        let mut m: Map<String, Value> = serde_json::from_str(r#"{"a": null, "b": 3}"#).unwrap();
        object_entry(&mut m, "a").insert("x".into(), Value::Bool(true));
        array_entry(&mut m, "b").push(Value::Bool(true));
        array_entry(&mut m, "c");
        assert_eq!(Value::Object(m), serde_json::json!({"a": {"x": true}, "b": [true], "c": []}));
    }
}
