//! stowage-testkit
