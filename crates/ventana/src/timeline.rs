//! One conversation's history as data: a [`Timeline`] of [`Row`]s — every event (and every
//! deadline that fired) with the view before and after and the [`Ruling`]s on outbound
//! messages. `explain` prints it as a table, `html` draws it.

use ventana_core::{
    Acceptance, Channel, Conversation, ConversationKey, ConversationToken, Event, EventBody,
    Origin, Policy, Rule, Timestamp, View,
};
use ventana_notifier::{Output, OutputBody, Source, fold_event};

use crate::grid::short_time;
use crate::log::{Logged, Position, valid};
use crate::table::{last_view, sender_and_kind};

/// Who a row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Customer,
    Business,
    Platform,
    Operator,
    /// A deadline passed (a window closed, an alarm rang).
    Deadline,
}

impl Actor {
    /// Every actor.
    pub const ALL: [Actor; 5] = [
        Actor::Customer,
        Actor::Business,
        Actor::Platform,
        Actor::Operator,
        Actor::Deadline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Customer => "customer",
            Actor::Business => "business",
            Actor::Platform => "platform",
            Actor::Operator => "operator",
            Actor::Deadline => "deadline",
        }
    }
}

/// What became of one outbound message, as `explain` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Held,
    NotDelivered,
}

impl Outcome {
    /// `delivered`, `held`, `not delivered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Held => "held",
            Self::NotDelivered => "not delivered",
        }
    }

    /// The CSS class of the page (`verdict-delivered`, `verdict-held`, `verdict-failed`).
    pub fn class(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Held => "held",
            Self::NotDelivered => "failed",
        }
    }
}

/// What was decided about one outbound message, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruling {
    pub message_id: String,
    pub outcome: Outcome,
    /// e.g. `response`, `message_tag human_agent`, or the failure reason.
    pub how: String,
    /// The rule that decided it.
    pub rule: Rule,
    pub detail: Option<String>,
    pub suggestion: Option<String>,
}

impl Ruling {
    pub fn delivered(&self) -> bool {
        self.outcome == Outcome::Delivered
    }

    pub fn failed(&self) -> bool {
        self.outcome == Outcome::NotDelivered
    }

    fn of(output: &Output, channel: &Channel) -> Option<Self> {
        let decided = output.body.decision()?;
        let message_id = decided.message_id().to_owned();
        Some(match &output.body {
            OutputBody::OutboundAccepted {
                messaging_type,
                tag,
                comment_id,
                window_ends_at,
                ..
            } => Ruling {
                message_id,
                outcome: Outcome::Delivered,
                how: match tag {
                    Some(tag) => format!("{} {}", messaging_type.as_str(), tag.as_str()),
                    None => messaging_type.as_str().to_owned(),
                },
                rule: Acceptance {
                    messaging_type: *messaging_type,
                    tag: *tag,
                    comment_id: comment_id.clone(),
                    window_ends_at: *window_ends_at,
                }
                .rule(channel),
                detail: None,
                suggestion: None,
            },
            OutputBody::OutboundHeld { until, .. } => Ruling {
                message_id,
                outcome: Outcome::Held,
                how: format!("until {}", short_time(*until)),
                rule: Rule::R11,
                detail: Some(format!(
                    "{}: the private reply has been used; the message waits until the customer writes a direct message, at the latest until {}.",
                    Rule::R11,
                    short_time(*until)
                )),
                suggestion: None,
            },
            OutputBody::DeliveryFailed {
                source,
                reason,
                detail,
                suggestion,
                ..
            } => Ruling {
                message_id,
                outcome: Outcome::NotDelivered,
                how: reason.as_str().to_owned(),
                rule: match source {
                    Source::Platform => Rule::R13,
                    Source::Policy => reason.rule(),
                },
                detail: Some(detail.clone()),
                suggestion: Some(suggestion.as_str().to_owned()),
            },
            _ => return None,
        })
    }
}

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub at: Timestamp,
    /// Where the event is in the log (`None` for a deadline).
    pub position: Option<Position>,
    pub actor: Actor,
    pub what: String,
    pub event_id: Option<String>,
    pub duplicate: bool,
    pub before: View,
    pub after: View,
    pub decisions: Vec<Ruling>,
    /// Auto-reply requests and warnings.
    pub notes: Vec<String>,
}

/// One conversation's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub key: Option<ConversationKey>,
    pub token: Option<ConversationToken>,
    pub rows: Vec<Row>,
    /// Log entries of this conversation that are not valid events.
    pub invalid: Vec<String>,
}

fn describe_event(event: &Event) -> (Actor, String) {
    match &event.body {
        EventBody::CustomerMessage => (Actor::Customer, "customer message".to_owned()),
        EventBody::CustomerComment { comment_id } => {
            (Actor::Customer, format!("customer comment {comment_id}"))
        }
        EventBody::OutboundMessage(out) => {
            let tag = out
                .tag
                .map_or(String::new(), |t| format!(" (tag {})", t.as_str()));
            let echo = if out.origin == Origin::Echo {
                ", sent outside ventana (echo)"
            } else {
                ""
            };
            (
                Actor::Business,
                format!("{} {}{tag}{echo}", sender_and_kind(out), event.id),
            )
        }
        EventBody::DeliveryStatus(status) => (
            Actor::Platform,
            match &status.error {
                Some(error) => format!(
                    "{} {} (error {}{})",
                    status.message_id,
                    status.status.as_str(),
                    error.code,
                    error
                        .title
                        .as_deref()
                        .map_or(String::new(), |t| format!(": {t}"))
                ),
                None => format!("{} {}", status.message_id, status.status.as_str()),
            },
        ),
        EventBody::ConversationClosed { .. } => (Actor::Operator, "conversation closed".to_owned()),
        EventBody::ConversationReopened { .. } => {
            (Actor::Operator, "conversation reopened".to_owned())
        }
        EventBody::Tick { .. } => (Actor::Deadline, "tick".to_owned()),
    }
}

