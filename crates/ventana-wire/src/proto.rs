//! Protobuf forms of the events (types generated from `proto/ventana/v1/ventana.proto`),
//! with conversions to and from the domain. Enum values map by name: `TAG_HUMAN_AGENT` is
//! `human_agent`, so the `.proto` and the domain vocabularies cannot drift silently (the
//! round-trip tests cover every value).

use prost::Message;
use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessagingType, Outbound,
    PlatformError, Reason, Snapshot, State, Status, Tag, Timestamp, Window,
};
use ventana_notifier::{Output, OutputBody, Source, Suggestion, Trigger};

use crate::error::WireError;

/// The generated types.
#[allow(missing_debug_implementations, clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ventana.v1.rs"));
}

fn to_enum(prefix: &str, name: &str, lookup: impl Fn(&str) -> Option<i32>) -> i32 {
    let full = format!("{prefix}_{}", name.to_ascii_uppercase());
    lookup(&full).unwrap_or_else(|| panic!("{full} is missing from ventana.proto"))
}

fn from_enum<T>(
    value: i32,
    field: &'static str,
    prefix: &str,
    name_of: impl Fn(i32) -> Option<&'static str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, WireError> {
    name_of(value)
        .and_then(|name| name.strip_prefix(prefix))
        .and_then(|name| name.strip_prefix('_'))
        .and_then(|name| parse(&name.to_ascii_lowercase()))
        .ok_or_else(|| WireError::InvalidField {
            field,
            problem: format!("enum value {value}"),
        })
}

macro_rules! enum_codec {
    ($to:ident, $from:ident, $domain:ty, $pb:ty, $prefix:literal, $str:expr, $parse:expr) => {
        fn $to(value: $domain) -> i32 {
            to_enum($prefix, $str(value), |s| {
                <$pb>::from_str_name(s).map(|v| v as i32)
            })
        }
        fn $from(value: i32, field: &'static str) -> Result<$domain, WireError> {
            from_enum(
                value,
                field,
                $prefix,
                |v| <$pb>::try_from(v).ok().map(|e| e.as_str_name()),
                $parse,
            )
        }
    };
}

enum_codec!(
    sender_to,
    sender_from,
    ventana_core::Sender,
    pb::Sender,
    "SENDER",
    ventana_core::Sender::as_str,
    ventana_core::Sender::parse
);
enum_codec!(
    kind_to,
    kind_from,
    ventana_core::MessageKind,
    pb::MessageKind,
    "MESSAGE_KIND",
    ventana_core::MessageKind::as_str,
    ventana_core::MessageKind::parse
);
enum_codec!(
    tag_to,
    tag_from,
    Tag,
    pb::Tag,
    "TAG",
    Tag::as_str,
    Tag::parse
);
enum_codec!(
    origin_to,
    origin_from,
    ventana_core::Origin,
    pb::Origin,
    "ORIGIN",
    ventana_core::Origin::as_str,
    ventana_core::Origin::parse
);
enum_codec!(
    status_to,
    status_from,
    Status,
    pb::Status,
    "STATUS",
    Status::as_str,
    Status::parse
);
enum_codec!(
    state_to,
    state_from,
    State,
    pb::State,
    "STATE",
    State::as_str,
    State::parse
);
enum_codec!(
    window_to,
    window_from,
    Window,
    pb::Window,
    "WINDOW",
    Window::as_str,
    Window::parse
);
enum_codec!(
    messaging_to,
    messaging_from,
    MessagingType,
    pb::MessagingType,
    "MESSAGING_TYPE",
    MessagingType::as_str,
    MessagingType::parse
);
enum_codec!(
    source_to,
    source_from,
    Source,
    pb::Source,
    "SOURCE",
    Source::as_str,
    Source::parse
);
enum_codec!(
    reason_to,
    reason_from,
    Reason,
    pb::Reason,
    "REASON",
    Reason::as_str,
    Reason::parse
);
enum_codec!(
    suggestion_to,
    suggestion_from,
    Suggestion,
    pb::Suggestion,
    "SUGGESTION",
    Suggestion::as_str,
    Suggestion::parse
);
enum_codec!(
    trigger_to,
    trigger_from,
    Trigger,
    pb::Trigger,
    "TRIGGER",
    Trigger::as_str,
    Trigger::parse
);

