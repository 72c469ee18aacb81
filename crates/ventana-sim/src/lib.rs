//! ventana-sim: realistic mixed traffic as input events: customers writing and commenting,
//! agents and automation answering (sometimes too late), templates, tags, private and public
//! replies, echoes, delivery reports with platform errors, operators closing and reopening;
//! customer messages sometimes arriving late, webhooks sometimes delivered twice. Used by the
//! property tests (as shrinkable [`Step`]s), the benchmarks, `ventana dev` and the
//! `ventana-sim` binary ([`simulate`] from a seed; [`live`] publishes it in real time).
#![forbid(unsafe_code)]

pub mod live;

use std::collections::HashMap;

use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound,
    PlatformError, Sender, Span, Status, Tag, Timestamp,
};

/// The instant generated traffic starts at: 2026-03-02T10:00:00Z.
pub const T0: Timestamp = Timestamp::from_unix_seconds(1_772_445_600);

/// One step of traffic: which conversation, how long after the previous step, what happens,
/// and how late (for customer messages) the platform delivered it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub conversation: u32,
    pub gap_seconds: u32,
    pub action: u8,
    pub late_seconds: u16,
}

/// How many distinct actions [`Step::action`] selects from.
pub const ACTIONS: u8 = 20;

pub fn key(index: u32) -> ConversationKey {
    let channel = match index % 7 {
        0..=2 => Channel::WhatsApp,
        3..=4 => Channel::Messenger,
        5 => Channel::Instagram,
        _ => Channel::Custom("sms".into()),
    };
    ConversationKey::new(
        channel,
        "acme",
        format!("page-{}", index % 3),
        format!("contact-{index}"),
    )
}

/// An outbound request (not an echo) with no comment.
pub fn outbound(sender: Sender, kind: MessageKind, tag: Option<Tag>) -> Outbound {
    Outbound {
        sender,
        kind,
        tag,
        comment_id: None,
        origin: Origin::Request,
    }
}

/// Conversation `index` on one of Meta's three channels (no `custom:` ones): half WhatsApp,
/// a third Messenger, a sixth Instagram.
pub fn meta_key(index: u32) -> ConversationKey {
    let channel = match index % 6 {
        0..=2 => Channel::WhatsApp,
        3..=4 => Channel::Messenger,
        _ => Channel::Instagram,
    };
    ConversationKey::new(
        channel,
        "acme",
        format!("page-{}", index % 3),
        format!("contact-{index}"),
    )
}

/// Turns steps into a log: decision times (`logged_at`) never go back, as in the live log.
pub fn build_log(steps: &[Step]) -> Vec<Event> {
    build_log_keyed(steps, key)
}

