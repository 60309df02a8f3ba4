//! stowage-webhook
