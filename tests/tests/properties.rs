//! Properties of the fold over generated traffic, on a simulated clock (DESIGN §2, §7).

use proptest::prelude::*;
use ventana_core::{
    Channel, Event, EventBody, MessagingType, Policy, Sender, Span, TAG_DEPRECATION, Tag,
    Timestamp, Window,
};
use ventana_notifier::{Fold, Output, OutputBody};
use ventana_tests::traffic::{ACTIONS, Step, build_log};
use ventana_wire::codec::{decode_state, encode_state};
use ventana_wire::{output_to_json, snapshot_to_json};

fn steps(max_len: usize) -> impl Strategy<Value = Vec<Step>> {
    let step = (0u32..4, 0u32..(40 * 3600), 0u8..ACTIONS, 0u16..3600).prop_map(
        |(conversation, gap, action, late)| Step {
            conversation,
            // Mostly minutes apart, sometimes hours or days: windows open, close and expire.
            gap_seconds: if gap % 4 == 0 { gap } else { gap % 1800 },
            action,
            late_seconds: if late % 5 == 0 { late } else { 0 },
        },
    );
    prop::collection::vec(step, 1..max_len)
}

/// Every output of folding `events` (skipping none: generated events are all valid), then
/// the snapshots, as printed.
fn replay(policy: &Policy, events: &[Event]) -> Vec<String> {
    let mut fold = Fold::new(policy.clone());
    let mut outputs = Vec::new();
    for event in events {
        fold.apply(event, &mut outputs)
            .expect("generated events are valid");
    }
    printed(&fold, &outputs)
}

fn printed(fold: &Fold, outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(output_to_json)
        .chain(fold.snapshots().iter().map(snapshot_to_json))
        .collect()
}

fn policies() -> impl Strategy<Value = Policy> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(hold, greet, rate)| {
        let mut policy = Policy::default();
        policy.instagram.hold_until_accepted = hold;
        policy.messenger.hold_until_accepted = hold;
        policy.notifier.greet_on_open = greet;
        policy.notifier.remind_customer = greet;
        if rate {
            policy.messenger.human_agent_rate = Some(ventana_core::Rate {
                count: 1,
                per: Span::from_hours(24),
            });
        }
        policy
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_same_log_gives_the_same_outputs(steps in steps(120), policy in policies()) {
        let events = build_log(&steps);
        prop_assert_eq!(replay(&policy, &events), replay(&policy, &events));
    }

    #[test]
    fn duplicating_any_event_changes_nothing(steps in steps(120), at in any::<prop::sample::Index>(), policy in policies()) {
        let events = build_log(&steps);
        let i = at.index(events.len());
        let mut doubled = events.clone();
        doubled.insert(i + 1, events[i].clone());
        prop_assert_eq!(replay(&policy, &doubled), replay(&policy, &events));
    }

    #[test]
    fn a_log_split_in_two_and_continued_from_snapshots_equals_the_whole(
        steps in steps(120), at in any::<prop::sample::Index>(), policy in policies()
    ) {
        let events = build_log(&steps);
        let split = at.index(events.len() + 1);
        let mut first = Fold::new(policy.clone());
        let mut outputs = Vec::new();
        for event in &events[..split] {
            first.apply(event, &mut outputs).unwrap();
        }
        // Restore every conversation from its encoded state into a new fold.
        let mut second = Fold::new(policy.clone());
        for conversation in first.conversations() {
            second.restore(decode_state(&encode_state(conversation)).unwrap());
        }
        for event in &events[split..] {
            second.apply(event, &mut outputs).unwrap();
        }
        prop_assert_eq!(printed(&second, &outputs), replay(&policy, &events));
    }

    #[test]
    fn permuting_customer_messages_never_changes_the_final_window_end(
        steps in steps(60), seed in any::<u64>()
    ) {
        // Everything arrives in one late batch, with no operator closing in between: only
        // the order of each conversation's customer messages differs.
        let steps: Vec<Step> = steps.into_iter().filter(|s| s.action < 18).collect();
        prop_assume!(!steps.is_empty());
        let mut events = build_log(&steps);
        let end = events.last().unwrap().logged_at.unwrap();
        for event in &mut events {
            event.logged_at = Some(end);
        }
        let mut permuted = events.clone();
        let mut rng = ventana_tests::traffic::SplitMix::new(seed);
        for conversation in 0..4 {
            let key = ventana_tests::traffic::key(conversation);
            let slots: Vec<usize> = (0..events.len())
                .filter(|&i| events[i].conversation == key && matches!(events[i].body, EventBody::CustomerMessage))
                .collect();
            let mut order = slots.clone();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for (slot, from) in slots.iter().zip(&order) {
                permuted[*slot] = events[*from].clone();
            }
        }
        let ends = |events: &[Event]| {
            let mut fold = Fold::new(Policy::default());
            for event in events {
                fold.apply(event, &mut Vec::new()).unwrap();
            }
            fold.snapshots()
                .into_iter()
                .map(|s| {
                    let window_end = matches!(s.view.window, Window::Standard | Window::HumanAgent)
                        .then_some(s.view.window_ends_at);
                    (s.conversation, s.last_customer_at, window_end)
                })
                .collect::<Vec<_>>()
        };
        prop_assert_eq!(ends(&permuted), ends(&events));
    }

    #[test]
    fn no_free_form_message_is_ever_accepted_outside_every_window(steps in steps(200), policy in policies()) {
        let events = build_log(&steps);
        let mut fold = Fold::new(policy.clone());
        for (n, event) in events.iter().enumerate() {
            let mut outputs = Vec::new();
            fold.apply(event, &mut outputs).unwrap();
            for output in &outputs {
                check_acceptance(&policy, &events[..=n], output)?;
            }
        }
    }
}

