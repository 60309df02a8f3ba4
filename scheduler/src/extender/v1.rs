//! Wire types of the scheduler extender protocol, as kube-scheduler sends and reads them.
//!
//! Mirrors `k8s.io/kube-scheduler/extender/v1/types.go`. The Go structs carry no `json` tags, so
//! the keys on the wire are the Go field names (`Pod`, `NodeNames`, `FailedNodes`, `Host`, ...).
//! Go's decoder matches keys case-insensitively, so every type here **accepts any ASCII casing**
//! of its keys on input (`nodeNames`, `nodenames`, ...) and always **emits PascalCase**. A JSON
//! `null` and an absent key mean the same (Go's zero value). Nested `Pod` and `Node` objects use
//! the ordinary Kubernetes camelCase JSON.
//!
//! With `nodeCacheCapable: false` the scheduler sends whole `v1.Node` objects; they are kept as
//! raw JSON ([`NodeList::items`]) so the passing ones can be echoed back byte for byte.

use std::{borrow::Cow, fmt};

use k8s_openapi::api::core::v1::Pod;
use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{self, IgnoredAny, MapAccess, Visitor},
    ser::SerializeMap,
};
use serde_json::value::RawValue;

/// Lowest score an extender may give (`MinExtenderPriority`).
pub const MIN_EXTENDER_PRIORITY: i64 = 0;
/// Highest score an extender may give (`MaxExtenderPriority`).
pub const MAX_EXTENDER_PRIORITY: i64 = 10;

/// Generates a `Deserialize` impl that matches keys case-insensitively (like Go's
/// `encoding/json`), ignores unknown keys, treats `null` as absent and reports missing required
/// keys by their PascalCase name.
macro_rules! go_deserialize {
    ($ty:ident, $expecting:literal, { $($field:ident = $key:literal),+ $(,)? } $(, required { $($req:ident = $reqkey:literal),+ })?) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct GoVisitor;
                impl<'de> Visitor<'de> for GoVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        let mut out = $ty::default();
                        while let Some(key) = map.next_key::<KeyName<'de>>()? {
                            let key = key.as_str();
                            $(
                                if key.eq_ignore_ascii_case($key) {
                                    out.$field = map.next_value_seed(NullAsDefault::new())?;
                                    continue;
                                }
                            )+
                            map.next_value::<IgnoredAny>()?;
                        }
                        $($(
                            if out.$req.is_none() {
                                return Err(de::Error::missing_field($reqkey));
                            }
                        )+)?
                        Ok(out)
                    }
                }
                deserializer.deserialize_map(GoVisitor)
            }
        }
    };
}

/// A map key, borrowed from the input when possible.
struct KeyName<'de>(Cow<'de, str>);

impl KeyName<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(KeyName(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Deserializes `T`, reading a JSON `null` as `T::default()` (Go decodes `null` into the zero
/// value).
struct NullAsDefault<T>(std::marker::PhantomData<T>);

impl<T> NullAsDefault<T> {
    fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<'de, T: Deserialize<'de> + Default> de::DeserializeSeed<'de> for NullAsDefault<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
    }
}

fn null_as_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// === NodeList ===

/// A `v1.NodeList` whose items are kept as the raw JSON received.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeList {
    /// `apiVersion`, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// `kind`, if sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// List metadata, verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<RawValue>>,
    /// The nodes, verbatim.
    #[serde(default, deserialize_with = "null_as_default")]
    pub items: Vec<Box<RawValue>>,
}

impl Clone for NodeList {
    fn clone(&self) -> Self {
        Self {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            metadata: self.metadata.as_ref().map(|m| m.to_owned()),
            items: self.items.iter().map(|i| i.to_owned()).collect(),
        }
    }
}

impl NodeList {
    /// A list holding `items`, with no metadata.
    #[must_use]
    pub fn from_items(items: Vec<Box<RawValue>>) -> Self {
        Self { items, ..Self::default() }
    }
}

// === ExtenderArgs ===

/// Arguments of `filter` and `prioritize` (`ExtenderArgs`).
#[derive(Debug, Default, Serialize)]
pub struct ExtenderArgs {
    /// The pod being scheduled.
    #[serde(rename = "Pod")]
    pub pod: Option<Pod>,
    /// Candidate nodes as objects (`nodeCacheCapable: false`), else `None`.
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList>,
    /// Candidate node names (`nodeCacheCapable: true`), else `None`.
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<String>>,
}

go_deserialize!(ExtenderArgs, "ExtenderArgs {Pod, Nodes, NodeNames}", {
    pod = "Pod", nodes = "Nodes", node_names = "NodeNames",
}, required { pod = "Pod" });

/// A candidate list kube-scheduler would never send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CandidateError {
    /// An empty entry in `NodeNames`.
    #[error("NodeNames[{0}] is empty; every candidate node needs a name")]
    EmptyName(usize),
    /// A `Nodes` item that is not an object with a non-empty `metadata.name`.
    #[error("Nodes.items[{0}] has no name (metadata.name missing, empty or not a string)")]
    NamelessNode(usize),
}