fn note(output: &Output) -> Option<String> {
    match &output.body {
        OutputBody::AutoReply { trigger, reply_by } => Some(format!(
            "auto-reply requested ({}), reply by {}",
            trigger.as_str(),
            reply_by.map_or("-".to_owned(), short_time)
        )),
        OutputBody::WindowClosing {
            closes_at,
            customer_waiting,
        } => Some(format!(
            "warning: the window closes at {}{}",
            short_time(*closes_at),
            if *customer_waiting {
                " and the customer is waiting"
            } else {
                ""
            }
        )),
        _ => None,
    }
}

/// What a deadline row says happened.
fn describe_deadline(before: View, after: View, outputs: &[&Output]) -> String {
    if before.window != after.window || before.window_ends_at != after.window_ends_at {
        if let Some(end) = before
            .window_ends_at
            .filter(|_| before.window.as_str() != "none")
        {
            return format!(
                "the {} window closed at {}",
                before.window.as_str(),
                short_time(end)
            );
        }
        return "the window changed".to_owned();
    }
    let mut what = Vec::new();
    for output in outputs {
        match &output.body {
            OutputBody::DeliveryFailed { .. } => what.push("a held message's hold expired"),
            OutputBody::WindowClosing { .. } => what.push("the window is about to close"),
            OutputBody::AutoReply { trigger, .. } if trigger.as_str() == "agent_delayed" => {
                what.push("the customer has waited the agent delay")
            }
            _ => {}
        }
    }
    if what.is_empty() {
        "a deadline passed".to_owned()
    } else {
        what.join("; ")
    }
}

impl Timeline {
    /// Folds the events of `token` in `log` (other conversations' events are skipped).
    pub fn build(
        log: impl Iterator<Item = anyhow::Result<Logged>>,
        token: ConversationToken,
        policy: &Policy,
    ) -> anyhow::Result<Self> {
        let mut timeline = Timeline {
            token: Some(token),
            ..Timeline::default()
        };
        let mut conversation: Option<Conversation> = None;
        let mut outputs = Vec::new();
        for logged in log {
            let Logged { position, event } = logged?;
            let event = match valid(event, policy) {
                Ok(event) if event.conversation.token() == token => event,
                Ok(_) => continue,
                Err(error) => {
                    // Only the stream is read by subject: a bad line of a file may belong to
                    // any conversation.
                    if matches!(position, Position::Sequence(_)) {
                        timeline.invalid.push(format!("{position}: {error}"));
                    }
                    continue;
                }
            };
            let conversation =
                conversation.get_or_insert_with(|| Conversation::new(event.conversation.clone()));
            timeline.key = Some(event.conversation.clone());
            let mut view = conversation.view();
            outputs.clear();
            let token = event.conversation.token();
            let applied = fold_event(conversation, token, &event, policy, &mut outputs);
            // Deadlines that passed before the event: one row per deadline.
            let first_own = outputs
                .iter()
                .position(|o| o.caused_by == event.id)
                .unwrap_or(outputs.len());
            let (fired, own) = outputs.split_at(first_own);
            for group in fired.chunk_by(|a, b| a.caused_by == b.caused_by) {
                let group: Vec<&Output> = group.iter().collect();
                let after = last_view(&group).unwrap_or(view);
                timeline.rows.push(Row {
                    at: group[0].occurred_at,
                    position: None,
                    actor: Actor::Deadline,
                    what: describe_deadline(view, after, &group),
                    event_id: None,
                    duplicate: false,
                    before: view,
                    after,
                    decisions: group
                        .iter()
                        .filter_map(|o| Ruling::of(o, &event.conversation.channel))
                        .collect(),
                    notes: group.iter().filter_map(|o| note(o)).collect(),
                });
                view = after;
            }
            if matches!(event.body, EventBody::Tick { .. }) {
                continue; // a logged tick shows as the deadlines it fired
            }
            let own: Vec<&Output> = own.iter().collect();
            let (actor, what) = describe_event(&event);
            timeline.rows.push(Row {
                at: event.decision_time(),
                position: Some(position),
                actor,
                what,
                event_id: Some(event.id.clone()),
                duplicate: applied == ventana_core::Applied::Duplicate,
                before: view,
                after: conversation.view(),
                decisions: own
                    .iter()
                    .filter_map(|o| Ruling::of(o, &event.conversation.channel))
                    .collect(),
                notes: own.iter().filter_map(|o| note(o)).collect(),
            });
        }
        Ok(timeline)
    }

    /// The rows deciding `message_id`.
    pub fn decisions_of(&self, message_id: &str) -> Vec<(&Row, &Ruling)> {
        self.rows
            .iter()
            .flat_map(|row| row.decisions.iter().map(move |d| (row, d)))
            .filter(|(_, d)| d.message_id == message_id)
            .collect()
    }
}
