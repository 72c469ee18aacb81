//! Meta webhook payloads into ventana input events, with the platform's own timestamps and
//! ids. Message text, media and names are never read into an event.
//!
//! Supported: WhatsApp Cloud API (`messages`, `calls`, `statuses` with `errors`), Messenger
//! (`messages`, `message_echoes`, `message_deliveries`, `message_reads`, `feed` comments) and
//! Instagram (`messages` with echoes and story replies, `comments`). Shapes ventana has no
//! use for (reactions, postbacks, other feed items, ...) give no events; a payload that is
//! not a webhook at all is an error.

use serde_json::Value;
use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound,
    PlatformError, Sender, Status, Timestamp,
};

/// Why a payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("unknown webhook object (expected whatsapp_business_account, page or instagram)")]
    UnknownObject,
    #[error("{0} is missing or has the wrong type")]
    Missing(&'static str),
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Seconds (WhatsApp sends them as strings) or milliseconds since the epoch.
fn instant(value: Option<&Value>) -> Option<Timestamp> {
    let number = match value? {
        Value::String(text) => text.parse::<i64>().ok()?,
        Value::Number(number) => number.as_i64()?,
        _ => return None,
    };
    if number > 100_000_000_000 {
        number
            .checked_mul(1_000_000)
            .map(Timestamp::from_unix_nanos)
    } else {
        Timestamp::checked_from_unix_seconds(number)
    }
}

/// Reads one webhook body (`account` names the business in ventana's conversation keys).
pub fn normalise(body: &[u8], account: &str) -> Result<Vec<Event>, Malformed> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| Malformed::NotJson(e.to_string()))?;
    let object = payload
        .get("object")
        .and_then(Value::as_str)
        .ok_or(Malformed::Missing("object"))?;
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .ok_or(Malformed::Missing("entry"))?;
    let channel = match object {
        "whatsapp_business_account" => Channel::WhatsApp,
        "page" => Channel::Messenger,
        "instagram" => Channel::Instagram,
        _ => return Err(Malformed::UnknownObject),
    };
    let mut events = Vec::new();
    for entry in entries {
        match channel {
            Channel::WhatsApp => whatsapp(entry, account, &mut events)?,
            _ => meta_messaging(entry, channel.clone(), account, &mut events)?,
        }
    }
    Ok(events)
}

fn whatsapp(entry: &Value, account: &str, events: &mut Vec<Event>) -> Result<(), Malformed> {
    let changes = entry
        .get("changes")
        .and_then(Value::as_array)
        .ok_or(Malformed::Missing("entry[].changes"))?;
    for change in changes {
        let value = change
            .get("value")
            .ok_or(Malformed::Missing("changes[].value"))?;
        let Some(phone) = str_at(value, "/metadata/phone_number_id") else {
            continue; // e.g. account or template updates: nothing about a conversation
        };
        let key = |contact: &str| ConversationKey::new(Channel::WhatsApp, account, phone, contact);
        for message in value
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(from), Some(at)) = (
                str_at(message, "/id"),
                str_at(message, "/from"),
                instant(message.get("timestamp")),
            ) else {
                return Err(Malformed::Missing("messages[].id/from/timestamp"));
            };
            // Reactions do not reopen a window; everything else a customer sends does.
            if str_at(message, "/type") == Some("reaction") {
                continue;
            }
            events.push(event(id, at, key(from), EventBody::CustomerMessage));
        }
        for call in value
            .get("calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if str_at(call, "/direction") == Some("BUSINESS_INITIATED") {
                continue;
            }
            let (Some(id), Some(from), Some(at)) = (
                str_at(call, "/id"),
                str_at(call, "/from"),
                instant(call.get("timestamp")),
            ) else {
                return Err(Malformed::Missing("calls[].id/from/timestamp"));
            };
            let status = str_at(call, "/event").unwrap_or("call");
            events.push(event(
                &format!("call:{id}:{status}"),
                at,
                key(from),
                EventBody::CustomerMessage,
            ));
        }
        for status in value
            .get("statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(id), Some(recipient), Some(at), Some(state)) = (
                str_at(status, "/id"),
                str_at(status, "/recipient_id"),
                instant(status.get("timestamp")),
                str_at(status, "/status").and_then(Status::parse),
            ) else {
                return Err(Malformed::Missing(
                    "statuses[].id/recipient_id/timestamp/status",
                ));
            };
            let error = status.pointer("/errors/0").and_then(|e| {
                Some(PlatformError {
                    code: e.get("code")?.as_i64()?,
                    subcode: e.pointer("/error_data/subcode").and_then(Value::as_i64),
                    title: str_at(e, "/title").map(str::to_owned),
                })
            });
            events.push(event(
                &format!("status:{id}:{}", state.as_str()),
                at,
                key(recipient),
                EventBody::DeliveryStatus(DeliveryStatus {
                    message_id: id.to_owned(),
                    status: state,
                    error,
                }),
            ));
        }
    }
    Ok(())
}

