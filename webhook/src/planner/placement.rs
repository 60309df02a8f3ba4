//! Placement rules: the group label, node anti-affinity, zone spread, the dedicated pool,
//! `priorityClassName` and `schedulerName`.
//!
//! Lists are only appended to, never replaced, and a rule already expressed by an equivalent
//! entry (same topology key, same selector) is not repeated.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use stowage_policy::{
    Policy, Spread,
    annotations::GROUP_LABEL,
    config::{Pool, PoolToleration, is_label_value},
    text,
};

use super::{Denial, Notes, array_at, array_entry, lookup, object_entry};

const REQUIRED: &str = "requiredDuringSchedulingIgnoredDuringExecution";
const PREFERRED: &str = "preferredDuringSchedulingIgnoredDuringExecution";
const DEFAULT_SCHEDULER: &str = "default-scheduler";
const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
/// Weight of the preferred anti-affinity term (the maximum).
const PREFERRED_WEIGHT: u32 = 100;

/// Warning for pods whose group could not be derived.
pub(super) const NO_GROUP: &str = "no replica group, so no anti-affinity or spread: set stowage.io/group, use a StatefulSet or app.kubernetes.io/instance";

/// Stamps `stowage.io/group=<group>` on the pod; returns the group name, if the pod has one.
pub(super) fn group_label(
    root: &mut Map<String, Value>,
    policy: &Policy<'_>,
    notes: &mut Notes,
) -> Result<Option<String>, Denial> {
    let Some(group) = &policy.group else {
        notes.push(NO_GROUP);
        return Ok(None);
    };
    let name = &group.name;
    if name.is_empty() || !is_label_value(name) {
        return Err(Denial::GroupName(text::echo(name)));
    }
    match lookup(root, &["metadata", "labels", GROUP_LABEL]) {
        Some(Value::String(existing)) if existing == name => {}
        Some(existing) => {
            let existing = existing.as_str().map_or_else(|| text::echo(&existing.to_string()), text::echo);
            return Err(Denial::GroupConflict { existing, wanted: name.clone() });
        }
        None => {
            object_entry(object_entry(root, "metadata"), "labels")
                .insert(GROUP_LABEL.to_owned(), Value::String(name.clone()));
            notes.push(format!("added label {GROUP_LABEL}={name}"));
        }
    }
    Ok(Some(name.clone()))
}

/// Pod anti-affinity between members of the group on `topology` (the hostname label).
pub(super) fn node_spread(spec: &mut Map<String, Value>, group: &str, mode: Spread, topology: &str, notes: &mut Notes) {
    if mode == Spread::Off {
        return;
    }
    let has_required =
        array_at(spec, &["affinity", "podAntiAffinity", REQUIRED]).iter().any(|t| is_group_term(t, group, topology));
    let term = json!({"labelSelector": group_selector(group), "topologyKey": topology});
    match mode {
        Spread::Required if !has_required => {
            array_entry(object_entry(object_entry(spec, "affinity"), "podAntiAffinity"), REQUIRED).push(term);
            notes.push(format!("added required pod anti-affinity on {topology}"));
        }
        Spread::Preferred if !has_required => {
            let has_preferred = array_at(spec, &["affinity", "podAntiAffinity", PREFERRED])
                .iter()
                .any(|w| w.get("podAffinityTerm").is_some_and(|t| is_group_term(t, group, topology)));
            if !has_preferred {
                array_entry(object_entry(object_entry(spec, "affinity"), "podAntiAffinity"), PREFERRED)
                    .push(json!({"weight": PREFERRED_WEIGHT, "podAffinityTerm": term}));
                notes.push(format!("added preferred pod anti-affinity on {topology}"));
            }
        }
        _ => {}
    }
}