impl ExtenderArgs {
    /// Makes the candidates a set, as kube-scheduler sends them: a node named twice is kept
    /// once (its first occurrence, order preserved), so a reply never holds the same key twice
    /// in `FailedNodes` or two scores for one host.
    ///
    /// # Errors
    /// A candidate without a name: there is nothing to answer about it.
    pub(crate) fn into_candidates(mut self) -> Result<Candidates, CandidateError> {
        self.dedupe_candidates()?;
        Ok(Candidates(self))
    }

    fn dedupe_candidates(&mut self) -> Result<(), CandidateError> {
        if let Some(names) = &mut self.node_names {
            if let Some(i) = names.iter().position(String::is_empty) {
                return Err(CandidateError::EmptyName(i));
            }
            let keep = first_occurrences(names.iter().map(String::as_str));
            retain_marked(names, &keep);
        }
        if let Some(list) = &mut self.nodes {
            let mut names = Vec::with_capacity(list.items.len());
            for (i, raw) in list.items.iter().enumerate() {
                match node_name(raw) {
                    Some(name) if !name.is_empty() => names.push(name),
                    _ => return Err(CandidateError::NamelessNode(i)),
                }
            }
            let keep = first_occurrences(names.iter().map(|n| &**n));
            retain_marked(&mut list.items, &keep);
        }
        Ok(())
    }
}

/// Extender arguments whose candidates are already a set (see
/// [`ExtenderArgs::into_candidates`]): the verbs take these, so the set is made once per request
/// whether the call came through the HTTP edge or directly.
pub(crate) struct Candidates(ExtenderArgs);

impl Candidates {
    /// The arguments, candidates deduplicated.
    pub(crate) fn into_args(self) -> ExtenderArgs {
        self.0
    }
}

/// For each name, whether it is the first with that name.
fn first_occurrences<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Vec<bool> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.map(|n| seen.insert(n)).collect()
}

/// Keeps the items marked `true` (`keep` has one mark per item).
fn retain_marked<T>(items: &mut Vec<T>, keep: &[bool]) {
    let mut marks = keep.iter();
    items.retain(|_| marks.next().copied().unwrap_or(true));
}

/// The `metadata.name` of a raw node object, unescaped when it holds JSON escapes.
fn node_name(raw: &RawValue) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow)]
        name: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct Obj<'a> {
        #[serde(borrow)]
        metadata: Option<Meta<'a>>,
    }
    serde_json::from_str::<Obj<'_>>(raw.get()).ok()?.metadata?.name
}

// === ExtenderFilterResult ===

/// Node name → reason, kept in input order and serialised as a JSON object (`FailedNodesMap`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FailedNodesMap(pub Vec<(String, Cow<'static, str>)>);

impl FailedNodesMap {
    /// The reason given for `node`, if any.
    #[must_use]
    pub fn get(&self, node: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == node).map(|(_, r)| r.as_ref())
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for FailedNodesMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for FailedNodesMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = FailedNodesMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of node name to reason")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FailedNodesMap, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.retain(|(n, _): &(String, Cow<'static, str>)| *n != k);
                    out.push((k, Cow::Owned(v)));
                }
                Ok(FailedNodesMap(out))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// Reply to `filter` (`ExtenderFilterResult`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExtenderFilterResult {
    /// Passing nodes as objects (`nodeCacheCapable: false`).
    #[serde(rename = "Nodes")]
    pub nodes: Option<NodeList>,
    /// Passing node names (`nodeCacheCapable: true`).
    #[serde(rename = "NodeNames")]
    pub node_names: Option<Vec<String>>,
    /// Refused nodes that preemption might help.
    #[serde(rename = "FailedNodes")]
    pub failed_nodes: FailedNodesMap,
    /// Refused nodes that preemption cannot help.
    #[serde(rename = "FailedAndUnresolvableNodes")]
    pub failed_and_unresolvable_nodes: FailedNodesMap,
    /// A non-empty error fails the scheduling attempt.
    #[serde(rename = "Error")]
    pub error: String,
}

