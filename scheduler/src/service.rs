//! The extender's public facade; the verbs themselves live in [`crate::verbs`].

pub use crate::verbs::{Extender, Options};