/// A topology spread constraint over zones for the group. Kubernetes rejects two constraints
/// with the same (topologyKey, whenUnsatisfiable), so an existing one is kept as it is.
pub(super) fn zone_spread(
    spec: &mut Map<String, Value>,
    group: &str,
    mode: Spread,
    topology: &str,
    min_domains: u32,
    notes: &mut Notes,
) {
    let (when, min_domains) = match mode {
        Spread::Required => (DO_NOT_SCHEDULE, Some(min_domains)),
        Spread::Preferred => (SCHEDULE_ANYWAY, None),
        Spread::Off => return,
    };
    let existing = array_at(spec, &["topologySpreadConstraints"]).iter().find(|c| {
        c.get("topologyKey").and_then(Value::as_str) == Some(topology)
            && c.get("whenUnsatisfiable").and_then(Value::as_str).unwrap_or(DO_NOT_SCHEDULE) == when
    });
    if let Some(existing) = existing {
        let same = existing.get("maxSkew").and_then(Value::as_i64) == Some(1)
            && existing.get("labelSelector").is_some_and(|s| selects_group(s, group))
            && existing.get("minDomains").and_then(Value::as_u64) == min_domains.map(u64::from);
        if !same {
            notes.push(format!("kept the pod's {when} spread constraint on {topology}; profile zone spread not added"));
        }
        return;
    }
    let mut constraint = Map::new();
    constraint.insert("maxSkew".to_owned(), json!(1));
    constraint.insert("topologyKey".to_owned(), json!(topology));
    constraint.insert("whenUnsatisfiable".to_owned(), json!(when));
    constraint.insert("labelSelector".to_owned(), group_selector(group));
    if let Some(n) = min_domains {
        constraint.insert("minDomains".to_owned(), json!(n));
    }
    array_entry(spec, "topologySpreadConstraints").push(Value::Object(constraint));
    notes.push(match min_domains {
        Some(n) => format!("added zone spread on {topology} ({when}, minDomains {n})"),
        None => format!("added zone spread on {topology} ({when})"),
    });
}

/// The pool's tolerations, and required node affinity for its labels. `nodeSelectorTerms` are
/// ORed, so the pool's expressions are ANDed into every existing term.
pub(super) fn pool(spec: &mut Map<String, Value>, name: &str, pool: &Pool, notes: &mut Notes) {
    let mut tolerations = 0;
    for wanted in &pool.tolerations {
        if !array_at(spec, &["tolerations"]).iter().any(|t| same_toleration(t, wanted)) {
            array_entry(spec, "tolerations").push(toleration(wanted));
            tolerations += 1;
        }
    }

    let mut affinity = false;
    if !pool.node_selector.is_empty() {
        let has_terms = !array_at(spec, &["affinity", "nodeAffinity", REQUIRED, "nodeSelectorTerms"]).is_empty();
        let required = object_entry(object_entry(object_entry(spec, "affinity"), "nodeAffinity"), REQUIRED);
        let terms = array_entry(required, "nodeSelectorTerms");
        if has_terms {
            for term in terms {
                let Value::Object(term) = term else { continue };
                for (key, value) in &pool.node_selector {
                    let present = term
                        .get("matchExpressions")
                        .and_then(Value::as_array)
                        .is_some_and(|exprs| exprs.iter().any(|e| is_in_expression(e, key, value)));
                    if !present {
                        array_entry(term, "matchExpressions").push(in_expression(key, value));
                        affinity = true;
                    }
                }
            }
        } else {
            let exprs: Vec<Value> = pool.node_selector.iter().map(|(k, v)| in_expression(k, v)).collect();
            terms.push(json!({"matchExpressions": exprs}));
            affinity = true;
        }
    }

    let mut parts = Vec::new();
    if tolerations > 0 {
        parts.push(format!("{tolerations} toleration(s)"));
    }
    if affinity {
        let labels: Vec<String> = pool.node_selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("node affinity {}", labels.join(",")));
    }
    if !parts.is_empty() {
        notes.push(format!("pool {name}: added {}", parts.join(" and ")));
    }
}

/// Sets the profile's `priorityClassName` when the pod has none.
pub(super) fn priority_class(spec: &mut Map<String, Value>, wanted: Option<&str>, notes: &mut Notes) {
    let Some(wanted) = wanted else { return };
    match spec.get("priorityClassName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(current) if current == wanted => {}
        Some(current) => notes.push(format!("kept priorityClassName {current}; profile's {wanted} not set")),
        None => {
            spec.insert("priorityClassName".to_owned(), json!(wanted));
            // The apiserver's Priority admission plugin runs before webhooks and has already
            // resolved the pod's (absent) class into `spec.priority`, and `spec.preemptionPolicy`
            // when the class has one. After a webhook mutation the in-tree plugins run again, and
            // Priority then rejects a pod whose `spec.priority` disagrees with the new class
            // ("the integer value of priority must not be provided in pod spec"). So both are
            // removed, to be filled in again from the class we set. `spec.priority` being present
            // is what says the plugin ran, and so that `preemptionPolicy` is its default too.
            if spec.remove("priority").is_some() {
                spec.remove("preemptionPolicy");
                notes.push(format!("set priorityClassName {wanted} (cleared the defaulted spec.priority)"));
            } else {
                notes.push(format!("set priorityClassName {wanted}"));
            }
        }
    }
}

