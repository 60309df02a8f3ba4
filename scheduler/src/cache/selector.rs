//! Trimmed label maps and node/label selectors with the Kubernetes matching rules.
//!
//! - [`NodeSelector`]: `v1.NodeSelector` (terms ORed; each term's requirements ANDed; an empty
//!   term list matches nothing), operators `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`,
//!   and `matchFields` on `metadata.name`;
//! - [`LabelSelector`]: `metav1.LabelSelector` (`matchLabels` and `matchExpressions` ANDed; an
//!   empty selector matches everything).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelector as K8sNodeSelector, NodeSelectorRequirement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sLabelSelector;

use super::interner::Interner;

/// A label map, sorted by key, with interned keys and values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Arc<str>, Arc<str>)]>);

impl Labels {
    /// Builds a label map from key/value pairs (interning both).
    pub fn new<'a>(interner: &Interner, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut v: Vec<(Arc<str>, Arc<str>)> =
            pairs.into_iter().map(|(k, v)| (interner.intern(k), interner.intern(v))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Self(v.into_boxed_slice())
    }

    /// The value of `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok().map(|i| self.0[i].1.as_ref())
    }

    /// Every pair, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Number of labels.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The label's value is one of the values.
    In,
    /// The label is absent or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's integer value is greater than the single value.
    Gt,
    /// The label's integer value is less than the single value.
    Lt,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "In" => Self::In,
            "NotIn" => Self::NotIn,
            "Exists" => Self::Exists,
            "DoesNotExist" => Self::DoesNotExist,
            "Gt" => Self::Gt,
            "Lt" => Self::Lt,
            _ => return None,
        })
    }
}

/// One requirement on a label (or field) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// Label key.
    pub key: Arc<str>,
    /// Operator.
    pub op: Op,
    /// Values (for `In`/`NotIn`, one integer for `Gt`/`Lt`).
    pub values: Box<[Arc<str>]>,
}

impl Requirement {
    /// Evaluates the requirement against a value lookup.
    #[must_use]
    pub fn matches(&self, value: Option<&str>) -> bool {
        match self.op {
            Op::In => value.is_some_and(|v| self.values.iter().any(|x| x.as_ref() == v)),
            Op::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x.as_ref() == v)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::Gt | Op::Lt => {
                let (Some(v), [bound]) = (value, self.values.as_ref()) else { return false };
                let (Ok(v), Ok(bound)) = (v.parse::<i64>(), bound.parse::<i64>()) else { return false };
                if self.op == Op::Gt { v > bound } else { v < bound }
            }
        }
    }

    fn from_k8s(interner: &Interner, r: &NodeSelectorRequirement) -> Option<Self> {
        Some(Self {
            key: interner.intern(&r.key),
            op: Op::parse(&r.operator)?,
            values: r.values.iter().flatten().map(|v| interner.intern(v)).collect(),
        })
    }
}

/// One `NodeSelectorTerm`: label requirements and `metadata.name` field requirements, ANDed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Term {
    /// `matchExpressions`.
    pub exprs: Box<[Requirement]>,
    /// `matchFields` (only `metadata.name` is defined).
    pub fields: Box<[Requirement]>,
}

impl Term {
    fn matches(&self, name: &str, labels: &Labels) -> bool {
        // An empty term matches nothing (as in k8s.io/component-helpers nodeaffinity).
        if self.exprs.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.exprs.iter().all(|r| r.matches(labels.get(&r.key)))
            && self.fields.iter().all(|r| r.key.as_ref() == "metadata.name" && r.matches(Some(name)))
    }
}

/// A `v1.NodeSelector`: terms ORed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSelector {
    /// The terms.
    pub terms: Box<[Term]>,
}

impl NodeSelector {
    /// Converts a Kubernetes node selector. An unknown operator makes its term match nothing.
    pub fn from_k8s(interner: &Interner, s: &K8sNodeSelector) -> Self {
        let terms = s
            .node_selector_terms
            .iter()
            .map(|t| {
                let conv = |interner: &Interner, reqs: &Option<Vec<NodeSelectorRequirement>>| {
                    reqs.iter()
                        .flatten()
                        .map(|r| {
                            Requirement::from_k8s(interner, r).unwrap_or_else(|| Requirement {
                                key: interner.intern(&r.key),
                                op: Op::In,
                                values: Box::new([]),
                            })
                        })
                        .collect::<Box<[_]>>()
                };
                Term { exprs: conv(interner, &t.match_expressions), fields: conv(interner, &t.match_fields) }
            })
            .collect();
        Self { terms }
    }

