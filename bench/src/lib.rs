//! What the benchmarks share with tests: the fault drills ([`faults`]),
//! which `bench/tests/faults.rs` runs with bounds and the `faults`
//! subcommand runs for figures. The other benchmarks live in the binary.

pub mod faults;
