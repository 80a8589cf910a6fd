//! criterion micro-benchmarks of the hot paths live in benches/benches/.
