//! Criterion benchmarks for rts live in `benches/`; this library is empty on purpose.
