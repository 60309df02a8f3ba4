//! Rows of docs/comparison.md: what stowage and the plain scheduler did in one scenario.

/// A file to append one markdown row per scenario outcome to (`scripts/comparison.sh` sets it
/// and renders docs/comparison.md from the rows).
pub const COMPARISON_ENV: &str = "STOWAGE_COMPARISON_OUT";

/// Prints one scenario's outcome on `kubernetes` (a version) and, when `$STOWAGE_COMPARISON_OUT`
/// names a file, appends it there as a markdown row.
///
/// # Panics
/// When the file cannot be written: a comparison run must not lose rows silently.
pub fn record_comparison(scenario: &str, kubernetes: &str, vanilla: &str, stowage: &str) {
    eprintln!("[comparison] {scenario} | {kubernetes} | vanilla: {vanilla} | stowage: {stowage}");
    if let Some(path) = std::env::var_os(COMPARISON_ENV) {
        use std::io::Write as _;
        let row = format!("| {scenario} | {kubernetes} | {vanilla} | {stowage} |\n");
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        if let Err(e) = file.and_then(|mut f| f.write_all(row.as_bytes())) {
            panic!("appending a comparison row to {}: {e}", std::path::Path::new(&path).display());
        }
    }
}
