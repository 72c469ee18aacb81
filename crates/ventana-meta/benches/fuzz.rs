//! The long fuzz run: a million seeded, mutated inputs (FUZZ_INPUTS) spread over every decoder
//! of untrusted input (input events, Meta webhooks, the API's requests), each checked as
//! `tests/fuzz.rs` checks them. Prints inputs/s per target and the crashes (broken promises
//! or panics), which must be 0.
//!
//! Run: `cargo bench -p ventana-meta --bench fuzz` (FUZZ_INPUTS=1000000, FUZZ_SEED=1).

#[path = "../tests/fuzzing/mod.rs"]
mod fuzzing;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let inputs = env("FUZZ_INPUTS", 1_000_000) as usize;
    let seed = env("FUZZ_SEED", 1);
    // A crash is counted and reported here, not printed by the default hook.
    std::panic::set_hook(Box::new(|_| {}));
    let targets = fuzzing::targets();
    let mut crashes_in_all = 0;
    for target in &targets {
        let (name, seeds, check) = target;
        let count = inputs / targets.len();
        let mut mutator = ventana_tests::fuzz::Mutator::new(seed);
        let mut crashes = 0;
        let mut first_crash = None;
        let started = Instant::now();
        for n in 0..count {
            let input = mutator.next(seeds);
            if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
                crashes += 1;
                first_crash.get_or_insert(n);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "fuzz/{name}: {count} inputs in {seconds:.1} s = {:.0} inputs/s, crashes: {crashes}{}",
            count as f64 / seconds,
            first_crash.map_or(String::new(), |n| format!(
                " (first at input {n}, seed {seed})"
            ))
        );
        crashes_in_all += crashes;
    }
    println!("fuzz: crashes in all: {crashes_in_all}");
    if crashes_in_all > 0 {
        std::process::exit(1);
    }
}