fn opt_tag_to(tag: Option<Tag>) -> i32 {
    tag.map_or(pb::Tag::Unspecified as i32, tag_to)
}

fn opt_tag_from(value: i32) -> Result<Option<Tag>, WireError> {
    if value == pb::Tag::Unspecified as i32 {
        Ok(None)
    } else {
        tag_from(value, "tag").map(Some)
    }
}

fn ts_to(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.seconds_and_nanos();
    prost_types::Timestamp {
        seconds,
        nanos: nanos as i32,
    }
}

fn ts_from(t: &prost_types::Timestamp) -> Timestamp {
    Timestamp::from_unix_nanos(
        t.seconds
            .saturating_mul(1_000_000_000)
            .saturating_add(i64::from(t.nanos)),
    )
}

fn required_ts(
    t: Option<prost_types::Timestamp>,
    field: &'static str,
) -> Result<Timestamp, WireError> {
    t.as_ref()
        .map(ts_from)
        .ok_or(WireError::MissingField(field))
}

fn key_to(key: &ConversationKey) -> pb::ConversationKey {
    pb::ConversationKey {
        channel: key.channel.to_string(),
        account: key.account.clone(),
        channel_id: key.channel_id.clone(),
        contact_id: key.contact_id.clone(),
    }
}

fn key_from(key: Option<pb::ConversationKey>) -> Result<ConversationKey, WireError> {
    let key = key.ok_or(WireError::MissingField("conversation"))?;
    Ok(ConversationKey {
        channel: Channel::parse(&key.channel).ok_or(WireError::InvalidField {
            field: "conversation.channel",
            problem: "not one of: whatsapp, messenger, instagram, custom:<name>".into(),
        })?,
        account: key.account,
        channel_id: key.channel_id,
        contact_id: key.contact_id,
    })
}

fn error_to(e: &PlatformError) -> pb::PlatformError {
    pb::PlatformError {
        code: e.code,
        subcode: e.subcode,
        title: e.title.clone(),
    }
}

fn error_from(e: pb::PlatformError) -> PlatformError {
    PlatformError {
        code: e.code,
        subcode: e.subcode,
        title: e.title,
    }
}

impl From<&Event> for pb::InputEvent {
    fn from(event: &Event) -> Self {
        use pb::input_event::Body;
        let body = match &event.body {
            EventBody::CustomerMessage => Body::CustomerMessage(pb::CustomerMessage {}),
            EventBody::CustomerComment { comment_id } => {
                Body::CustomerComment(pb::CustomerComment {
                    comment_id: comment_id.clone(),
                })
            }
            EventBody::OutboundMessage(out) => Body::OutboundMessage(pb::OutboundMessage {
                sender: sender_to(out.sender),
                kind: kind_to(out.kind),
                tag: opt_tag_to(out.tag),
                comment_id: out.comment_id.clone(),
                origin: origin_to(out.origin),
            }),
            EventBody::DeliveryStatus(s) => Body::DeliveryStatus(pb::DeliveryStatus {
                message_id: s.message_id.clone(),
                status: status_to(s.status),
                error: s.error.as_ref().map(error_to),
            }),
            EventBody::ConversationClosed { by } => {
                Body::ConversationClosed(pb::ConversationClosed { by: by.clone() })
            }
            EventBody::ConversationReopened { by } => {
                Body::ConversationReopened(pb::ConversationReopened { by: by.clone() })
            }
            EventBody::Tick { at } => Body::Tick(pb::Tick {
                at: Some(ts_to(*at)),
            }),
        };
        pb::InputEvent {
            id: event.id.clone(),
            occurred_at: Some(ts_to(event.occurred_at)),
            logged_at: event.logged_at.map(ts_to),
            conversation: Some(key_to(&event.conversation)),
            body: Some(body),
        }
    }
}