/// [`build_log`] with conversation `i` named `key_of(i)`.
pub fn build_log_keyed(steps: &[Step], key_of: fn(u32) -> ConversationKey) -> Vec<Event> {
    let mut now = T0;
    let mut events = Vec::with_capacity(steps.len());
    // Per conversation: the last outbound message id and the last comment id, for statuses
    // and replies to comments.
    let mut recent: HashMap<u32, (Option<String>, Option<String>)> = HashMap::new();
    for (n, step) in steps.iter().enumerate() {
        now = now.plus(Span::from_seconds(i64::from(step.gap_seconds)));
        let id = format!("e{n}");
        let (outbound_id, comment_id) = recent.get(&step.conversation).cloned().unwrap_or_default();
        let status = |status, error| {
            EventBody::DeliveryStatus(DeliveryStatus {
                message_id: outbound_id.clone().unwrap_or_else(|| "unknown".into()),
                status,
                error,
            })
        };
        let mut occurred_at = now;
        let body = match step.action {
            0..=4 => {
                occurred_at = now.minus(Span::from_seconds(i64::from(step.late_seconds)));
                EventBody::CustomerMessage
            }
            5 => EventBody::CustomerComment {
                comment_id: id.clone(),
            },
            6 | 7 => {
                EventBody::OutboundMessage(outbound(Sender::Agent, MessageKind::Message, None))
            }
            8 => {
                EventBody::OutboundMessage(outbound(Sender::Automation, MessageKind::Message, None))
            }
            9 => EventBody::OutboundMessage(outbound(
                Sender::Agent,
                MessageKind::Message,
                Some(Tag::HumanAgent),
            )),
            10 => EventBody::OutboundMessage(outbound(
                Sender::Automation,
                MessageKind::Message,
                Some(if n % 2 == 0 {
                    Tag::AccountUpdate
                } else {
                    Tag::PostPurchaseUpdate
                }),
            )),
            11 => EventBody::OutboundMessage(outbound(
                Sender::Automation,
                MessageKind::Template,
                None,
            )),
            12 => EventBody::OutboundMessage(Outbound {
                comment_id: Some(comment_id.unwrap_or_else(|| "unknown".into())),
                ..outbound(Sender::Agent, MessageKind::PrivateReply, None)
            }),
            13 => EventBody::OutboundMessage(Outbound {
                comment_id: comment_id.clone(),
                ..outbound(Sender::Agent, MessageKind::CommentReply, None)
            }),
            14 => EventBody::OutboundMessage(Outbound {
                origin: Origin::Echo,
                ..outbound(Sender::Agent, MessageKind::Message, None)
            }),
            15 => status(Status::Delivered, None),
            16 => status(Status::Read, None),
            17 => status(
                Status::Failed,
                Some(PlatformError {
                    code: if n % 3 == 0 {
                        551
                    } else if n % 3 == 1 {
                        131_047
                    } else {
                        10
                    },
                    subcode: Some(2_018_278),
                    title: None,
                }),
            ),
            18 => EventBody::ConversationClosed { by: None },
            _ => EventBody::ConversationReopened { by: None },
        };
        let memory = recent.entry(step.conversation).or_default();
        match &body {
            EventBody::OutboundMessage(_) => memory.0 = Some(id.clone()),
            EventBody::CustomerComment { .. } => memory.1 = Some(id.clone()),
            _ => {}
        }
        events.push(Event {
            id,
            occurred_at,
            logged_at: Some(now),
            conversation: key_of(step.conversation),
            body,
        });
    }
    events
}

/// A small, fast, seeded generator (SplitMix64) so benchmark logs are reproducible.
#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `events` steps over `conversations` conversations, spread over about `days` days.
///
/// Traffic is bursty, as support traffic is: nine steps in ten continue one of the ~2 000
/// conversations active at the moment (a customer and an agent going back and forth); one
/// in ten starts the next conversation, which joins the active set in place of a random one.
/// With 10 events per conversation on average, every conversation of the range is used.
pub fn seeded_steps(seed: u64, events: usize, conversations: u32, days: u32) -> Vec<Step> {
    const ACTIVE: usize = 2_000;
    let mut rng = SplitMix::new(seed);
    let max_gap = 2 * u64::from(days) * 86_400 / events.max(1) as u64 + 1;
    let mut started = 0u32;
    let mut active: Vec<u32> = Vec::with_capacity(ACTIVE);
    (0..events)
        .map(|_| {
            let conversation = if active.is_empty() || rng.below(10) == 0 {
                // A stride coprime with any range below 2^31 spreads new conversations over
                // the whole key range.
                let next =
                    (u64::from(started) * 2_654_435_761 % u64::from(conversations.max(1))) as u32;
                started += 1;
                if active.len() < ACTIVE {
                    active.push(next);
                } else {
                    let slot = rng.below(ACTIVE as u64) as usize;
                    active[slot] = next;
                }
                next
            } else {
                active[rng.below(active.len() as u64) as usize]
            };
            Step {
                conversation,
                gap_seconds: rng.below(max_gap) as u32,
                action: rng.below(u64::from(ACTIONS)) as u8,
                late_seconds: if rng.below(10) == 0 {
                    rng.below(3_600) as u16
                } else {
                    0
                },
            }
        })
        .collect()
}

/// The instant the last step of `steps` happens at.
pub fn end_of(steps: &[Step]) -> Timestamp {
    T0.plus(Span::from_seconds(
        steps.iter().map(|s| i64::from(s.gap_seconds)).sum(),
    ))
}

/// What traffic to make.
#[derive(Clone, Debug)]
pub struct Mix {
    pub seed: u64,
    pub events: usize,
    pub conversations: u32,
    /// The simulated time the traffic spreads over.
    pub days: u32,
    /// Percent of events delivered twice (Meta retrying a webhook), a little later.
    pub duplicate_percent: u32,
    /// Also `custom:sms` conversations (no window), besides WhatsApp, Messenger, Instagram.
    pub custom_channel: bool,
}

