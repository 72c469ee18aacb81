//! A small given/when/then language for rule scenarios.
//!
//! Times are offsets from [`T0`] (`"+24h"`, `"+23h59m59s"`, `"+7d"`); outputs are rendered
//! as one compact line each, with every field but the id and the conversation, so a
//! scenario states the exact outputs it expects.

use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound,
    PlatformError, Policy, Sender, Span, Status, Tag, Timestamp,
};
use ventana_notifier::{Fold, Output, OutputBody};

/// The instant every scenario starts at: 2026-03-02T10:00:00Z (a Monday, before the
/// Messenger tag deprecation).
pub const T0: Timestamp = ventana_sim::T0;

/// Reads `+1d2h3m4s`-style offsets (any of the parts, in that order; `-` for before T0).
pub fn offset(text: &str) -> Span {
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => panic!("offset {text:?} must start with + or -"),
    };
    let mut total = 0i64;
    let mut number = String::new();
    for c in rest.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number
            .parse()
            .unwrap_or_else(|_| panic!("bad offset {text:?}"));
        number.clear();
        total += match c {
            'd' => Span::from_days(n),
            'h' => Span::from_hours(n),
            'm' => Span::from_minutes(n),
            's' => Span::from_seconds(n),
            _ => panic!("bad unit {c:?} in {text:?}"),
        }
        .nanos();
    }
    assert!(number.is_empty(), "offset {text:?} ends without a unit");
    Span::from_nanos(sign * total)
}

pub fn at(text: &str) -> Timestamp {
    T0.plus(offset(text))
}

/// Prints an instant as an offset from T0, in the form [`offset`] reads.
pub fn show_instant(t: Timestamp) -> String {
    let nanos = t.since(T0).nanos();
    let (sign, mut seconds) = if nanos < 0 {
        ("-", -nanos / 1_000_000_000)
    } else {
        ("+", nanos / 1_000_000_000)
    };
    let mut text = String::from(sign);
    // Days only from two on, so that "+24h" and "+25h" read as the rules are written.
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size && !(unit == "d" && seconds < 2 * size) {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if text.len() == 1 {
        text.push_str("0s");
    }
    text
}

/// An input event under construction.
#[derive(Clone, Debug)]
pub struct E {
    id: String,
    occurred: Timestamp,
    logged: Option<Timestamp>,
    body: EventBody,
}

fn event(id: &str, when: &str, body: EventBody) -> E {
    E {
        id: id.to_owned(),
        occurred: at(when),
        logged: None,
        body,
    }
}

fn outbound(id: &str, when: &str, sender: Sender) -> E {
    event(
        id,
        when,
        EventBody::OutboundMessage(Outbound {
            sender,
            kind: MessageKind::Message,
            tag: None,
            comment_id: None,
            origin: Origin::Request,
        }),
    )
}

pub fn customer(id: &str, when: &str) -> E {
    event(id, when, EventBody::CustomerMessage)
}

pub fn comment(id: &str, comment_id: &str, when: &str) -> E {
    event(
        id,
        when,
        EventBody::CustomerComment {
            comment_id: comment_id.to_owned(),
        },
    )
}

/// A free-form message from a human agent.
pub fn agent(id: &str, when: &str) -> E {
    outbound(id, when, Sender::Agent)
}

/// A free-form message from automation.
pub fn bot(id: &str, when: &str) -> E {
    outbound(id, when, Sender::Automation)
}

pub fn status(id: &str, message_id: &str, status: Status, when: &str) -> E {
    event(
        id,
        when,
        EventBody::DeliveryStatus(DeliveryStatus {
            message_id: message_id.to_owned(),
            status,
            error: None,
        }),
    )
}

pub fn close(id: &str, when: &str) -> E {
    event(
        id,
        when,
        EventBody::ConversationClosed {
            by: Some("op".into()),
        },
    )
}

pub fn reopen(id: &str, when: &str) -> E {
    event(id, when, EventBody::ConversationReopened { by: None })
}

/// A `tick`: lets time pass to `when`.
pub fn tick(when: &str) -> E {
    event(
        &format!("tick-{when}"),
        when,
        EventBody::Tick { at: at(when) },
    )
}

impl E {
    fn outbound_mut(&mut self) -> &mut Outbound {
        match &mut self.body {
            EventBody::OutboundMessage(out) => out,
            _ => panic!("{} is not an outbound message", self.id),
        }
    }

    pub fn tag(mut self, tag: Tag) -> Self {
        self.outbound_mut().tag = Some(tag);
        self
    }

    pub fn kind(mut self, kind: MessageKind) -> Self {
        self.outbound_mut().kind = kind;
        self
    }

    pub fn template(self) -> Self {
        self.kind(MessageKind::Template)
    }

    pub fn on_comment(mut self, comment_id: &str) -> Self {
        self.outbound_mut().comment_id = Some(comment_id.to_owned());
        self
    }

    pub fn echo(mut self) -> Self {
        self.outbound_mut().origin = Origin::Echo;
        self
    }

    /// The platform error of a `failed` status.
    pub fn error(mut self, code: i64, subcode: Option<i64>) -> Self {
        match &mut self.body {
            EventBody::DeliveryStatus(s) => {
                s.error = Some(PlatformError {
                    code,
                    subcode,
                    title: Some("test".into()),
                })
            }
            _ => panic!("{} is not a delivery status", self.id),
        }
        self
    }

    /// Received (logged) at `when`, which becomes its decision time.
    pub fn logged(mut self, when: &str) -> Self {
        self.logged = Some(at(when));
        self
    }

    pub fn build(&self, conversation: &ConversationKey) -> Event {
        Event {
            id: self.id.clone(),
            occurred_at: self.occurred,
            logged_at: self.logged,
            conversation: conversation.clone(),
            body: self.body.clone(),
        }
    }
}

/// Renders an output with every field but its id and conversation.
pub fn show(output: &Output) -> String {
    let cause = match output.caused_by.strip_prefix("tick:") {
        Some(instant) => format!(
            "tick {}",
            show_instant(Timestamp::parse_rfc3339(instant).unwrap())
        ),
        None => output.caused_by.clone(),
    };
    let opt = |t: Option<Timestamp>| t.map_or("none".to_owned(), show_instant);
    let what = match &output.body {
        OutputBody::StateChanged {
            from,
            to,
            window,
            window_ends_at,
            session,
        } => format!(
            "state {}->{} {} ends={} session={session}",
            from.as_str(),
            to.as_str(),
            window.as_str(),
            opt(*window_ends_at)
        ),
        OutputBody::OutboundAccepted {
            message_id,
            messaging_type,
            tag,
            comment_id,
            window_ends_at,
        } => {
            let mut text = format!("accepted {message_id} {}", messaging_type.as_str());
            if let Some(tag) = tag {
                text.push_str(&format!(" tag={}", tag.as_str()));
            }
            if let Some(comment) = comment_id {
                text.push_str(&format!(" comment={comment}"));
            }
            text.push_str(&format!(" ends={}", opt(*window_ends_at)));
            text
        }
        OutputBody::OutboundHeld { message_id, until } => {
            format!("held {message_id} until={}", show_instant(*until))
        }
        OutputBody::DeliveryFailed {
            message_id,
            source,
            reason,
            suggestion,
            error,
            ..
        } => {
            let mut text = format!(
                "failed {message_id} {} {} suggest={}",
                source.as_str(),
                reason.as_str(),
                suggestion.as_str()
            );
            if let Some(error) = error {
                text.push_str(&format!(" error={}", error.code));
            }
            text
        }
        OutputBody::AutoReply { trigger, reply_by } => {
            format!(
                "auto_reply {} reply_by={}",
                trigger.as_str(),
                opt(*reply_by)
            )
        }
        OutputBody::WindowClosing {
            closes_at,
            customer_waiting,
        } => format!(
            "window_closing closes={} waiting={customer_waiting}",
            show_instant(*closes_at)
        ),
    };
    format!("@{} {cause}: {what}", show_instant(output.occurred_at))
}

/// One channel and policy to run scenarios on.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub key: ConversationKey,
    pub policy: Policy,
}

