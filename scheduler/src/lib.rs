//! stowage-scheduler