/// The traffic of `mix` on a simulated timeline from [`T0`] (`logged_at` set): bursty
/// conversations, late customer messages, platform failures, and duplicates; each channel's
/// traffic what its platform allows (see [`fit_to_channels`]).
pub fn simulate(mix: &Mix) -> Vec<Event> {
    let steps = seeded_steps(mix.seed, mix.events, mix.conversations, mix.days);
    let key_of = if mix.custom_channel { key } else { meta_key };
    with_duplicates(
        fit_to_channels(build_log_keyed(&steps, key_of)),
        mix.duplicate_percent,
        mix.seed,
    )
}

/// Turns raw steps (which try everything everywhere, as the property tests want) into what
/// each platform lets happen, so a demo teaches the rules:
/// - WhatsApp has no comments: comments become messages, private and public replies to
///   comments become plain agent messages, and no message carries a tag.
/// - Instagram has no templates and no Messenger tags (only `human_agent`): templates and
///   Messenger-tagged messages become untagged automation messages.
/// - A private or public reply answers a comment the customer made in that conversation;
///   without one it is a plain agent message.
/// - Only a closed conversation is reopened (otherwise the customer writes), and a closed
///   one is not closed again (it is reopened).
pub fn fit_to_channels(events: Vec<Event>) -> Vec<Event> {
    let mut closed: HashMap<ConversationKey, bool> = HashMap::new();
    let mut commented: HashMap<ConversationKey, String> = HashMap::new();
    events
        .into_iter()
        .map(|mut event| {
            let channel = event.conversation.channel.clone();
            let is_closed = closed.entry(event.conversation.clone()).or_default();
            let plain_agent =
                || EventBody::OutboundMessage(outbound(Sender::Agent, MessageKind::Message, None));
            event.body = match event.body {
                EventBody::CustomerComment { .. } if channel == Channel::WhatsApp => {
                    EventBody::CustomerMessage
                }
                EventBody::OutboundMessage(out)
                    if matches!(
                        out.kind,
                        MessageKind::PrivateReply | MessageKind::CommentReply
                    ) =>
                {
                    match commented.get(&event.conversation) {
                        Some(comment) if channel != Channel::WhatsApp => {
                            EventBody::OutboundMessage(Outbound {
                                comment_id: Some(comment.clone()),
                                ..out
                            })
                        }
                        _ => plain_agent(),
                    }
                }
                EventBody::OutboundMessage(mut out) => {
                    match channel {
                        Channel::WhatsApp => out.tag = None,
                        Channel::Instagram => {
                            if out.kind == MessageKind::Template {
                                out.kind = MessageKind::Message;
                            }
                            if out.tag.is_some_and(|t| t != Tag::HumanAgent) {
                                out.tag = None;
                            }
                        }
                        _ => {}
                    }
                    EventBody::OutboundMessage(out)
                }
                EventBody::ConversationReopened { .. } if !*is_closed => EventBody::CustomerMessage,
                EventBody::ConversationClosed { by } if *is_closed => {
                    EventBody::ConversationReopened { by }
                }
                body => body,
            };
            match &event.body {
                EventBody::CustomerMessage | EventBody::ConversationReopened { .. } => {
                    *is_closed = false;
                }
                EventBody::CustomerComment { comment_id } => {
                    *is_closed = false;
                    commented.insert(event.conversation.clone(), comment_id.clone());
                }
                EventBody::ConversationClosed { .. } => *is_closed = true,
                _ => {}
            }
            event
        })
        .collect()
}

/// Delivers `percent` of the events a second time (same id, same content), 1 to 50 events
/// later, as Meta does when it retries a webhook; the copy is logged when it arrives.
pub fn with_duplicates(events: Vec<Event>, percent: u32, seed: u64) -> Vec<Event> {
    if percent == 0 {
        return events;
    }
    let mut rng = SplitMix::new(seed ^ 0xD0D0);
    let mut pending: Vec<(usize, Event)> = Vec::new();
    let mut out = Vec::with_capacity(events.len() + events.len() * percent as usize / 100);
    for (n, event) in events.into_iter().enumerate() {
        let mut due = Vec::new();
        pending.retain(|(at, copy)| {
            let now = *at <= n;
            if now {
                due.push(copy.clone());
            }
            !now
        });
        for mut copy in due {
            copy.logged_at = event.logged_at;
            out.push(copy);
        }
        if rng.below(100) < u64::from(percent) {
            pending.push((n + 1 + rng.below(50) as usize, event.clone()));
        }
        out.push(event);
    }
    let last = out.last().and_then(|e| e.logged_at);
    out.extend(pending.into_iter().map(|(_, mut copy)| {
        copy.logged_at = last;
        copy
    }));
    out
}

