//! The one evaluation path from a pod's candidate nodes to a decision: the registry filters
//! them, scores those that pass, and every node is described by one [`NodeLine`]. The filter and
//! prioritize verbs, the decision log and the offline explain all go through here.
//!
//! [`NodeLine`]: crate::decisions::NodeLine

use crate::{
    decisions::{NodeScore, PluginScores},
    framework::{
        CycleState, FilterOutcome, Framework, NODE_NOT_CACHED, NodeView, PodContext, ScoreTable, Status, combine,
        normalize_extender,
    },
};

/// Runs the filter plugins over the candidates; a candidate without a view is refused as not
/// cached.
#[must_use]
pub(crate) fn filter(
    fw: &Framework,
    cycle: &CycleState<'_>,
    pod: &PodContext<'_>,
    nodes: &[Option<NodeView<'_>>],
) -> Vec<FilterOutcome> {
    fw.filter(cycle, pod, nodes, Status::unschedulable(&NODE_NOT_CACHED))
}

/// Scores of a set of nodes: per plugin, combined (0..100), and on the extender's scale both
/// as [`combine`] gives it for one node alone and normalised over the set (what prioritize
/// sends).
#[derive(Debug)]
pub(crate) struct Scored {
    names: Vec<&'static str>,
    table: ScoreTable,
    /// Weights of the plugins active for the pod, in registration order.
    pub weights: Vec<u32>,
    /// Weighted combination per node.
    pub combined: Vec<i64>,
    alone: Vec<i64>,
    /// Extender score per node, normalised over the set.
    pub normalised: Vec<i64>,
}

/// Scores `nodes` with the plugins active for the pod.
#[must_use]
pub(crate) fn score(fw: &Framework, cycle: &CycleState<'_>, pod: &PodContext<'_>, nodes: &[NodeView<'_>]) -> Scored {
    let weights = fw.active_weights(cycle, pod);
    let table = fw.score(cycle, pod, nodes, &weights);
    let (combined, alone): (Vec<i64>, Vec<i64>) = (0..table.len()).map(|i| combine(table.row(i), &weights)).unzip();
    let normalised = normalize_extender(&combined);
    Scored { names: fw.names().collect(), table, weights, combined, alone, normalised }
}

impl Scored {
    fn plugin_scores(&self, k: usize) -> PluginScores {
        PluginScores::from_named(self.names.iter().copied().zip(self.table.row(k).iter().copied()))
    }

    /// Node `k`'s scores, with the extender score normalised over the set.
    #[must_use]
    pub fn node(&self, k: usize) -> NodeScore {
        NodeScore { scores: self.plugin_scores(k), combined: self.combined[k], score: self.normalised[k] }
    }

    /// Node `k`'s scores, with the extender score of the node alone.
    #[must_use]
    pub fn node_alone(&self, k: usize) -> NodeScore {
        NodeScore { scores: self.plugin_scores(k), combined: self.combined[k], score: self.alone[k] }
    }

    /// The plugins' weights, by plugin.
    #[must_use]
    pub fn weights(&self) -> PluginScores {
        PluginScores::from_named(self.names.iter().copied().zip(self.weights.iter().map(|w| i64::from(*w))))
    }
}
