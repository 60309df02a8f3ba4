//! The plugin registry: which plugins run, in which order, and which policy weight each one
//! scores with. The framework never names a plugin; adding one means writing its file here and
//! adding it to [`registry`].

pub mod contention;
pub mod local_data;
pub mod zone_spread;

#[cfg(test)]
mod table;

pub use contention::Contention;
pub use local_data::LocalData;
pub use zone_spread::ZoneSpread;

use crate::framework::Framework;

/// The plugins in filter order (a node's first refusal stops it), each with its weight.
#[must_use]
pub fn registry() -> Framework {
    Framework::empty()
        .with(LocalData, |w| w.local_data)
        .with(ZoneSpread, |w| w.zone_spread)
        .with(Contention, |w| w.contention)
}
