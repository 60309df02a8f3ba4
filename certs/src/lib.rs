//! stowage-certs