/// Points the pod at stowage's scheduler when it would use the default one.
pub(super) fn scheduler_name(spec: &mut Map<String, Value>, wanted: Option<&str>, notes: &mut Notes) {
    let Some(wanted) = wanted else { return };
    match spec.get("schedulerName").and_then(Value::as_str) {
        Some(current) if current == wanted => {}
        None | Some("" | DEFAULT_SCHEDULER) => {
            spec.insert("schedulerName".to_owned(), json!(wanted));
            notes.push(format!("set schedulerName {wanted}"));
        }
        Some(current) => {
            notes.push(format!("kept schedulerName {current}; scheduler {wanted} will not place this pod"))
        }
    }
}

// === selectors and list entries ===

fn group_selector(group: &str) -> Value {
    json!({"matchLabels": {GROUP_LABEL: group}})
}

/// A label selector as a set of (key, operator, sorted values) requirements.
type Requirements = BTreeSet<(String, String, Vec<String>)>;

fn requirements(selector: &Value) -> Option<Requirements> {
    let mut set = Requirements::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (key, value) in labels {
            set.insert((key.clone(), "In".to_owned(), vec![value.as_str()?.to_owned()]));
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key")?.as_str()?.to_owned();
            let operator = e.get("operator")?.as_str()?.to_owned();
            let mut values: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            values.sort();
            values.dedup();
            set.insert((key, operator, values));
        }
    }
    Some(set)
}

/// True when `selector` selects exactly the group's members (in whatever spelling).
fn selects_group(selector: &Value, group: &str) -> bool {
    let wanted: Requirements = [(GROUP_LABEL.to_owned(), "In".to_owned(), vec![group.to_owned()])].into();
    requirements(selector).is_some_and(|r| r == wanted)
}

fn is_group_term(term: &Value, group: &str, topology: &str) -> bool {
    term.get("topologyKey").and_then(Value::as_str) == Some(topology)
        && term.get("labelSelector").is_some_and(|s| selects_group(s, group))
}

fn same_toleration(t: &Value, wanted: &PoolToleration) -> bool {
    let text = |key: &str| t.get(key).and_then(Value::as_str).unwrap_or_default();
    let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
    text("key") == wanted.key
        && operator == wanted.operator
        && text("value") == wanted.value.as_deref().unwrap_or_default()
        && text("effect") == wanted.effect.as_deref().unwrap_or_default()
}

fn toleration(t: &PoolToleration) -> Value {
    let mut m = Map::new();
    m.insert("key".to_owned(), json!(t.key));
    m.insert("operator".to_owned(), json!(t.operator));
    if let Some(value) = t.value.as_deref().filter(|v| !v.is_empty()) {
        m.insert("value".to_owned(), json!(value));
    }
    if let Some(effect) = &t.effect {
        m.insert("effect".to_owned(), json!(effect));
    }
    Value::Object(m)
}

fn in_expression(key: &str, value: &str) -> Value {
    json!({"key": key, "operator": "In", "values": [value]})
}

fn is_in_expression(e: &Value, key: &str, value: &str) -> bool {
    e.get("key").and_then(Value::as_str) == Some(key)
        && e.get("operator").and_then(Value::as_str) == Some("In")
        && e.get("values").and_then(Value::as_array).is_some_and(|vs| vs.len() == 1 && vs[0].as_str() == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_compare_by_meaning() {
        assert!(selects_group(&json!({"matchLabels": {GROUP_LABEL: "g"}}), "g"));
        assert!(selects_group(
            &json!({"matchExpressions": [{"key": GROUP_LABEL, "operator": "In", "values": ["g", "g"]}]}),
            "g"
        ));
        assert!(!selects_group(&json!({"matchLabels": {GROUP_LABEL: "g", "x": "y"}}), "g"));
        assert!(!selects_group(&json!({"matchLabels": {GROUP_LABEL: "h"}}), "g"));
        assert!(!selects_group(&json!({}), "g"));
        assert!(!selects_group(&json!("junk"), "g"));
    }

    #[test]
    fn warning_texts_stay_short() {
        assert!(NO_GROUP.len() <= 120, "{}", NO_GROUP.len());
    }
}