    /// True when some term matches the node.
    #[must_use]
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        self.terms.iter().any(|t| t.matches(name, labels))
    }

    /// The hostnames this selector pins to, when every term requires `hostname_key In [..]`.
    #[must_use]
    pub fn pinned_hosts(&self, hostname_key: &str) -> Option<Vec<Arc<str>>> {
        if self.terms.is_empty() {
            return None;
        }
        let mut hosts = Vec::new();
        for t in self.terms.iter() {
            let r = t.exprs.iter().find(|r| r.key.as_ref() == hostname_key && r.op == Op::In)?;
            hosts.extend(r.values.iter().cloned());
        }
        hosts.sort();
        hosts.dedup();
        Some(hosts)
    }
}

/// A `metav1.LabelSelector`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: Box<[(Arc<str>, Arc<str>)]>,
    /// `matchExpressions` (In, NotIn, Exists, DoesNotExist).
    pub exprs: Box<[Requirement]>,
}

impl LabelSelector {
    /// Converts a Kubernetes label selector.
    pub fn from_k8s(interner: &Interner, s: &K8sLabelSelector) -> Self {
        let match_labels =
            s.match_labels.iter().flatten().map(|(k, v)| (interner.intern(k), interner.intern(v))).collect();
        let exprs = s
            .match_expressions
            .iter()
            .flatten()
            .map(|e| Requirement {
                key: interner.intern(&e.key),
                // Label selectors know only the four set operators; anything else never matches.
                op: match e.operator.as_str() {
                    "In" => Op::In,
                    "NotIn" => Op::NotIn,
                    "Exists" => Op::Exists,
                    "DoesNotExist" => Op::DoesNotExist,
                    _ => Op::Gt,
                },
                values: e.values.iter().flatten().map(|v| interner.intern(v)).collect(),
            })
            .collect();
        Self { match_labels, exprs }
    }

    /// True when the labels satisfy the selector.
    #[must_use]
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v.as_ref()))
            && self.exprs.iter().all(|r| r.matches(labels.get(&r.key)))
    }

    /// The single value required for `key` by `matchLabels`, if any.
    #[must_use]
    pub fn required_value(&self, key: &str) -> Option<&Arc<str>> {
        self.match_labels.iter().find(|(k, _)| k.as_ref() == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorTerm;

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn operators_follow_kubernetes_semantics() {
        let i = Interner::default();
        let labels = Labels::new(&i, [("zone", "a"), ("cores", "16")]);
        let cases = [
            (req("zone", "In", &["a", "b"]), true),
            (req("zone", "In", &["c"]), false),
            (req("zone", "NotIn", &["c"]), true),
            (req("missing", "NotIn", &["c"]), true),
            (req("zone", "Exists", &[]), true),
            (req("missing", "DoesNotExist", &[]), true),
            (req("cores", "Gt", &["8"]), true),
            (req("cores", "Lt", &["8"]), false),
            (req("zone", "Gt", &["1"]), false),
            (req("zone", "Bogus", &["a"]), false),
        ];
        for (r, want) in cases {
            let sel = NodeSelector::from_k8s(
                &i,
                &K8sNodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![r.clone()]),
                        match_fields: None,
                    }],
                },
            );
            assert_eq!(sel.matches("n1", &labels), want, "{r:?}");
        }
    }

    #[test]
    fn empty_terms_match_nothing_and_fields_match_the_name() {
        let i = Interner::default();
        let labels = Labels::new(&i, [("zone", "a")]);
        let empty = NodeSelector::from_k8s(&i, &K8sNodeSelector { node_selector_terms: vec![] });
        assert!(!empty.matches("n1", &labels));
        let by_name = NodeSelector::from_k8s(
            &i,
            &K8sNodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: None,
                    match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
                }],
            },
        );
        assert!(by_name.matches("n1", &labels));
        assert!(!by_name.matches("n2", &labels));
    }

    #[test]
    fn pinned_hosts_only_when_every_term_names_hosts() {
        let i = Interner::default();
        let term = |r| NodeSelectorTerm { match_expressions: Some(vec![r]), match_fields: None };
        let pinned = NodeSelector::from_k8s(
            &i,
            &K8sNodeSelector { node_selector_terms: vec![term(req("kubernetes.io/hostname", "In", &["h1"]))] },
        );
        assert_eq!(pinned.pinned_hosts("kubernetes.io/hostname").unwrap(), vec![Arc::from("h1")]);
        let zone =
            NodeSelector::from_k8s(&i, &K8sNodeSelector { node_selector_terms: vec![term(req("z", "In", &["a"]))] });
        assert!(zone.pinned_hosts("kubernetes.io/hostname").is_none());
    }
}
