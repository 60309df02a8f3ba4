//! The managed resource: with `managedResource: true` in the config, opted-in pods request
//! [`MANAGED_RESOURCE`] so that a kube-scheduler whose extender stanza lists it in
//! `managedResources` sends them, and only them, to the extender.
//!
//! kube-scheduler's `HTTPExtender.IsInterested` asks whether any container or init container
//! names a managed resource in its requests or limits, so one container is enough: the first
//! one gets request = limit = 1 (extended resources must be whole numbers and requests must
//! equal limits). A pod that already names the resource anywhere is left as it is, which keeps
//! the rule idempotent.

use serde_json::{Map, Value};
use stowage_policy::config::MANAGED_RESOURCE;

use super::{lookup, object_entry};

/// Adds [`MANAGED_RESOURCE`] to the first container of `spec` unless some container or init
/// container already requests or limits it, or there is no container.
pub(super) fn add(spec: &mut Map<String, Value>) {
    let names_it = |c: &Value| {
        c.as_object().is_some_and(|c| {
            ["requests", "limits"].iter().any(|f| {
                lookup(c, &["resources", f])
                    .and_then(Value::as_object)
                    .is_some_and(|m| m.contains_key(MANAGED_RESOURCE))
            })
        })
    };
    let already = ["containers", "initContainers"]
        .iter()
        .any(|list| spec.get(*list).and_then(Value::as_array).is_some_and(|items| items.iter().any(names_it)));
    if already {
        return;
    }
    let Some(Value::Object(first)) =
        spec.get_mut("containers").and_then(Value::as_array_mut).and_then(|c| c.first_mut())
    else {
        return;
    };
    let resources = object_entry(first, "resources");
    for field in ["requests", "limits"] {
        object_entry(resources, field).insert(MANAGED_RESOURCE.to_owned(), Value::String("1".to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: Value) -> Map<String, Value> {
        let Value::Object(m) = v else { unreachable!() };
        m
    }

    #[test]
    fn the_first_container_gets_request_and_limit_one() {
        let mut s =
            spec(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}, {"name": "b"}]}));
        add(&mut s);
        assert_eq!(
            Value::Object(s),
            json!({"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "1", "stowage.io/managed": "1"}, "limits": {"stowage.io/managed": "1"}}},
                {"name": "b"}]})
        );
    }

    #[test]
    fn a_pod_naming_it_anywhere_is_left_alone() {
        for pod in [
            json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"limits": {"stowage.io/managed": "2"}}}]}),
            json!({"containers": [{"name": "a"}], "initContainers": [{"name": "i", "resources": {"requests": {"stowage.io/managed": "1"}}}]}),
            json!({"containers": []}),
            json!({"containers": ["not a container"]}),
            json!({}),
        ] {
            let mut s = spec(pod.clone());
            add(&mut s);
            assert_eq!(Value::Object(s), pod);
        }
    }

    #[test]
    fn null_resources_are_replaced() {
        let mut s = spec(json!({"containers": [{"name": "a", "resources": {"requests": null}}]}));
        add(&mut s);
        assert_eq!(s["containers"][0]["resources"]["requests"], json!({"stowage.io/managed": "1"}));
        let before = s.clone();
        add(&mut s);
        assert_eq!(s, before);
    }
}
