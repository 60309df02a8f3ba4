//! The plugins: each implements [`crate::framework::FilterPlugin`] and
//! [`crate::framework::ScorePlugin`] and computes its per-cycle state once in `pre_filter`.

pub mod contention;
pub mod local_data;
pub mod zone_spread;
