//! A short fuzz run of every decoder of untrusted input (input events, Meta webhooks, the
//! API's requests): seeded, bounded, the same inputs every run. `benches/fuzz.rs` runs a
//! million and prints the rate.

mod fuzzing;

/// Inputs per target in the test suite (a few seconds in all).
const INPUTS: usize = 60_000;

#[test]
fn no_input_crashes_a_decoder_or_is_repeated_in_an_error() {
    for (_, seeds, check) in fuzzing::targets() {
        for seed in 0..4 {
            let mut mutator = ventana_tests::fuzz::Mutator::new(seed);
            for _ in 0..INPUTS / 4 {
                check(&mutator.next(&seeds));
            }
        }
    }
}

#[test]
fn the_mutator_reaches_the_promises_it_checks() {
    // The run above proves something only if mutated inputs both decode and fail, and
    // some errors come from inputs carrying the planted text.
    let seeds = ventana_tests::fuzz::event_seeds();
    let mut mutator = ventana_tests::fuzz::Mutator::new(1);
    let (mut decoded, mut refused, mut planted) = (0, 0, 0);
    for _ in 0..5_000 {
        let input = mutator.next(&seeds);
        match ventana_bus::client::decode_event(&input, false) {
            Ok(_) => decoded += 1,
            Err(_) => {
                refused += 1;
                if String::from_utf8_lossy(&input).contains(ventana_tests::fuzz::SECRET) {
                    planted += 1;
                }
            }
        }
    }
    assert!(
        decoded > 100 && refused > 1_000 && planted > 50,
        "{decoded} {refused} {planted}"
    );
}
