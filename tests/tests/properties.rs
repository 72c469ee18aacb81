//! Properties of the fold over generated traffic, on a simulated clock (the invariants of ARCHITECTURE.md).

use proptest::prelude::*;
use ventana_core::{
    Channel, ConversationKey, Event, EventBody, MessagingType, Policy, Sender, Span,
    TAG_DEPRECATION, Tag, Timestamp, Window,
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
    let key: &ConversationKey = &output.conversation;
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

// ----- A differential model: invariants that hold whatever the reading -----

mod mixed {
    //! Long mixed logs with every event kind: late and duplicate events, comments reported
    //! again, echoes (tagged, private replies), tags with rates, platform errors, closes and
    //! reopens, custom channels; statuses and replies that name any earlier message or
    //! comment, not only the last.

    use ventana_core::{
        Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound,
        PlatformError, Policy, Rate, Sender, Span, Status, Tag, TagPolicy,
    };

    use ventana_tests::traffic::outbound;

    use super::*;

    /// One generated step: which conversation, how long after the previous step, what
    /// happens, how late a customer message arrives, and which earlier thing it names.
    #[derive(Clone, Copy, Debug)]
    pub struct Act {
        pub conversation: u8,
        pub gap_seconds: u32,
        pub what: u8,
        pub late_seconds: u16,
        pub pick: u16,
    }

    pub const KINDS: u8 = 24;

    pub fn acts(max_len: usize, conversations: u8) -> impl Strategy<Value = Vec<Act>> {
        let act = (
            0..conversations,
            0u32..(40 * 3600),
            0..KINDS,
            0u16..3600,
            any::<u16>(),
        )
            .prop_map(|(conversation, gap, what, late, pick)| Act {
                conversation,
                // Mostly minutes apart, sometimes hours or days.
                gap_seconds: if gap % 4 == 0 { gap } else { gap % 1800 },
                what,
                late_seconds: if late % 5 == 0 { late } else { 0 },
                pick,
            });
        prop::collection::vec(act, 1..max_len)
    }

    pub fn key(conversation: u8) -> ConversationKey {
        let channel = match conversation % 5 {
            0 => Channel::WhatsApp,
            1 | 4 => Channel::Messenger,
            2 => Channel::Instagram,
            _ => Channel::Custom("webchat".into()),
        };
        ConversationKey::new(channel, "acme", "page", format!("contact-{conversation}"))
    }

    fn pick<T: Clone>(items: &[T], pick: u16) -> Option<T> {
        (!items.is_empty()).then(|| items[usize::from(pick) % items.len()].clone())
    }

    const TAGS: [Tag; 3] = [
        Tag::AccountUpdate,
        Tag::ConfirmedEventUpdate,
        Tag::PostPurchaseUpdate,
    ];

    /// Turns acts into a log whose decision times never go back, as in the live log.
    pub fn log(acts: &[Act]) -> Vec<Event> {
        let mut now = ventana_tests::scenario::T0;
        let mut events: Vec<Event> = Vec::with_capacity(acts.len());
        // Per conversation: the outbound message ids and comment ids so far.
        let mut messages: Vec<Vec<String>> = vec![Vec::new(); 8];
        let mut comments: Vec<Vec<String>> = vec![Vec::new(); 8];
        // Indices of the events that are not copies of earlier ones.
        let mut originals: Vec<usize> = Vec::new();
        for (n, act) in acts.iter().enumerate() {
            now = now.plus(Span::from_seconds(i64::from(act.gap_seconds)));
            let c = usize::from(act.conversation);
            let id = format!("e{n}");
            let mut occurred_at = now;
            let a_message = pick(&messages[c], act.pick)
                .unwrap_or_else(|| format!("stranger-{}", act.pick % 3));
            let a_comment = pick(&comments[c], act.pick);
            let status = |status, code: Option<(i64, Option<i64>)>| {
                EventBody::DeliveryStatus(DeliveryStatus {
                    message_id: a_message.clone(),
                    status,
                    error: code.map(|(code, subcode)| PlatformError {
                        code,
                        subcode,
                        title: None,
                    }),
                })
            };
            let body = match act.what {
                0..=4 => {
                    occurred_at = now.minus(Span::from_seconds(i64::from(act.late_seconds)));
                    EventBody::CustomerMessage
                }
                5 | 6 => EventBody::CustomerComment {
                    comment_id: format!("cm{n}"),
                },
                7 => EventBody::CustomerComment {
                    comment_id: a_comment.clone().unwrap_or_else(|| format!("cm{n}")),
                },
                8 | 9 => {
                    EventBody::OutboundMessage(outbound(Sender::Agent, MessageKind::Message, None))
                }
                10 => EventBody::OutboundMessage(outbound(
                    Sender::Automation,
                    MessageKind::Message,
                    None,
                )),
                11 => EventBody::OutboundMessage(outbound(
                    Sender::Agent,
                    MessageKind::Message,
                    Some(Tag::HumanAgent),
                )),
                12 => EventBody::OutboundMessage(outbound(
                    if act.pick % 4 == 0 {
                        Sender::Agent
                    } else {
                        Sender::Automation
                    },
                    MessageKind::Message,
                    Some(TAGS[usize::from(act.pick) % 3]),
                )),
                13 => EventBody::OutboundMessage(outbound(
                    Sender::Automation,
                    MessageKind::Template,
                    None,
                )),
                14 => EventBody::OutboundMessage(Outbound {
                    comment_id: a_comment.clone().filter(|_| act.pick % 7 != 0),
                    ..outbound(Sender::Agent, MessageKind::PrivateReply, None)
                }),
                15 => EventBody::OutboundMessage(Outbound {
                    comment_id: a_comment.clone(),
                    ..outbound(Sender::Agent, MessageKind::CommentReply, None)
                }),
                16 => {
                    let (kind, tag, comment_id) = match act.pick % 5 {
                        0 => (MessageKind::PrivateReply, None, a_comment.clone()),
                        1 => (MessageKind::Message, Some(Tag::HumanAgent), None),
                        2 => (
                            MessageKind::Message,
                            Some(TAGS[usize::from(act.pick / 5) % 3]),
                            None,
                        ),
                        _ => (MessageKind::Message, None, None),
                    };
                    EventBody::OutboundMessage(Outbound {
                        sender: Sender::Agent,
                        kind,
                        tag,
                        comment_id,
                        origin: Origin::Echo,
                    })
                }
                17 => status(
                    [Status::Sent, Status::Delivered, Status::Read][usize::from(act.pick) % 3],
                    None,
                ),
                18 | 19 => status(
                    Status::Failed,
                    Some(
                        [
                            (131_047, None),
                            (10, Some(2_018_278)),
                            (10, Some(2_534_022)),
                            (551, None),
                            (100, None),
                        ][usize::from(act.pick) % 5],
                    ),
                ),
                20 => EventBody::ConversationClosed { by: None },
                21 => EventBody::ConversationReopened { by: None },
                _ => {
                    // A duplicate: one of the last fifty events (not itself a copy) delivered
                    // again now, within R14's seven days of its first delivery.
                    let earlier = &originals[originals.len().saturating_sub(50)..];
                    let original = pick(earlier, act.pick)
                        .map(|i| events[i].clone())
                        .filter(|e| now.since(e.decision_time()) < Span::from_days(6));
                    if let Some(mut again) = original {
                        again.logged_at = Some(now);
                        events.push(again);
                        continue;
                    }
                    EventBody::CustomerMessage
                }
            };
            match &body {
                EventBody::OutboundMessage(_) => messages[c].push(id.clone()),
                EventBody::CustomerComment { comment_id } if !comments[c].contains(comment_id) => {
                    comments[c].push(comment_id.clone())
                }
                _ => {}
            }
            originals.push(events.len());
            events.push(Event {
                id,
                occurred_at,
                logged_at: Some(now),
                conversation: key(act.conversation),
                body,
            });
        }
        events
    }

    /// The default policy, or one with short windows, holds, every alarm, rates on every
    /// tag and the extension, tags that ended early, or the extension off.
    pub fn policies() -> impl Strategy<Value = Policy> {
        (0u8..4, any::<bool>(), any::<bool>()).prop_map(|(variant, hold, greet)| {
            let mut policy = Policy::default();
            let rate = Some(Rate {
                count: 1,
                per: Span::from_hours(12),
            });
            for ch in [&mut policy.messenger, &mut policy.instagram] {
                ch.hold_until_accepted = hold;
            }
            policy.notifier.greet_on_open = greet;
            policy.notifier.remind_customer = greet;
            match variant {
                0 => {}
                1 => {
                    for ch in [
                        &mut policy.whatsapp,
                        &mut policy.messenger,
                        &mut policy.instagram,
                    ] {
                        ch.standard_window = Span::from_hours(1);
                        ch.private_reply_window = Span::from_hours(3);
                        if ch.extension_on() {
                            ch.human_agent_window = Span::from_hours(6);
                        }
                    }
                    policy.notifier.agent_delay = Span::from_minutes(5);
                    policy.notifier.window_closing = Span::from_minutes(10);
                }
                2 => {
                    policy.messenger.human_agent_rate = rate;
                    policy.instagram.human_agent_rate = rate;
                    policy.messenger.tags = TAGS
                        .iter()
                        .map(|&tag| TagPolicy {
                            tag,
                            valid_from: None,
                            valid_until: Some(ventana_tests::scenario::at("+5d")),
                            rate,
                        })
                        .collect();
                }
                _ => {
                    policy.messenger.human_agent_window = Span::ZERO;
                    policy.instagram.human_agent_window = Span::ZERO;
                    policy.messenger.utility_templates = false;
                }
            }
            policy
        })
    }

    /// Folds the log and returns its outputs (every generated event is valid).
    pub fn fold(policy: &Policy, events: &[Event]) -> (ventana_notifier::Fold, Vec<Output>) {
        let mut fold = Fold::new(policy.clone());
        let mut outputs = Vec::new();
        for event in events {
            fold.apply(event, &mut outputs)
                .expect("generated events are valid");
        }
        (fold, outputs)
    }
}

/// Checks the invariants of one folded log; `Err` names the first broken one.
fn invariants(events: &[Event], outputs: &[Output]) -> Result<(), String> {
    use std::collections::{HashMap, HashSet};
    let key_of = |o: &Output| o.conversation.token();
    // Every outbound request (each id once: later copies are duplicates) and nothing else
    // gets exactly one first decision; a held one at most one more, and nothing else does.
    let mut requests: HashSet<(ventana_core::ConversationToken, &str)> = HashSet::new();
    for event in events {
        if let EventBody::OutboundMessage(out) = &event.body {
            if out.origin == ventana_core::Origin::Request {
                requests.insert((event.conversation.token(), event.id.as_str()));
            }
        }
    }
    let mut first: HashMap<(ventana_core::ConversationToken, &str), Vec<&str>> = HashMap::new();
    let mut later: HashMap<(ventana_core::ConversationToken, &str), usize> = HashMap::new();
    let mut failed: HashMap<(ventana_core::ConversationToken, &str), usize> = HashMap::new();
    let mut private_replies: HashMap<(ventana_core::ConversationToken, &str), usize> =
        HashMap::new();
    for output in outputs {
        let (message_id, decision) = match &output.body {
            OutputBody::OutboundAccepted {
                message_id,
                messaging_type,
                comment_id,
                ..
            } => {
                if *messaging_type == MessagingType::PrivateReply {
                    let comment = comment_id
                        .as_deref()
                        .ok_or("a private reply without its comment")?;
                    *private_replies
                        .entry((key_of(output), comment))
                        .or_default() += 1;
                }
                (message_id, "accepted")
            }
            OutputBody::OutboundHeld { message_id, .. } => (message_id, "held"),
            OutputBody::DeliveryFailed {
                message_id, source, ..
            } => {
                *failed.entry((key_of(output), message_id)).or_default() += 1;
                if *source == ventana_notifier::Source::Platform {
                    continue;
                }
                (message_id, "failed")
            }
            _ => continue,
        };
        let id = (key_of(output), message_id.as_str());
        if output.caused_by == *message_id {
            first.entry(id).or_default().push(decision);
        } else {
            *later.entry(id).or_default() += 1;
        }
    }
    for request in &requests {
        match first.get(request).map(Vec::as_slice) {
            Some([_]) => {}
            other => return Err(format!("{request:?} decided {other:?}")),
        }
    }
    for (id, decisions) in &first {
        if !requests.contains(id) {
            return Err(format!(
                "{id:?} is no request but was decided {decisions:?}"
            ));
        }
        let resolutions = later.get(id).copied().unwrap_or(0);
        let may_resolve = decisions == &["held"];
        if resolutions > usize::from(may_resolve) {
            return Err(format!(
                "{id:?} {decisions:?} then {resolutions} more decisions"
            ));
        }
    }
    if let Some((id, n)) = later.iter().find(|(id, _)| !first.contains_key(*id)) {
        return Err(format!(
            "{id:?} got {n} decisions without being decided first"
        ));
    }
    if let Some((id, n)) = failed.iter().find(|(_, n)| **n > 1) {
        return Err(format!("{id:?}: {n} delivery_failed"));
    }
    if let Some((comment, n)) = private_replies.iter().find(|(_, n)| **n > 1) {
        return Err(format!("comment {comment:?}: {n} private replies accepted"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn mixed_logs_keep_every_invariant(acts in mixed::acts(400, 5), policy in mixed::policies()) {
        let events = mixed::log(&acts);
        let (_, outputs) = mixed::fold(&policy, &events);
        if let Err(broken) = invariants(&events, &outputs) {
            return Err(TestCaseError::fail(broken));
        }
    }

    #[test]
    fn mixed_logs_split_and_continued_from_encoded_states_equal_the_whole(
        acts in mixed::acts(300, 5), at in any::<prop::sample::Index>(), policy in mixed::policies()
    ) {
        let events = mixed::log(&acts);
        let split = at.index(events.len() + 1);
        let (first, mut outputs) = mixed::fold(&policy, &events[..split]);
        let mut second = Fold::new(policy.clone());
        for conversation in first.conversations() {
            second.restore(decode_state(&encode_state(conversation)).unwrap());
        }
        for event in &events[split..] {
            second.apply(event, &mut outputs).unwrap();
        }
        let (whole, whole_outputs) = mixed::fold(&policy, &events);
        prop_assert_eq!(printed(&second, &outputs), printed(&whole, &whole_outputs));
    }
}

/// The bound of docs/rules.md §1.4 point 4: however long a conversation gets, its encoded
/// state stays under this, for traffic like a busy support conversation's (an event every
/// 10 min to 6 h, a few dozen a week; R14's dedupe keeps every id of the last week, so the
/// bound depends on the week's traffic, not on the length).
const STATE_BOUND: usize = 16 * 1024;

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn a_conversation_fed_10_000_events_stays_under_a_fixed_size(
        acts in prop::collection::vec((0u32..(6 * 3600), 0..mixed::KINDS, any::<u16>()), 10_000),
        policy in mixed::policies(),
    ) {
        let acts: Vec<mixed::Act> = acts
            .into_iter()
            .map(|(gap, what, pick)| mixed::Act {
                conversation: 1,
                gap_seconds: 600 + gap,
                what,
                late_seconds: 0,
                pick,
            })
            .collect();
        let events = mixed::log(&acts);
        let mut fold = Fold::new(policy.clone());
        let mut largest = 0;
        for event in &events {
            fold.apply(event, &mut Vec::new()).unwrap();
            let conversation = fold.conversation(&event.conversation).unwrap();
            largest = largest.max(encode_state(conversation).len());
        }
        prop_assert!(largest <= STATE_BOUND, "largest encoded state {} B", largest);
    }
}