fn event(id: &str, at: Timestamp, conversation: ConversationKey, body: EventBody) -> Event {
    Event {
        id: id.to_owned(),
        occurred_at: at,
        logged_at: None,
        conversation,
        body,
    }
}

/// Messenger (`object: page`) and Instagram (`object: instagram`): `messaging` for DMs,
/// echoes, deliveries and reads; `changes` for comments.
fn meta_messaging(
    entry: &Value,
    channel: Channel,
    account: &str,
    events: &mut Vec<Event>,
) -> Result<(), Malformed> {
    let page = str_at(entry, "/id").ok_or(Malformed::Missing("entry[].id"))?;
    let key = |contact: &str| ConversationKey::new(channel.clone(), account, page, contact);
    for item in entry
        .get("messaging")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(sender), Some(recipient)) =
            (str_at(item, "/sender/id"), str_at(item, "/recipient/id"))
        else {
            return Err(Malformed::Missing("messaging[].sender.id/recipient.id"));
        };
        let at =
            instant(item.get("timestamp")).ok_or(Malformed::Missing("messaging[].timestamp"))?;
        if let Some(message) = item.get("message") {
            let id = str_at(message, "/mid").ok_or(Malformed::Missing("message.mid"))?;
            if message.get("is_echo").and_then(Value::as_bool) == Some(true) {
                // Sent by the business outside ventana (the native inbox, another app).
                let sender_kind = if message.get("app_id").is_some() {
                    Sender::Automation
                } else {
                    Sender::Agent
                };
                events.push(event(
                    id,
                    at,
                    key(recipient),
                    EventBody::OutboundMessage(Outbound {
                        sender: sender_kind,
                        kind: MessageKind::Message,
                        tag: None,
                        comment_id: None,
                        origin: Origin::Echo,
                    }),
                ));
            } else if message.get("is_deleted").and_then(Value::as_bool) != Some(true) {
                // Text, media, story replies, quick replies: customer activity.
                events.push(event(id, at, key(sender), EventBody::CustomerMessage));
            }
        } else if let Some(delivery) = item.get("delivery") {
            for mid in delivery
                .get("mids")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(mid) = mid.as_str() else { continue };
                events.push(event(
                    &format!("delivery:{mid}"),
                    at,
                    key(sender),
                    EventBody::DeliveryStatus(DeliveryStatus {
                        message_id: mid.to_owned(),
                        status: Status::Delivered,
                        error: None,
                    }),
                ));
            }
        } else if let Some(read) = item.get("read") {
            // Reads name a message on Instagram (`mid`); Messenger only gives a watermark,
            // which names no message: nothing to record.
            if let Some(mid) = str_at(read, "/mid") {
                events.push(event(
                    &format!("read:{mid}"),
                    at,
                    key(sender),
                    EventBody::DeliveryStatus(DeliveryStatus {
                        message_id: mid.to_owned(),
                        status: Status::Read,
                        error: None,
                    }),
                ));
            }
        }
    }
    for change in entry
        .get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = change
            .get("value")
            .ok_or(Malformed::Missing("changes[].value"))?;
        match (channel.clone(), str_at(change, "/field")) {
            (Channel::Messenger, Some("feed")) => {
                if str_at(value, "/item") != Some("comment")
                    || str_at(value, "/verb") != Some("add")
                {
                    continue;
                }
                let (Some(comment), Some(from)) =
                    (str_at(value, "/comment_id"), str_at(value, "/from/id"))
                else {
                    return Err(Malformed::Missing("feed comment_id/from.id"));
                };
                if from == page {
                    continue; // the page's own public reply
                }
                let at = instant(value.get("created_time"))
                    .or_else(|| instant(entry.get("time")))
                    .ok_or(Malformed::Missing("feed created_time"))?;
                events.push(comment_event(comment, at, key(from)));
            }
            (Channel::Instagram, Some("comments")) => {
                let (Some(comment), Some(from)) = (str_at(value, "/id"), str_at(value, "/from/id"))
                else {
                    return Err(Malformed::Missing("comments id/from.id"));
                };
                if from == page {
                    continue;
                }
                let at = instant(entry.get("time")).ok_or(Malformed::Missing("entry[].time"))?;
                events.push(comment_event(comment, at, key(from)));
            }
            _ => {}
        }
    }
    Ok(())
}

