//! Extender benchmarks (filled in below).

fn main() {}
