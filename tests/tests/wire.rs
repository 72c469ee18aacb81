//! Every event round-trips JSON -> domain -> protobuf -> domain -> JSON unchanged (README "Events"),
//! inputs and outputs alike; the state codec restores exactly what it encoded.

use proptest::prelude::*;
use std::collections::HashMap;

use ventana_core::{Conversation, Event, Policy, Rate, Span, Timestamp, validate};
use ventana_notifier::Fold;
use ventana_tests::traffic::{ACTIONS, Step, build_log};
use ventana_wire::codec::{
    CodecError, FIXED_WIDTH_FORMAT, STATE_FORMAT, decode_state, encode_state,
};
use ventana_wire::proto::{decode_event, decode_output, encode_event, encode_output};
use ventana_wire::{event_to_json, output_to_json, parse_event, parse_output};

fn log() -> impl Strategy<Value = Vec<Event>> {
    let step = (0u32..3, 0u32..(30 * 3600), 0u8..ACTIONS, 0u16..3600).prop_map(
        |(conversation, gap_seconds, action, late_seconds)| Step {
            conversation,
            gap_seconds,
            action,
            late_seconds,
        },
    );
    (
        prop::collection::vec(step, 1..80),
        "[a-zA-Z0-9._:=/ é-]{1,24}",
        "[a-z0-9+]{1,16}",
        0u32..1_000_000_000,
    )
        .prop_map(|(steps, id, contact, nanos)| {
            let mut events = build_log(&steps);
            // Arbitrary text in ids and keys, and sub-second instants.
            events[0].id = id;
            events[0].conversation.contact_id = contact;
            events[0].occurred_at =
                Timestamp::from_unix_nanos(events[0].occurred_at.unix_nanos() + i64::from(nanos));
            events[0].logged_at = None;
            events
        })
}

/// The default policy with holds, greetings and reminders on, so every output type occurs.
fn holding() -> Policy {
    let mut policy = Policy::default();
    policy.instagram.hold_until_accepted = true;
    policy.notifier.greet_on_open = true;
    policy.notifier.remind_customer = true;
    policy
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn input_events_round_trip_through_json_and_protobuf(events in log()) {
        for event in &events {
            let json = event_to_json(event);
            let parsed = parse_event(&json).unwrap();
            prop_assert_eq!(&parsed, event);
            let back = decode_event(&encode_event(&parsed)).unwrap();
            prop_assert_eq!(event_to_json(&back), json);
        }
    }

    #[test]
    fn output_events_round_trip_through_json_and_protobuf(events in log()) {
        let mut fold = Fold::new(holding());
        let mut outputs = Vec::new();
        for event in &events {
            let _ = fold.apply(event, &mut outputs);
        }
        for output in &outputs {
            let json = output_to_json(output);
            let parsed = parse_output(&json).unwrap();
            prop_assert_eq!(&parsed, output);
            let back = decode_output(&encode_output(&parsed)).unwrap();
            prop_assert_eq!(output_to_json(&back), json);
        }
    }
}

#[test]
fn every_output_type_and_reason_is_covered_by_generated_traffic() {
    // Guards the round-trip property: the traffic it runs on must reach every shape.
    let steps = ventana_tests::traffic::seeded_steps(7, 50_000, 200, 60);
    let mut fold = Fold::new(holding());
    let mut outputs = Vec::new();
    for event in build_log(&steps) {
        fold.apply(&event, &mut outputs).unwrap();
    }
    let end = ventana_tests::traffic::end_of(&steps);
    fold.advance_all(end.plus(ventana_core::Span::from_days(8)), &mut outputs);
    let mut seen = std::collections::BTreeSet::new();
    for output in &outputs {
        let json: serde_json::Value = serde_json::from_str(&output_to_json(output)).unwrap();
        seen.insert(json["type"].as_str().unwrap().to_owned());
        assert!(ventana_notifier::OutputBody::TYPES.contains(&output.body.type_name()));
        if let Some(reason) = json.get("reason") {
            seen.insert(reason.as_str().unwrap().to_owned());
        }
    }
    let types = ventana_notifier::OutputBody::TYPES;
    for expected in types.into_iter().chain([
        "no_customer_message",
        "window_expired",
        "extended_window_expired",
        "human_agent_requires_human",
        "template_not_supported",
        "private_reply_used",
        "awaiting_customer_acceptance",
        "conversation_closed",
        "recipient_unavailable",
    ]) {
        assert!(
            seen.contains(expected),
            "{expected} never produced; saw {seen:?}"
        );
    }
}