/// An independent, simpler model of when a message may be accepted: every acceptance must
/// fall inside a window this model sees open.
fn check_acceptance(policy: &Policy, log: &[Event], output: &Output) -> Result<(), TestCaseError> {
    let OutputBody::OutboundAccepted {
        message_id,
        messaging_type,
        tag,
        comment_id,
        ..
    } = &output.body
    else {
        return Ok(());
    };
    let t: Timestamp = output.occurred_at;
    let key = &output.conversation;
    let mine = || log.iter().filter(|e| &e.conversation == key);
    let last_customer = mine()
        .filter(|e| matches!(e.body, EventBody::CustomerMessage))
        .map(|e| e.occurred_at)
        .max();
    let within = |span: Span| last_customer.is_some_and(|at| t < at.plus(span));
    let request = mine().find(|e| &e.id == message_id);
    let sender = request.and_then(|e| match &e.body {
        EventBody::OutboundMessage(o) => Some(o.sender),
        _ => None,
    });
    let ok = match (messaging_type, &key.channel) {
        (MessagingType::CommentReply, _) => true,
        (MessagingType::Response, Channel::Custom(_)) => {
            last_customer.is_some()
                || mine().any(|e| matches!(e.body, EventBody::CustomerComment { .. }))
        }
        (MessagingType::Response, channel) => {
            within(policy.channel(channel).unwrap().standard_window)
        }
        (MessagingType::Template, channel) => {
            matches!(channel, Channel::WhatsApp | Channel::Messenger)
        }
        (MessagingType::MessageTag, channel) => match tag {
            Some(Tag::HumanAgent) => {
                sender == Some(Sender::Agent)
                    && within(policy.channel(channel).unwrap().human_agent_window)
            }
            Some(_) => *channel == Channel::Messenger && t < TAG_DEPRECATION,
            None => false,
        },
        (MessagingType::PrivateReply, channel) => {
            let window = policy
                .channel(channel)
                .map_or(Span::ZERO, |c| c.private_reply_window);
            mine().any(|e| matches!(&e.body, EventBody::CustomerComment { comment_id: c } if Some(c) == comment_id.as_ref())
                && t < e.occurred_at.plus(window))
        }
    };
    prop_assert!(
        ok,
        "accepted outside every window: {}",
        output_to_json(output)
    );
    Ok(())
}
