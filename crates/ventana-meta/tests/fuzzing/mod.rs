//! The fuzz targets, shared by `tests/fuzz.rs` (a few seconds in CI) and `benches/fuzz.rs`
//! (a million inputs): each feeds one mutated input to a decoder and checks what must hold
//! for any input. A broken promise panics; the bench counts panics as crashes.

use ventana_tests::fuzz::{SECRET, api_seeds, event_seeds};
use ventana_wire::api::{ExpiringRequest, OutboundRequest, StateRequest, parse_decision_reply};

/// An error's text never repeats input.
fn quiet(error: impl std::fmt::Display) {
    let text = error.to_string();
    assert!(!text.contains(SECRET), "an error repeats its input: {text}");
}

/// Input events (JSON and protobuf): decoded ones are valid and round-trip; errors are
/// quiet.
pub fn event(input: &[u8]) {
    for protobuf in [false, true] {
        match ventana_bus::client::decode_event(input, protobuf) {
            Ok(event) => {
                event.check_ids().expect("a decoded event has valid ids");
                let again = ventana_wire::parse_event(&ventana_wire::event_to_json(&event))
                    .expect("an event's JSON reads back");
                assert_eq!(again, event);
                let again =
                    ventana_wire::proto::decode_event(&ventana_wire::proto::encode_event(&event))
                        .expect("an event's protobuf reads back");
                assert_eq!(again, event);
            }
            Err(error) => quiet(error),
        }
    }
}

/// The webhook normaliser: errors are quiet; every item's labels are short and tame (they
/// reach logs, metrics and DLQ copies).
pub fn webhook(input: &[u8]) {
    match ventana_meta::normalise::normalise(input, "acme") {
        Ok(items) => {
            for item in &items {
                for label in [&item.object, &item.field, &item.kind] {
                    assert!(label.len() <= 64, "a long label: {label}");
                    assert!(
                        label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)),
                        "an untamed label: {label:?}"
                    );
                }
            }
            for event in ventana_meta::normalise::events(&items) {
                let _ = event.check_ids();
            }
        }
        Err(error) => quiet(error),
    }
}

/// The API's request parsers: errors are quiet; an outbound request either becomes an
/// event with valid ids or is refused.
pub fn api(input: &[u8]) {
    let now = ventana_core::Timestamp::from_unix_seconds(1_772_445_600);
    match StateRequest::parse(input) {
        Ok(_) => {}
        Err(error) => quiet(error),
    }
    match OutboundRequest::parse(input).and_then(|r| r.into_event(now, None, None)) {
        Ok(event) => event.check_ids().expect("a request's event has valid ids"),
        Err(error) => quiet(error),
    }
    match ExpiringRequest::parse(input) {
        Ok(request) => assert!((1..=1000).contains(&request.limit)),
        Err(error) => quiet(error),
    }
    if let Err(error) = parse_decision_reply(input) {
        quiet(error)
    }
}

/// The webhook fixtures: real payloads of every supported shape.
pub fn webhook_seeds() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("the fixtures")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            (name.ends_with(".json")).then(|| std::fs::read(&path).expect("a fixture"))
        })
        .collect();
    seeds.sort();
    seeds
}

/// A target: its name, its seeds, its check.
pub type Target = (&'static str, Vec<Vec<u8>>, fn(&[u8]));

/// Every target.
pub fn targets() -> Vec<Target> {
    vec![
        ("input events", event_seeds(), event as fn(&[u8])),
        ("Meta webhooks", webhook_seeds(), webhook),
        ("API requests", api_seeds(), api),
    ]
}