impl TryFrom<pb::InputEvent> for Event {
    type Error = WireError;

    fn try_from(event: pb::InputEvent) -> Result<Self, WireError> {
        use pb::input_event::Body;
        let body = match event.body.ok_or(WireError::MissingField("body"))? {
            Body::CustomerMessage(_) => EventBody::CustomerMessage,
            Body::CustomerComment(c) => EventBody::CustomerComment {
                comment_id: c.comment_id,
            },
            Body::OutboundMessage(o) => EventBody::OutboundMessage(Outbound {
                sender: sender_from(o.sender, "sender")?,
                kind: kind_from(o.kind, "kind")?,
                tag: opt_tag_from(o.tag)?,
                comment_id: o.comment_id,
                origin: if o.origin == pb::Origin::Unspecified as i32 {
                    ventana_core::Origin::Request
                } else {
                    origin_from(o.origin, "origin")?
                },
            }),
            Body::DeliveryStatus(s) => EventBody::DeliveryStatus(DeliveryStatus {
                message_id: s.message_id,
                status: status_from(s.status, "status")?,
                error: s.error.map(error_from),
            }),
            Body::ConversationClosed(c) => EventBody::ConversationClosed { by: c.by },
            Body::ConversationReopened(c) => EventBody::ConversationReopened { by: c.by },
            Body::Tick(t) => EventBody::Tick {
                at: required_ts(t.at, "at")?,
            },
        };
        Ok(Event {
            id: event.id,
            occurred_at: required_ts(event.occurred_at, "occurred_at")?,
            logged_at: event.logged_at.as_ref().map(ts_from),
            conversation: key_from(event.conversation)?,
            body,
        })
    }
}

impl From<&Output> for pb::OutputEvent {
    fn from(output: &Output) -> Self {
        use pb::output_event::Body;
        let body = match &output.body {
            OutputBody::StateChanged {
                from,
                to,
                window,
                window_ends_at,
                session,
            } => Body::StateChanged(pb::StateChanged {
                from: state_to(*from),
                to: state_to(*to),
                window: window_to(*window),
                window_ends_at: window_ends_at.map(ts_to),
                session: *session,
            }),
            OutputBody::OutboundAccepted {
                message_id,
                messaging_type,
                tag,
                comment_id,
                window_ends_at,
            } => Body::OutboundAccepted(pb::OutboundAccepted {
                message_id: message_id.clone(),
                messaging_type: messaging_to(*messaging_type),
                tag: opt_tag_to(*tag),
                comment_id: comment_id.clone(),
                window_ends_at: window_ends_at.map(ts_to),
            }),
            OutputBody::OutboundHeld { message_id, until } => {
                Body::OutboundHeld(pb::OutboundHeld {
                    message_id: message_id.clone(),
                    until: Some(ts_to(*until)),
                })
            }
            OutputBody::DeliveryFailed {
                message_id,
                source,
                reason,
                detail,
                suggestion,
                error,
            } => Body::DeliveryFailed(pb::DeliveryFailed {
                message_id: message_id.clone(),
                source: source_to(*source),
                reason: reason_to(*reason),
                detail: detail.clone(),
                suggestion: suggestion_to(*suggestion),
                error: error.as_ref().map(error_to),
            }),
            OutputBody::AutoReply { trigger, reply_by } => Body::AutoReply(pb::AutoReply {
                trigger: trigger_to(*trigger),
                reply_by: reply_by.map(ts_to),
            }),
            OutputBody::WindowClosing {
                closes_at,
                customer_waiting,
            } => Body::WindowClosing(pb::WindowClosing {
                closes_at: Some(ts_to(*closes_at)),
                customer_waiting: *customer_waiting,
            }),
        };
        pb::OutputEvent {
            id: output.id.clone(),
            conversation: Some(key_to(&output.conversation)),
            occurred_at: Some(ts_to(output.occurred_at)),
            caused_by: output.caused_by.clone(),
            body: Some(body),
        }
    }
}