fn comment_event(comment: &str, at: Timestamp, conversation: ConversationKey) -> Event {
    event(
        comment,
        at,
        conversation,
        EventBody::CustomerComment {
            comment_id: comment.to_owned(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `fixtures/NAME.json` (a webhook as Meta sends it) gives exactly the events in
    /// `fixtures/NAME.events.jsonl`. `VENTANA_UPDATE_FIXTURES=1` rewrites them (review the diff).
    #[test]
    fn every_fixture_gives_exactly_its_events() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.to_str().and_then(|p| p.strip_suffix(".json")) else {
                continue;
            };
            let events = normalise(&std::fs::read(&path).unwrap(), "acme").unwrap();
            let printed: String = events
                .iter()
                .map(|e| ventana_wire::event_to_json(e) + "\n")
                .collect();
            let expected_path = format!("{name}.events.jsonl");
            if std::env::var_os("VENTANA_UPDATE_FIXTURES").is_some() {
                std::fs::write(&expected_path, &printed).unwrap();
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap();
            assert_eq!(printed, expected, "{name}");
            assert!(!events.is_empty(), "{name} gives events");
            checked += 1;
        }
        assert_eq!(checked, 8, "every fixture was checked");
    }

    #[test]
    fn no_text_reaches_an_event() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for name in [
            "messenger-messages",
            "whatsapp-messages",
            "instagram-comments",
        ] {
            let body = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
            let printed: String = normalise(&body, "acme")
                .unwrap()
                .iter()
                .map(ventana_wire::event_to_json)
                .collect();
            for text in ["order", "color", "size", "Sheena"] {
                assert!(!printed.contains(text), "{name}: {printed}");
            }
        }
    }

    #[test]
    fn malformed_payloads_are_refused_with_a_reason() {
        assert!(matches!(
            normalise(b"{not json", "a"),
            Err(Malformed::NotJson(_))
        ));
        assert_eq!(
            normalise(br#"{"object":"user","entry":[]}"#, "a"),
            Err(Malformed::UnknownObject)
        );
        assert_eq!(
            normalise(br#"{"object":"page"}"#, "a"),
            Err(Malformed::Missing("entry"))
        );
        assert_eq!(
            normalise(br#"{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1749416383000,"message":{"text":"x"}}]}]}"#, "a"),
            Err(Malformed::Missing("message.mid"))
        );
        // Seconds past the year 2262 (here the year 3554) are no instant, not a wrapped one.
        for timestamp in ["50000000000", "9300000000", "99999999999999999"] {
            let body = format!(
                r#"{{"object":"page","entry":[{{"id":"1","messaging":[{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":{timestamp},"message":{{"mid":"m1"}}}}]}}]}}"#
            );
            assert_eq!(
                normalise(body.as_bytes(), "a"),
                Err(Malformed::Missing("messaging[].timestamp")),
                "{timestamp}"
            );
        }
        // Shapes ventana has no use for give nothing (and Meta gets its 200).
        assert_eq!(
            normalise(br#"{"object":"page","entry":[{"id":"1","time":1,"changes":[{"field":"ratings","value":{}}]}]}"#, "a"),
            Ok(vec![])
        );
    }
}