go_deserialize!(ExtenderFilterResult, "ExtenderFilterResult", {
    nodes = "Nodes", node_names = "NodeNames", failed_nodes = "FailedNodes",
    failed_and_unresolvable_nodes = "FailedAndUnresolvableNodes", error = "Error",
});

impl ExtenderFilterResult {
    /// A result carrying only an error.
    #[must_use]
    pub fn error(message: impl Into<String>) -> Self {
        Self { error: message.into(), ..Self::default() }
    }

    /// Names of the passing nodes, whichever form they were returned in.
    #[must_use]
    pub fn passing_names(&self) -> Vec<String> {
        if let Some(names) = &self.node_names {
            return names.clone();
        }
        self.nodes
            .as_ref()
            .map(|l| l.items.iter().filter_map(|raw| raw_node_name(raw).map(str::to_owned)).collect::<Vec<_>>())
            .unwrap_or_default()
    }
}

/// The `metadata.name` of a raw node object, if it has one.
pub(crate) fn raw_node_name(raw: &RawValue) -> Option<&str> {
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow)]
        name: Option<&'a str>,
    }
    #[derive(Deserialize)]
    struct Obj<'a> {
        #[serde(borrow)]
        metadata: Option<Meta<'a>>,
    }
    serde_json::from_str::<Obj<'_>>(raw.get()).ok()?.metadata?.name
}

// === Prioritize ===

/// One node's score (`HostPriority`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct HostPriority {
    /// Node name.
    #[serde(rename = "Host")]
    pub host: String,
    /// Score, 0..=10.
    #[serde(rename = "Score")]
    pub score: i64,
}

go_deserialize!(HostPriority, "HostPriority {Host, Score}", { host = "Host", score = "Score" });

/// Reply to `prioritize`: a bare JSON array (`HostPriorityList`).
pub type HostPriorityList = Vec<HostPriority>;

// === Preempt ===

/// Victims on one node, as full pods (`Victims`, `nodeCacheCapable: false`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Victims {
    /// Pods to evict.
    #[serde(rename = "Pods")]
    pub pods: Vec<Pod>,
    /// PodDisruptionBudget violations the eviction would cause.
    #[serde(rename = "NumPDBViolations")]
    pub num_pdb_violations: i64,
}

go_deserialize!(Victims, "Victims {Pods, NumPDBViolations}", { pods = "Pods", num_pdb_violations = "NumPDBViolations" });

/// A victim by UID (`MetaPod`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MetaPod {
    /// Pod UID.
    #[serde(rename = "UID")]
    pub uid: String,
}

go_deserialize!(MetaPod, "MetaPod {UID}", { uid = "UID" });

/// Victims on one node, by UID (`MetaVictims`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct MetaVictims {
    /// Pods to evict.
    #[serde(rename = "Pods")]
    pub pods: Vec<MetaPod>,
    /// PodDisruptionBudget violations the eviction would cause.
    #[serde(rename = "NumPDBViolations")]
    pub num_pdb_violations: i64,
}

go_deserialize!(MetaVictims, "MetaVictims {Pods, NumPDBViolations}", {
    pods = "Pods", num_pdb_violations = "NumPDBViolations",
});

/// Arguments of `preempt` (`ExtenderPreemptionArgs`).
#[derive(Debug, Default, Serialize)]
pub struct ExtenderPreemptionArgs {
    /// The preemptor.
    #[serde(rename = "Pod")]
    pub pod: Option<Pod>,
    /// Candidates with full victims (`nodeCacheCapable: false`).
    #[serde(rename = "NodeNameToVictims")]
    pub node_name_to_victims: Option<std::collections::BTreeMap<String, Victims>>,
    /// Candidates with victims by UID (`nodeCacheCapable: true`).
    #[serde(rename = "NodeNameToMetaVictims")]
    pub node_name_to_meta_victims: Option<std::collections::BTreeMap<String, MetaVictims>>,
}

