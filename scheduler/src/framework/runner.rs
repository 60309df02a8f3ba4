//! The plugin contract and the generic runner. The runner knows plugins only through
//! [`Plugin`]; which plugins run, in which order and with which weight is the registry's
//! business (`crate::plugins`).

use std::any::Any;

use stowage_policy::config::Weights;
use tokio::time::Instant;

use super::{CycleState, LedgerFacts, MAX_NODE_SCORE, NodeView, PodContext, Status};
use crate::{cache::Model, ledger::Ledger};

/// A scheduling plugin (`framework.PreFilterPlugin` + `FilterPlugin` + `ScorePlugin`).
///
/// `pre_filter` runs once per cycle and returns the plugin's own state; `filter` and `score` run
/// once per node against it, so they must be O(1)-ish and allocation-free. Each plugin has its
/// own `State` type: [`CycleState::read`] finds a plugin's state by that type.
pub trait Plugin: Send + Sync + 'static {
    /// What PreFilter computes for one pod.
    type State: Send + Sync + 'static;

    /// Kebab-case name: the `plugin` metric label and the decision's `plugin` field.
    const NAME: &'static str;

    /// PreFilter (and PreScore): reads the model, the pod and the ledger once.
    fn pre_filter(&self, model: &Model, pod: &PodContext<'_>, ledger: &LedgerFacts) -> Self::State;

    /// Whether `node` can run the pod; a refusal lists every reason that applies.
    fn filter(&self, cycle: &CycleState<'_>, state: &Self::State, pod: &PodContext<'_>, node: &NodeView<'_>) -> Status;

    /// False when the plugin has nothing to say about this pod (PreScore `Skip`): it then
    /// scores 0 everywhere and its weight leaves the combination.
    fn scores(&self, state: &Self::State, pod: &PodContext<'_>) -> bool;

    /// Score of one node, 0..=[`MAX_NODE_SCORE`] after [`Plugin::normalize_score`].
    fn score(&self, cycle: &CycleState<'_>, state: &Self::State, pod: &PodContext<'_>, node: &NodeView<'_>) -> i64;

    /// Rescales the scores of all scored nodes (`NormalizeScore`); default: none.
    fn normalize_score(&self, _state: &Self::State, _pod: &PodContext<'_>, _scores: &mut [i64]) {}
}

/// A plugin with its state type erased, so the runner can hold a list of them. Each call
/// downcasts the state once and then loops over the nodes monomorphically.
trait Erased: Send + Sync {
    fn name(&self) -> &'static str;
    fn pre_filter(&self, model: &Model, pod: &PodContext<'_>, ledger: &LedgerFacts) -> Box<dyn Any + Send + Sync>;
    fn filter(
        &self,
        cycle: &CycleState<'_>,
        at: usize,
        pod: &PodContext<'_>,
        nodes: &[Option<NodeView<'_>>],
        out: &mut [FilterOutcome],
    );
    fn scores(&self, cycle: &CycleState<'_>, at: usize, pod: &PodContext<'_>) -> bool;
    fn score(
        &self,
        cycle: &CycleState<'_>,
        at: usize,
        pod: &PodContext<'_>,
        nodes: &[NodeView<'_>],
        column: &mut Vec<i64>,
    );
}

fn state<'s, P: Plugin>(cycle: &'s CycleState<'_>, at: usize) -> &'s P::State {
    cycle.state_at(at).downcast_ref::<P::State>().expect("the cycle was prepared by the same runner")
}

impl<P: Plugin> Erased for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn pre_filter(&self, model: &Model, pod: &PodContext<'_>, ledger: &LedgerFacts) -> Box<dyn Any + Send + Sync> {
        Box::new(Plugin::pre_filter(self, model, pod, ledger))
    }

    fn filter(
        &self,
        cycle: &CycleState<'_>,
        at: usize,
        pod: &PodContext<'_>,
        nodes: &[Option<NodeView<'_>>],
        out: &mut [FilterOutcome],
    ) {
        let st = state::<P>(cycle, at);
        for (node, o) in nodes.iter().zip(out) {
            let Some(node) = node else { continue };
            if !o.status.is_success() {
                continue;
            }
            let s = Plugin::filter(self, cycle, st, pod, node);
            if !s.is_success() {
                *o = FilterOutcome { status: s, plugin: Some(P::NAME) };
            }
        }
    }

    fn scores(&self, cycle: &CycleState<'_>, at: usize, pod: &PodContext<'_>) -> bool {
        Plugin::scores(self, state::<P>(cycle, at), pod)
    }

    fn score(
        &self,
        cycle: &CycleState<'_>,
        at: usize,
        pod: &PodContext<'_>,
        nodes: &[NodeView<'_>],
        column: &mut Vec<i64>,
    ) {
        let st = state::<P>(cycle, at);
        column.clear();
        column.extend(nodes.iter().map(|n| Plugin::score(self, cycle, st, pod, n)));
        Plugin::normalize_score(self, st, pod, column);
    }
}

impl CycleState<'_> {
    /// The PreFilter state of plugin `P`, when `P` is registered.
    #[must_use]
    pub fn read<P: Plugin>(&self) -> Option<&P::State> {
        self.states().find_map(|s| s.downcast_ref::<P::State>())
    }
}

struct Entry {
    plugin: Box<dyn Erased>,
    weight: fn(&Weights) -> u32,
}

/// The plugins of one registry, run in registration order.
pub struct Framework {
    plugins: Vec<Entry>,
}

impl std::fmt::Debug for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// One node's filter result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterOutcome {
    /// Success, or the first refusing plugin's status.
    pub status: Status,
    /// The plugin that refused, if one did (`None` for refusals the framework itself makes).
    pub plugin: Option<&'static str>,
}

impl FilterOutcome {
    /// A refusal made by the framework, not by a plugin.
    #[must_use]
    pub const fn framework(status: Status) -> Self {
        Self { status, plugin: None }
    }
}

/// Per-plugin scores of scored nodes, one row per node in registration order.
#[derive(Debug, Clone, Default)]
pub struct ScoreTable {
    width: usize,
    cells: Vec<i64>,
}

impl ScoreTable {
    /// The scores node `i` got from each plugin.
    #[must_use]
    pub fn row(&self, i: usize) -> &[i64] {
        &self.cells[i * self.width..(i + 1) * self.width]
    }

    /// Number of nodes scored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.cells.len().checked_div(self.width).unwrap_or(0)
    }

    /// True when no node was scored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

impl Framework {
    /// A runner with no plugin; the registry adds them with [`Framework::with`].
    #[must_use]
    pub fn empty() -> Self {
        Self { plugins: Vec::new() }
    }

    /// Adds a plugin after the others, weighted by `weight` of the pod's policy.
    #[must_use]
    pub fn with<P: Plugin>(mut self, plugin: P, weight: fn(&Weights) -> u32) -> Self {
        self.plugins.push(Entry { plugin: Box::new(plugin), weight });
        self
    }

    /// Plugin names in registration order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins.iter().map(|e| e.plugin.name())
    }

    /// Reads the ledger and runs every plugin's PreFilter.
    #[must_use]
    pub fn prepare<'m>(&self, model: &'m Model, ledger: &Ledger, pod: &PodContext<'_>, now: Instant) -> CycleState<'m> {
        let mut cycle = CycleState::new(model, ledger, pod, now);
        for e in &self.plugins {
            let st = e.plugin.pre_filter(model, pod, cycle.ledger());
            cycle.push_state(st);
        }
        cycle
    }

    /// Runs the filter plugins in order and stops at a node's first refusal (as the framework
    /// does); the refusing plugin reports every reason it found. A node without a view (not
    /// cached and not sent) is refused with `missing`.
    #[must_use]
    pub fn filter(
        &self,
        cycle: &CycleState<'_>,
        pod: &PodContext<'_>,
        nodes: &[Option<NodeView<'_>>],
        missing: Status,
    ) -> Vec<FilterOutcome> {
        let mut out: Vec<FilterOutcome> = nodes
            .iter()
            .map(|n| FilterOutcome::framework(if n.is_some() { Status::success() } else { missing }))
            .collect();
        for (at, e) in self.plugins.iter().enumerate() {
            e.plugin.filter(cycle, at, pod, nodes, &mut out);
        }
        out
    }

    /// The weight of each plugin for this pod, 0 for plugins that do not score it.
    #[must_use]
    pub fn active_weights(&self, cycle: &CycleState<'_>, pod: &PodContext<'_>) -> Vec<u32> {
        self.plugins
            .iter()
            .enumerate()
            .map(|(at, e)| if e.plugin.scores(cycle, at, pod) { (e.weight)(&pod.policy.weights) } else { 0 })
            .collect()
    }

    /// Scores every node with the plugins active for the pod (after each plugin's
    /// normalisation, clamped to 0..=[`MAX_NODE_SCORE`]); inactive plugins score 0.
    #[must_use]
    pub fn score(
        &self,
        cycle: &CycleState<'_>,
        pod: &PodContext<'_>,
        nodes: &[NodeView<'_>],
        weights: &[u32],
    ) -> ScoreTable {
        let width = self.plugins.len();
        let mut table = ScoreTable { width, cells: vec![0; width * nodes.len()] };
        let mut column = Vec::with_capacity(nodes.len());
        for (at, e) in self.plugins.iter().enumerate() {
            if weights.get(at).is_none_or(|w| *w == 0) {
                continue;
            }
            e.plugin.score(cycle, at, pod, nodes, &mut column);
            for (i, s) in column.iter().enumerate() {
                table.cells[i * width + at] = (*s).clamp(0, MAX_NODE_SCORE);
            }
        }
        table
    }
}
