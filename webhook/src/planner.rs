//! The mutation planner: a pod (raw JSON) and its policy in, a JSON Patch and warnings out.
//!
//! The planner edits a clone of the pod exactly as received and diffs it against the original,
//! so fields this crate does not know about survive untouched and the patch creates missing
//! parents by construction (`json_patch::diff` adds the first absent object whole, escaping
//! keys per RFC 6901). Every rule only adds what is absent, appends to lists, or raises values,
//! so running the planner on its own output yields no operations.
//!
//! Steps, in order: container resources (profile sizes, then Guaranteed QoS, then integer CPU),
//! the group label, node anti-affinity, zone spread, the dedicated pool, `priorityClassName`,
//! `schedulerName`.

mod placement;
mod resources;

use serde_json::{Map, Value};
use stowage_policy::{Config, Policy};

/// The outcome of planning: what to change and what to tell the user.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Operations turning the pod as received into the pod as wanted; empty when nothing changes.
    pub patch: json_patch::Patch,
    /// Short messages on what was injected or skipped, and why.
    pub warnings: Vec<String>,
}

/// Why a pod cannot be admitted as it is.
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
        /// The offending value, as JSON.
        value: String,
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
    let mut doc = pod.clone();
    let Value::Object(root) = &mut doc else {
        return Err(Denial::Malformed("the pod is not a JSON object".to_owned()));
    };
    if !root.get("spec").is_some_and(Value::is_object) {
        return Err(Denial::Malformed("spec is missing or not an object".to_owned()));
    }
    let mut notes = Notes::default();

    let group = placement::group_label(root, policy, &mut notes)?;
    let Some(Value::Object(spec)) = root.get_mut("spec") else {
        return Err(Denial::Malformed("spec is missing or not an object".to_owned()));
    };
    resources::shape(spec, policy, &mut notes)?;
    if let Some(group) = &group {
        placement::node_spread(spec, group, policy.node_spread, &cfg.hostname_label, &mut notes);
        let members = policy.members.or(members);
        let min_domains = members.map_or(policy.profile.min_domains, |m| m.min(policy.profile.min_domains));
        placement::zone_spread(spec, group, policy.zone_spread, &cfg.zone_label, min_domains, &mut notes);
    }
    if let Some((name, pool)) = &policy.pool {
        placement::pool(spec, name, pool, &mut notes);
    }
    placement::priority_class(spec, policy.profile.priority_class_name.as_deref(), &mut notes);
    placement::scheduler_name(spec, cfg.scheduler_name.as_deref(), &mut notes);

    Ok(Plan { patch: json_patch::diff(pod, &doc), warnings: notes.finish() })
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