impl Scenario {
    pub fn on(channel: Channel) -> Self {
        Self {
            key: ConversationKey::new(channel, "acme", "page-1", "contact-1"),
            policy: Policy::default(),
        }
    }

    pub fn whatsapp() -> Self {
        Self::on(Channel::WhatsApp)
    }

    pub fn messenger() -> Self {
        Self::on(Channel::Messenger)
    }

    pub fn instagram() -> Self {
        Self::on(Channel::Instagram)
    }

    /// With the notifier's alarms off, so a scenario sees only what its rule does.
    pub fn quiet(mut self) -> Self {
        self.policy.notifier.agent_delay = Span::ZERO;
        self.policy.notifier.window_closing = Span::ZERO;
        self
    }

    pub fn with(mut self, change: impl FnOnce(&mut Policy)) -> Self {
        change(&mut self.policy);
        self
    }

    /// Folds `given`, then `when`, and returns what `when` produced.
    pub fn run(&self, given: &[E], when: &E) -> Vec<Output> {
        let mut fold = Fold::new(self.policy.clone());
        let mut outputs = Vec::new();
        for e in given {
            fold.apply(&e.build(&self.key), &mut outputs)
                .unwrap_or_else(|invalid| panic!("given {}: {invalid}", e.id));
        }
        outputs.clear();
        fold.apply(&when.build(&self.key), &mut outputs)
            .unwrap_or_else(|invalid| panic!("when {}: {invalid}", when.id));
        outputs
    }

    /// Given `given`, when `when`, then exactly `then`.
    #[track_caller]
    pub fn check(&self, given: &[E], when: E, then: &[&str]) {
        let shown: Vec<String> = self.run(given, &when).iter().map(show).collect();
        assert_eq!(
            shown,
            then.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "\nwhen {when:?}"
        );
    }
}