impl TryFrom<pb::OutputEvent> for Output {
    type Error = WireError;

    fn try_from(output: pb::OutputEvent) -> Result<Self, WireError> {
        use pb::output_event::Body;
        let body = match output.body.ok_or(WireError::MissingField("body"))? {
            Body::StateChanged(s) => OutputBody::StateChanged {
                from: state_from(s.from, "from")?,
                to: state_from(s.to, "to")?,
                window: window_from(s.window, "window")?,
                window_ends_at: s.window_ends_at.as_ref().map(ts_from),
                session: s.session,
            },
            Body::OutboundAccepted(a) => OutputBody::OutboundAccepted {
                message_id: a.message_id,
                messaging_type: messaging_from(a.messaging_type, "messaging_type")?,
                tag: opt_tag_from(a.tag)?,
                comment_id: a.comment_id,
                window_ends_at: a.window_ends_at.as_ref().map(ts_from),
            },
            Body::OutboundHeld(h) => OutputBody::OutboundHeld {
                message_id: h.message_id,
                until: required_ts(h.until, "until")?,
            },
            Body::DeliveryFailed(f) => OutputBody::DeliveryFailed {
                message_id: f.message_id,
                source: source_from(f.source, "source")?,
                reason: reason_from(f.reason, "reason")?,
                detail: f.detail,
                suggestion: suggestion_from(f.suggestion, "suggestion")?,
                error: f.error.map(error_from),
            },
            Body::AutoReply(a) => OutputBody::AutoReply {
                trigger: trigger_from(a.trigger, "trigger")?,
                reply_by: a.reply_by.as_ref().map(ts_from),
            },
            Body::WindowClosing(w) => OutputBody::WindowClosing {
                closes_at: required_ts(w.closes_at, "closes_at")?,
                customer_waiting: w.customer_waiting,
            },
        };
        Ok(Output {
            id: output.id,
            conversation: key_from(output.conversation)?.into(),
            occurred_at: required_ts(output.occurred_at, "occurred_at")?,
            caused_by: output.caused_by,
            body,
        })
    }
}

impl From<&Snapshot> for pb::Snapshot {
    fn from(s: &Snapshot) -> Self {
        pb::Snapshot {
            conversation: Some(key_to(&s.conversation)),
            state: state_to(s.view.state),
            window: window_to(s.view.window),
            window_ends_at: s.view.window_ends_at.map(ts_to),
            last_customer_at: s.last_customer_at.map(ts_to),
            session: s.view.session,
            allowed: s.allowed.iter().map(|a| a.as_str().to_owned()).collect(),
            events: s.events,
            last_event_id: s.last_event_id.clone(),
        }
    }
}

/// Encodes an input event as protobuf bytes.
pub fn encode_event(event: &Event) -> Vec<u8> {
    pb::InputEvent::from(event).encode_to_vec()
}

/// Decodes protobuf bytes into an input event.
pub fn decode_event(bytes: &[u8]) -> Result<Event, WireError> {
    let message =
        pb::InputEvent::decode(bytes).map_err(|e| WireError::Undecodable(e.to_string()))?;
    let event = Event::try_from(message)?;
    event.check_ids()?;
    Ok(event)
}

/// Encodes an output event as protobuf bytes.
pub fn encode_output(output: &Output) -> Vec<u8> {
    pb::OutputEvent::from(output).encode_to_vec()
}

/// Decodes protobuf bytes into an output event.
pub fn decode_output(bytes: &[u8]) -> Result<Output, WireError> {
    let message =
        pb::OutputEvent::decode(bytes).map_err(|e| WireError::Undecodable(e.to_string()))?;
    Output::try_from(message)
}
