//! ventana-sim: realistic mixed traffic as input events: customers writing and commenting, agents and
//! automation answering (sometimes too late), templates, tags, private and public replies,
//! echoes, delivery reports with platform errors, operators closing and reopening; customer
//! messages sometimes arriving late. Used by the property tests (as shrinkable [`Step`]s),
//! the benchmarks and `ventana dev` (from a seed).
#![forbid(unsafe_code)]

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

fn outbound(sender: Sender, kind: MessageKind, tag: Option<Tag>) -> Outbound {
    Outbound {
        sender,
        kind,
        tag,
        comment_id: None,
        origin: Origin::Request,
    }
}

/// Turns steps into a log: decision times (`logged_at`) never go back, as in the live log.
pub fn build_log(steps: &[Step]) -> Vec<Event> {
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
            conversation: key(step.conversation),
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