go_deserialize!(ExtenderPreemptionArgs, "ExtenderPreemptionArgs {Pod, NodeNameToVictims, NodeNameToMetaVictims}", {
    pod = "Pod", node_name_to_victims = "NodeNameToVictims", node_name_to_meta_victims = "NodeNameToMetaVictims",
}, required { pod = "Pod" });

/// Reply to `preempt` (`ExtenderPreemptionResult`): always victims by UID.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ExtenderPreemptionResult {
    /// The candidate nodes that remain, with their victims.
    #[serde(rename = "NodeNameToMetaVictims")]
    pub node_name_to_meta_victims: std::collections::BTreeMap<String, MetaVictims>,
}

go_deserialize!(ExtenderPreemptionResult, "ExtenderPreemptionResult {NodeNameToMetaVictims}", {
    node_name_to_meta_victims = "NodeNameToMetaVictims",
});

// === Bind ===

/// Arguments of `bind` (`ExtenderBindingArgs`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ExtenderBindingArgs {
    /// Pod name.
    #[serde(rename = "PodName")]
    pub pod_name: String,
    /// Pod namespace.
    #[serde(rename = "PodNamespace")]
    pub pod_namespace: String,
    /// Pod UID.
    #[serde(rename = "PodUID")]
    pub pod_uid: String,
    /// Target node.
    #[serde(rename = "Node")]
    pub node: String,
}

go_deserialize!(ExtenderBindingArgs, "ExtenderBindingArgs {PodName, PodNamespace, PodUID, Node}", {
    pod_name = "PodName", pod_namespace = "PodNamespace", pod_uid = "PodUID", node = "Node",
});

/// Reply to `bind` (`ExtenderBindingResult`).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ExtenderBindingResult {
    /// Empty on success.
    #[serde(rename = "Error")]
    pub error: String,
}

go_deserialize!(ExtenderBindingResult, "ExtenderBindingResult {Error}", { error = "Error" });

/// Clamps a score into `MIN_EXTENDER_PRIORITY..=MAX_EXTENDER_PRIORITY`.
#[must_use]
pub fn clamp_score(score: i64) -> i64 {
    score.clamp(MIN_EXTENDER_PRIORITY, MAX_EXTENDER_PRIORITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_accept_any_casing_and_null() {
        let a: ExtenderArgs =
            serde_json::from_str(r#"{"pod":{"metadata":{"name":"p"}},"NODES":null,"nodeNames":["a","b"],"X":1}"#)
                .unwrap();
        assert_eq!(a.pod.unwrap().metadata.name.as_deref(), Some("p"));
        assert!(a.nodes.is_none());
        assert_eq!(a.node_names.unwrap(), ["a", "b"]);
    }

    #[test]
    fn missing_pod_is_a_precise_error() {
        let err = serde_json::from_str::<ExtenderArgs>(r#"{"NodeNames":["a"]}"#).unwrap_err().to_string();
        assert!(err.contains("missing field `Pod`"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
    }

    #[test]
    fn filter_result_is_pascal_case() {
        let r = ExtenderFilterResult {
            node_names: Some(vec!["a".into()]),
            failed_nodes: FailedNodesMap(vec![("b".into(), Cow::Borrowed("why"))]),
            ..ExtenderFilterResult::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Nodes":null,"NodeNames":["a"],"FailedNodes":{"b":"why"},
                               "FailedAndUnresolvableNodes":{},"Error":""})
        );
    }

    #[test]
    fn raw_nodes_round_trip_verbatim() {
        let text = r#"{"Pod":{},"Nodes":{"metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"n1"},"status":{"x":[1, 2]}}]}}"#;
        let a: ExtenderArgs = serde_json::from_str(text).unwrap();
        let nodes = a.nodes.unwrap();
        assert_eq!(nodes.items[0].get(), r#"{"metadata":{"name":"n1"},"status":{"x":[1, 2]}}"#);
        let out = serde_json::to_string(&ExtenderFilterResult { nodes: Some(nodes), ..Default::default() }).unwrap();
        assert!(out.contains(r#""items":[{"metadata":{"name":"n1"},"status":{"x":[1, 2]}}]"#), "{out}");
    }
}