/// Moves a simulated event to the real time `at`: it happened now (late messages still as
/// late), the log will say when it was logged, and every id it has or names gets `run`'s
/// prefix so another run's events are not duplicates of this one's.
pub fn stamp_live(mut event: Event, at: Timestamp, run: &str) -> Event {
    let lateness = event
        .logged_at
        .map_or(Span::ZERO, |logged| logged.since(event.occurred_at));
    event.occurred_at = at.minus(lateness);
    event.logged_at = None;
    let prefixed = |id: &mut String| *id = format!("{run}-{id}");
    prefixed(&mut event.id);
    match &mut event.body {
        EventBody::DeliveryStatus(status) => prefixed(&mut status.message_id),
        EventBody::CustomerComment { comment_id } => prefixed(comment_id),
        EventBody::OutboundMessage(out) => {
            if let Some(comment) = &mut out.comment_id {
                prefixed(comment);
            }
        }
        _ => {}
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(duplicate_percent: u32) -> Mix {
        Mix {
            seed: 3,
            events: 5_000,
            conversations: 300,
            days: 2,
            duplicate_percent,
            custom_channel: false,
        }
    }

    #[test]
    fn traffic_is_reproducible_meta_only_and_in_log_order() {
        let events = simulate(&mix(0));
        assert_eq!(events, simulate(&mix(0)));
        assert_eq!(events.len(), 5_000);
        assert!(events.windows(2).all(|w| w[0].logged_at <= w[1].logged_at));
        for channel in [Channel::WhatsApp, Channel::Messenger, Channel::Instagram] {
            assert!(events.iter().any(|e| e.conversation.channel == channel));
        }
        assert!(
            !events
                .iter()
                .any(|e| matches!(e.conversation.channel, Channel::Custom(_)))
        );
        let late = events
            .iter()
            .filter(|e| e.logged_at != Some(e.occurred_at))
            .count();
        assert!(late > 50, "some customer messages arrive late: {late}");
    }

    #[test]
    fn duplicates_repeat_earlier_events_later_in_time_order() {
        let events = simulate(&mix(5));
        let originals = simulate(&mix(0));
        let extra = events.len() - originals.len();
        assert!((150..=350).contains(&extra), "about 5 %: {extra}");
        let mut seen = std::collections::HashSet::new();
        let mut repeats = 0;
        for event in &events {
            if !seen.insert(&event.id) {
                repeats += 1;
                let original = originals.iter().find(|o| o.id == event.id).unwrap();
                assert_eq!(original.body, event.body);
                assert!(event.logged_at >= original.logged_at);
            }
        }
        assert_eq!(repeats, extra);
        assert!(events.windows(2).all(|w| w[0].logged_at <= w[1].logged_at));
    }

    #[test]
    fn live_stamps_keep_references_and_lateness() {
        let at = Timestamp::from_unix_seconds(1_800_000_000);
        let events = simulate(&mix(0));
        let late = events
            .iter()
            .find(|e| e.logged_at != Some(e.occurred_at))
            .unwrap()
            .clone();
        let lateness = late.logged_at.unwrap().since(late.occurred_at);
        let live = stamp_live(late, at, "r1");
        assert_eq!(live.occurred_at, at.minus(lateness));
        assert_eq!(live.logged_at, None);
        let status = events
            .iter()
            .find(|e| matches!(&e.body, EventBody::DeliveryStatus(s) if s.message_id != "unknown"))
            .unwrap()
            .clone();
        let live = stamp_live(status, at, "r1");
        let EventBody::DeliveryStatus(report) = &live.body else {
            unreachable!()
        };
        assert!(live.id.starts_with("r1-e") && report.message_id.starts_with("r1-e"));
    }
}