#[test]
fn the_state_codec_refuses_other_versions_and_garbage() {
    let steps = ventana_tests::traffic::seeded_steps(1, 200, 2, 10);
    let mut fold = Fold::new(Policy::default());
    for event in build_log(&steps) {
        fold.apply(&event, &mut Vec::new()).unwrap();
    }
    let conversation = fold.conversations().next().unwrap();
    let mut bytes = encode_state(conversation);
    assert_eq!(bytes[0], STATE_FORMAT);
    assert_eq!(&decode_state(&bytes).unwrap(), conversation);
    bytes[0] = STATE_FORMAT + 1;
    assert!(
        matches!(decode_state(&bytes), Err(CodecError::Version { found }) if found == STATE_FORMAT + 1)
    );
    assert!(matches!(decode_state(&[]), Err(CodecError::Empty)));
    assert!(matches!(
        decode_state(&[STATE_FORMAT, 0xff]),
        Err(CodecError::Corrupt(_))
    ));
}

/// `data/state-format-2.hex` holds, line by line, the state of each event's conversation
/// after it was folded, as the last version writing format 2 encoded it (fixed-width
/// integers), from the events in `data/state-format-2.events.jsonl` with the policy below.
/// The events reach every part of a state: comments, a hold, tagged sends, a window cut by a
/// platform error, statuses of a message ventana never decided, a closed conversation.
#[test]
fn states_written_in_format_2_read_as_the_same_states_and_format_3_is_smaller() {
    let mut policy = Policy::default();
    policy.instagram.hold_until_accepted = true;
    policy.messenger.human_agent_rate = Some(Rate {
        count: 3,
        per: Span::from_days(7),
    });
    policy.messenger.tags[2].rate = Some(Rate {
        count: 2,
        per: Span::from_days(1),
    });
    let events = include_str!("data/state-format-2.events.jsonl");
    let states = include_str!("data/state-format-2.hex");
    assert_eq!(events.lines().count(), states.lines().count());
    let mut conversations: HashMap<_, Conversation> = HashMap::new();
    let (mut before, mut after) = (0, 0);
    for (line, hex) in events.lines().zip(states.lines()) {
        let event = parse_event(line).unwrap();
        validate(&event, &policy).unwrap();
        let conversation = conversations
            .entry(event.conversation.token())
            .or_insert_with(|| Conversation::new(event.conversation.clone()));
        conversation.apply(&event, &policy, &mut Vec::new());
        let old: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(old[0], FIXED_WIDTH_FORMAT);
        assert_eq!(
            &decode_state(&old).unwrap(),
            conversation,
            "after {}",
            event.id
        );
        let new = encode_state(conversation);
        assert_eq!(new[0], STATE_FORMAT);
        assert_eq!(&decode_state(&new).unwrap(), conversation);
        before += old.len();
        after += new.len();
    }
    assert!(
        after * 10 < before * 8,
        "format 3 is at least a fifth smaller: {after} B against {before} B"
    );
}

/// Every text enum reads back what it writes, and no two of its values share a text.
#[test]
fn every_text_enum_reads_back_what_it_writes() {
    fn round_trip<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        for &value in all {
            assert_eq!(parse(as_str(value)), Some(value), "{value:?}");
        }
        let mut texts: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), all.len(), "two values share a text: {texts:?}");
        assert_eq!(parse("no such value"), None);
    }
    use ventana_core::{
        MessageKind, MessagingType, Origin, Reason, Rule, Sender, State, Status, Tag, Window,
    };
    use ventana_notifier::{Source, Suggestion, Trigger};
    use ventana_wire::api::ApiErrorCode;
    round_trip(State::ALL, State::as_str, State::parse);
    round_trip(Window::ALL, Window::as_str, Window::parse);
    round_trip(Tag::ALL, Tag::as_str, Tag::parse);
    round_trip(Status::ALL, Status::as_str, Status::parse);
    round_trip(Sender::ALL, Sender::as_str, Sender::parse);
    round_trip(MessageKind::ALL, MessageKind::as_str, MessageKind::parse);
    round_trip(Origin::ALL, Origin::as_str, Origin::parse);
    round_trip(
        MessagingType::ALL,
        MessagingType::as_str,
        MessagingType::parse,
    );
    round_trip(Reason::ALL, Reason::as_str, Reason::parse);
    round_trip(Rule::ALL, Rule::as_str, Rule::parse);
    round_trip(Source::ALL, Source::as_str, Source::parse);
    round_trip(Suggestion::ALL, Suggestion::as_str, Suggestion::parse);
    round_trip(Trigger::ALL, Trigger::as_str, Trigger::parse);
    round_trip(ApiErrorCode::ALL, ApiErrorCode::as_str, ApiErrorCode::parse);
}
