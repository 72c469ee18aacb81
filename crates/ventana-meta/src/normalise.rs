//! Meta webhook payloads into ventana input events, with the platform's own timestamps and
//! ids. Message text, media and names are never read into an event.
//!
//! One webhook carries many items (a WhatsApp message or status, a Messenger `messaging`
//! item, a comment change, ...), and each is read on its own: it becomes events, is ignored
//! on purpose (a receipt that names no message, the page's own comment, an account update),
//! or cannot be understood (an unknown shape, a known one missing what it needs). Only a
//! body that is no Meta webhook at all is an error. README's webhook table says what every
//! shape becomes and why.

use serde_json::Value;
use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessageKind, Origin, Outbound,
    PlatformError, Sender, Status, Timestamp,
};

/// Why a body is no Meta webhook at all (the only case answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAWebhook {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a Meta webhook: {0} is missing or has the wrong type")]
    Missing(&'static str),
}

/// A WhatsApp customer as the payload names them: by phone number (`wa_id`), by
/// business-scoped user id (BSUID, `user_id`), or both. The adapter maps both to one stable
/// contact (see `contacts`); without that map the contact is the phone number when given,
/// the BSUID otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhatsAppCustomer {
    pub phone: Option<String>,
    pub user_id: Option<String>,
}

impl WhatsAppCustomer {
    fn default_contact(&self) -> Option<&str> {
        self.phone.as_deref().or(self.user_id.as_deref())
    }
}

/// One event read from an item, with the WhatsApp customer its key was made for.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub event: Event,
    pub customer: Option<WhatsAppCustomer>,
}

/// What one item became.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// Events for ventana (a delivery receipt may name several messages).
    Events(Vec<Found>),
    /// Understood, and deliberately no event (why).
    Ignored(&'static str),
    /// A shape this adapter does not know.
    Unsupported,
    /// A known shape without what it needs (what is missing or wrong).
    Malformed(&'static str),
}

/// One webhook item: where it sits (labels safe to log: at most 64 bytes of letters, digits,
/// `_`, `.`, `-`; anything else is `_`) and what it became.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The webhook's `object`.
    pub object: String,
    /// The change's `field`, or `messaging` / `standby` for Messenger and Instagram items.
    pub field: String,
    /// The item's type: a WhatsApp message `type`, a status, `message`, `postback`, ...
    pub kind: String,
    pub reading: Reading,
}

/// At most 64 bytes of `[A-Za-z0-9_.-]` from `text` (the rest replaced by `_`): payload
/// strings that reach logs, metrics or headers as names, never as content.
pub fn label(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The events of every item, in webhook order (the contacts as read, unmapped).
pub fn events(items: &[Item]) -> Vec<Event> {
    items
        .iter()
        .flat_map(|item| match &item.reading {
            Reading::Events(found) => found.iter().map(|f| f.event.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// A string at `pointer`, or an integer there written in decimal (older payloads have
/// numeric ids). Empty strings are no id.
fn id_at(value: &Value, pointer: &str) -> Option<String> {
    match value.pointer(pointer)? {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) if number.is_u64() || number.is_i64() => Some(number.to_string()),
        _ => None,
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn array<'a>(value: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
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

fn event(id: String, at: Timestamp, conversation: ConversationKey, body: EventBody) -> Event {
    Event {
        id,
        occurred_at: at,
        logged_at: None,
        conversation,
        body,
    }
}

fn found(event: Event) -> Reading {
    Reading::Events(vec![Found {
        event,
        customer: None,
    }])
}

fn echo(sender: Sender, kind: MessageKind) -> EventBody {
    EventBody::OutboundMessage(Outbound {
        sender,
        kind,
        tag: None,
        comment_id: None,
        origin: Origin::Echo,
    })
}

fn status_body(message_id: String, status: Status, error: Option<PlatformError>) -> EventBody {
    EventBody::DeliveryStatus(DeliveryStatus {
        message_id,
        status,
        error,
    })
}

/// Reads one webhook body (`account` names the business in ventana's conversation keys).
pub fn normalise(body: &[u8], account: &str) -> Result<Vec<Item>, NotAWebhook> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|e| NotAWebhook::NotJson(e.to_string()))?;
    let object = payload
        .get("object")
        .and_then(Value::as_str)
        .ok_or(NotAWebhook::Missing("object"))?;
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .ok_or(NotAWebhook::Missing("entry"))?;
    let mut reader = Reader {
        account,
        object: label(object),
        items: Vec::new(),
    };
    for entry in entries {
        match object {
            "whatsapp_business_account" => reader.whatsapp_entry(entry),
            "page" => reader.messaging_entry(entry, Channel::Messenger),
            "instagram" => reader.messaging_entry(entry, Channel::Instagram),
            _ => reader.push("entry", "", Reading::Unsupported),
        }
    }
    Ok(reader.items)
}

/// WhatsApp change fields that never concern a conversation's window.
const WHATSAPP_ACCOUNT_FIELDS: &[&str] = &[
    "account_alerts",
    "account_review_update",
    "account_update",
    "business_capability_update",
    "business_status_update",
    "history",
    "message_template_components_update",
    "message_template_quality_update",
    "message_template_status_update",
    "payment_configuration_update",
    "phone_number_name_update",
    "phone_number_quality_update",
    "security",
    "smb_app_state_sync",
    "template_category_update",
    "user_preferences",
];

/// Page and Instagram change fields that never concern a conversation's window.
const PAGE_ACCOUNT_FIELDS: &[&str] = &[
    "conversations",
    "inbox_labels",
    "leadgen",
    "live_videos",
    "mention",
    "mentions",
    "name",
    "picture",
    "ratings",
    "story_insights",
    "videos",
];

/// Instagram change fields that carry a `messaging` item as their value (the shape of the
/// app dashboard's test webhooks).
const MESSAGING_FIELDS: &[&str] = &[
    "messages",
    "messaging_postbacks",
    "messaging_referral",
    "message_reactions",
    "message_edit",
    "messaging_seen",
    "messaging_handover",
    "messaging_optins",
    "standby",
];

struct Reader<'a> {
    account: &'a str,
    object: String,
    items: Vec<Item>,
}

impl Reader<'_> {
    fn push(&mut self, field: &str, kind: &str, reading: Reading) {
        self.items.push(Item {
            object: self.object.clone(),
            field: label(field),
            kind: label(kind),
            reading,
        });
    }

    fn key(&self, channel: Channel, channel_id: &str, contact: &str) -> ConversationKey {
        ConversationKey::new(channel, self.account, channel_id, contact)
    }

    fn whatsapp_entry(&mut self, entry: &Value) {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            return self.push("entry", "", Reading::Malformed("entry[].changes"));
        };
        for change in changes {
            let field = str_at(change, "/field").unwrap_or_default();
            let Some(value) = change.get("value").filter(|v| v.is_object()) else {
                self.push(field, "", Reading::Malformed("changes[].value"));
                continue;
            };
            if WHATSAPP_ACCOUNT_FIELDS.contains(&field) {
                self.push(field, "", Reading::Ignored("account, not conversation"));
                continue;
            }
            if !matches!(field, "messages" | "calls" | "smb_message_echoes") {
                self.push(field, "", Reading::Unsupported);
                continue;
            }
            let Some(phone) = id_at(value, "/metadata/phone_number_id") else {
                self.push(field, "", Reading::Malformed("metadata.phone_number_id"));
                continue;
            };
            let before = self.items.len();
            for message in array(value, "messages") {
                let kind = str_at(message, "/type").unwrap_or_default();
                let reading = self.whatsapp_message(&phone, message);
                self.push(field, kind, reading);
            }
            for call in array(value, "calls") {
                let reading = self.whatsapp_call(&phone, call);
                self.push(field, "call", reading);
            }
            for status in array(value, "statuses") {
                let kind = str_at(status, "/status").unwrap_or_default();
                let reading = self.whatsapp_status(&phone, status);
                self.push(field, kind, reading);
            }
            for echo in array(value, "message_echoes") {
                let kind = str_at(echo, "/type").unwrap_or_default();
                let reading = self.whatsapp_echo(&phone, echo);
                self.push(field, kind, reading);
            }
            if self.items.len() == before {
                // `errors` about the account, `contacts` alone, an empty change.
                let reading = if value.get("errors").is_some() {
                    Reading::Ignored("account errors")
                } else {
                    Reading::Unsupported
                };
                self.push(field, "", reading);
            }
        }
    }

    /// A WhatsApp event about `customer`, keyed by their default contact (or the reason
    /// there is none).
    fn whatsapp_event(
        &self,
        phone: &str,
        customer: WhatsAppCustomer,
        id: String,
        at: Timestamp,
        body: EventBody,
    ) -> Reading {
        let Some(contact) = customer.default_contact() else {
            return Reading::Malformed("the customer's wa_id or user_id");
        };
        let key = self.key(Channel::WhatsApp, phone, contact);
        Reading::Events(vec![Found {
            event: event(id, at, key, body),
            customer: Some(customer),
        }])
    }

    fn whatsapp_message(&self, phone: &str, message: &Value) -> Reading {
        let (Some(id), Some(at)) = (id_at(message, "/id"), instant(message.get("timestamp")))
        else {
            return Reading::Malformed("messages[].id/timestamp");
        };
        if message.get("group_id").is_some() {
            return Reading::Ignored("group message: no customer service window");
        }
        match str_at(message, "/type") {
            Some("system") => return Reading::Ignored("system notice, not the customer writing"),
            Some("revoke") => return Reading::Ignored("the customer deleted a message"),
            Some("edit") => return Reading::Ignored("the customer edited a message"),
            _ => {}
        }
        let customer = WhatsAppCustomer {
            phone: id_at(message, "/from"),
            user_id: id_at(message, "/from_user_id"),
        };
        self.whatsapp_event(phone, customer, id, at, EventBody::CustomerMessage)
    }

    fn whatsapp_call(&self, phone: &str, call: &Value) -> Reading {
        if str_at(call, "/direction") == Some("BUSINESS_INITIATED") {
            return Reading::Ignored("business-initiated call");
        }
        let (Some(id), Some(at)) = (id_at(call, "/id"), instant(call.get("timestamp"))) else {
            return Reading::Malformed("calls[].id/timestamp");
        };
        let moment = label(str_at(call, "/event").unwrap_or("call"));
        let customer = WhatsAppCustomer {
            phone: id_at(call, "/from"),
            user_id: id_at(call, "/from_user_id"),
        };
        let id = format!("call:{id}:{moment}");
        self.whatsapp_event(phone, customer, id, at, EventBody::CustomerMessage)
    }

    fn whatsapp_status(&self, phone: &str, status: &Value) -> Reading {
        if str_at(status, "/type") == Some("call") {
            return Reading::Ignored("status of a business-initiated call");
        }
        if str_at(status, "/recipient_type") == Some("group") {
            return Reading::Ignored("status of a group message");
        }
        let (Some(id), Some(at)) = (id_at(status, "/id"), instant(status.get("timestamp"))) else {
            return Reading::Malformed("statuses[].id/timestamp");
        };
        let Some(name) = str_at(status, "/status") else {
            return Reading::Malformed("statuses[].status");
        };
        // A voice message played is a voice message read.
        let state = match name {
            "played" => Status::Read,
            other => match Status::parse(other) {
                Some(state) => state,
                None => return Reading::Unsupported,
            },
        };
        let error = status.pointer("/errors/0").and_then(|e| {
            Some(PlatformError {
                code: e.get("code")?.as_i64()?,
                subcode: e.pointer("/error_data/subcode").and_then(Value::as_i64),
                title: str_at(e, "/title").map(str::to_owned),
            })
        });
        let customer = WhatsAppCustomer {
            phone: id_at(status, "/recipient_id"),
            user_id: id_at(status, "/recipient_user_id"),
        };
        let body = status_body(id.clone(), state, error);
        self.whatsapp_event(phone, customer, format!("status:{id}:{name}"), at, body)
    }

    /// A message a person sent from the WhatsApp Business app on a number shared with the
    /// Cloud API (coexistence): the business answered outside ventana.
    fn whatsapp_echo(&self, phone: &str, echo_item: &Value) -> Reading {
        let (Some(id), Some(at)) = (id_at(echo_item, "/id"), instant(echo_item.get("timestamp")))
        else {
            return Reading::Malformed("message_echoes[].id/timestamp");
        };
        let kind = if str_at(echo_item, "/type") == Some("template") {
            MessageKind::Template
        } else {
            MessageKind::Message
        };
        let customer = WhatsAppCustomer {
            phone: id_at(echo_item, "/to"),
            user_id: id_at(echo_item, "/to_user_id"),
        };
        self.whatsapp_event(phone, customer, id, at, echo(Sender::Agent, kind))
    }

    /// Messenger (`object: page`) and Instagram (`object: instagram`): `messaging` and
    /// `standby` items for DMs, echoes, receipts and other customer actions; `changes` for
    /// comments.
    fn messaging_entry(&mut self, entry: &Value, channel: Channel) {
        let Some(page) = id_at(entry, "/id") else {
            return self.push("entry", "", Reading::Malformed("entry[].id"));
        };
        let mut any = false;
        for field in ["messaging", "standby"] {
            for item in array(entry, field) {
                any = true;
                let (kind, reading) = self.messaging_item(&channel, &page, item);
                self.push(field, kind, reading);
            }
        }
        for change in array(entry, "changes") {
            any = true;
            let field = str_at(change, "/field").unwrap_or_default();
            let Some(value) = change.get("value").filter(|v| v.is_object()) else {
                self.push(field, "", Reading::Malformed("changes[].value"));
                continue;
            };
            let (kind, reading) = self.change(&channel, &page, entry, field, value);
            self.push(field, kind, reading);
        }
        if !any {
            self.push("entry", "", Reading::Unsupported);
        }
    }

    /// One `messaging` (or `standby`) item: its kind (the member that says what happened)
    /// and what it becomes.
    fn messaging_item<'v>(
        &self,
        channel: &Channel,
        page: &str,
        item: &'v Value,
    ) -> (&'v str, Reading) {
        const KINDS: &[&str] = &[
            "message",
            "postback",
            "referral",
            "reaction",
            "delivery",
            "read",
            "message_edit",
            "policy_enforcement",
            "optin",
            "account_linking",
            "pass_thread_control",
            "take_thread_control",
            "request_thread_control",
            "app_roles",
            "game_play",
        ];
        let Some(object) = item.as_object() else {
            return ("", Reading::Malformed("messaging[] is no object"));
        };
        let Some((kind, body)) = KINDS
            .iter()
            .find_map(|k| object.get_key_value(*k))
            .map(|(k, v)| (k.as_str(), v))
        else {
            let other = object
                .keys()
                .find(|k| !matches!(k.as_str(), "sender" | "recipient" | "timestamp"))
                .map_or("", String::as_str);
            return (other, Reading::Unsupported);
        };
        let reading = match kind {
            "policy_enforcement" => {
                Reading::Ignored("a notice to the page about Meta's policies: no conversation")
            }
            "message_edit" => Reading::Ignored("the customer edited a message"),
            "optin" | "account_linking" | "app_roles" | "game_play" => {
                Reading::Ignored("no message from the customer")
            }
            "pass_thread_control" | "take_thread_control" | "request_thread_control" => {
                Reading::Ignored("handover between apps: no message")
            }
            _ => self.customer_action(channel, page, item, kind, body),
        };
        (kind, reading)
    }

    fn customer_action(
        &self,
        channel: &Channel,
        page: &str,
        item: &Value,
        kind: &str,
        body: &Value,
    ) -> Reading {
        let (Some(sender), Some(recipient)) =
            (id_at(item, "/sender/id"), id_at(item, "/recipient/id"))
        else {
            return Reading::Malformed("messaging[].sender.id/recipient.id");
        };
        let key = |contact: &str| self.key(channel.clone(), page, contact);
        // Receipts may carry only a watermark (Meta's own Messenger example has no timestamp).
        let at = instant(item.get("timestamp")).or_else(|| instant(body.get("watermark")));
        let Some(at) = at else {
            return Reading::Malformed("messaging[].timestamp");
        };
        let millis = at.unix_nanos() / 1_000_000;
        match kind {
            "message" => {
                let Some(mid) = id_at(body, "/mid") else {
                    return Reading::Malformed("message.mid");
                };
                if body.get("is_echo").and_then(Value::as_bool) == Some(true) {
                    // Sent by the business outside ventana (the native inbox, another app).
                    let sender = if body.get("app_id").is_some() {
                        Sender::Automation
                    } else {
                        Sender::Agent
                    };
                    found(event(
                        mid,
                        at,
                        key(&recipient),
                        echo(sender, MessageKind::Message),
                    ))
                } else if body.get("is_deleted").and_then(Value::as_bool) == Some(true) {
                    Reading::Ignored("the customer deleted a message")
                } else {
                    // Text, media, story replies, quick replies, ad replies: the customer.
                    found(event(mid, at, key(&sender), EventBody::CustomerMessage))
                }
            }
            // Get Started, buttons, ice breakers, persistent menu.
            "postback" => {
                let id =
                    id_at(body, "/mid").unwrap_or_else(|| format!("postback:{sender}:{millis}"));
                found(event(id, at, key(&sender), EventBody::CustomerMessage))
            }
            // m.me / ig.me links and ads into an existing thread.
            "referral" => found(event(
                format!("referral:{sender}:{millis}"),
                at,
                key(&sender),
                EventBody::CustomerMessage,
            )),
            // Reacting to a message (react or unreact).
            "reaction" => {
                let action = label(str_at(body, "/action").unwrap_or("react"));
                let target = id_at(body, "/mid").unwrap_or_else(|| sender.clone());
                found(event(
                    format!("reaction:{target}:{action}:{millis}"),
                    at,
                    key(&sender),
                    EventBody::CustomerMessage,
                ))
            }
            "delivery" => {
                let found: Vec<Found> = array(body, "mids")
                    .filter_map(|mid| mid.as_str())
                    .map(|mid| Found {
                        event: event(
                            format!("delivery:{mid}"),
                            at,
                            key(&sender),
                            status_body(mid.to_owned(), Status::Delivered, None),
                        ),
                        customer: None,
                    })
                    .collect();
                if found.is_empty() {
                    Reading::Ignored("a delivery watermark names no message")
                } else {
                    Reading::Events(found)
                }
            }
            "read" => match id_at(body, "/mid") {
                // Instagram names the message read; Messenger only gives a watermark.
                Some(mid) => found(event(
                    format!("read:{mid}"),
                    at,
                    key(&sender),
                    status_body(mid, Status::Read, None),
                )),
                None => Reading::Ignored("a read watermark names no message"),
            },
            _ => Reading::Unsupported,
        }
    }

    /// One Page or Instagram `changes` item: its kind and what it becomes.
    fn change<'v>(
        &self,
        channel: &Channel,
        page: &str,
        entry: &Value,
        field: &str,
        value: &'v Value,
    ) -> (&'v str, Reading) {
        match (channel, field) {
            (Channel::Messenger, "feed") => {
                let item = str_at(value, "/item").unwrap_or_default();
                if item != "comment" || str_at(value, "/verb") != Some("add") {
                    return (item, Reading::Ignored("not a new comment"));
                }
                let at = instant(value.get("created_time")).or_else(|| instant(entry.get("time")));
                (item, self.comment(channel, page, value, "/comment_id", at))
            }
            (Channel::Instagram, "comments" | "live_comments") => {
                let pointer = if value.get("id").is_some() {
                    "/id"
                } else {
                    "/comment_id"
                };
                let at = instant(value.get("timestamp"))
                    .or_else(|| instant(value.get("created_time")))
                    .or_else(|| instant(entry.get("time")));
                ("comment", self.comment(channel, page, value, pointer, at))
            }
            (Channel::Instagram, field) if MESSAGING_FIELDS.contains(&field) => {
                self.messaging_item(channel, page, value)
            }
            (_, field) if PAGE_ACCOUNT_FIELDS.contains(&field) => {
                ("", Reading::Ignored("not about a conversation"))
            }
            _ => ("", Reading::Unsupported),
        }
    }

    /// A customer's comment. Meta leaves `from` out when the commenter has not allowed the
    /// app to see them: the conversation's contact is then `comment:<comment id>`, so the
    /// one private reply can still be decided.
    fn comment(
        &self,
        channel: &Channel,
        page: &str,
        value: &Value,
        id_pointer: &str,
        at: Option<Timestamp>,
    ) -> Reading {
        let Some(comment) = id_at(value, id_pointer) else {
            return Reading::Malformed("the comment's id");
        };
        let from = id_at(value, "/from/id");
        if from.as_deref() == Some(page) {
            return Reading::Ignored("the page's own comment");
        }
        let Some(at) = at else {
            return Reading::Malformed("the comment's time");
        };
        let contact = from.unwrap_or_else(|| format!("comment:{comment}"));
        found(event(
            comment.clone(),
            at,
            self.key(channel.clone(), page, &contact),
            EventBody::CustomerComment {
                comment_id: comment,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Vec<Item> {
        normalise(body.as_bytes(), "a").unwrap()
    }

    fn readings(body: &str) -> Vec<Reading> {
        read(body).into_iter().map(|item| item.reading).collect()
    }

    /// One line per item: where it sits and what it became.
    fn outline(items: &[Item]) -> String {
        items
            .iter()
            .map(|item| {
                let reading = match &item.reading {
                    Reading::Events(found) => format!("{} event(s)", found.len()),
                    Reading::Ignored(why) => format!("ignored: {why}"),
                    Reading::Unsupported => "unsupported".to_owned(),
                    Reading::Malformed(what) => format!("malformed: {what}"),
                };
                format!(
                    "{} {} {} -> {reading}\n",
                    item.object, item.field, item.kind
                )
            })
            .collect()
    }

    /// Every `fixtures/NAME.json` (a webhook as Meta sends it) gives exactly the events in
    /// `fixtures/NAME.events.jsonl` and the item outcomes in `fixtures/NAME.items`.
    /// `VENTANA_UPDATE_FIXTURES=1` rewrites both (review the diff).
    #[test]
    fn every_fixture_gives_exactly_its_events() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(name) = path.to_str().and_then(|p| p.strip_suffix(".json")) else {
                continue;
            };
            let items = normalise(&std::fs::read(&path).unwrap(), "acme").unwrap();
            let printed: String = events(&items)
                .iter()
                .map(|e| ventana_wire::event_to_json(e) + "\n")
                .collect();
            for (suffix, printed) in [("events.jsonl", printed), ("items", outline(&items))] {
                let expected_path = format!("{name}.{suffix}");
                if std::env::var_os("VENTANA_UPDATE_FIXTURES").is_some() {
                    std::fs::write(&expected_path, &printed).unwrap();
                }
                let expected = std::fs::read_to_string(&expected_path).unwrap();
                assert_eq!(printed, expected, "{expected_path}");
            }
            checked += 1;
        }
        assert_eq!(checked, 27, "every fixture was checked");
    }

    #[test]
    fn no_text_reaches_an_event() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let items = normalise(&std::fs::read(&path).unwrap(), "acme").unwrap();
            let printed: String = events(&items)
                .iter()
                .map(ventana_wire::event_to_json)
                .collect();
            for text in ["order", "color", "size", "Sheena", "SECRET-TEXT"] {
                assert!(!printed.contains(text), "{}: {printed}", path.display());
            }
        }
    }

    #[test]
    fn only_a_body_that_is_no_webhook_is_refused() {
        assert!(matches!(
            normalise(b"{not json", "a"),
            Err(NotAWebhook::NotJson(_))
        ));
        assert_eq!(
            normalise(br#"{"object":"page"}"#, "a"),
            Err(NotAWebhook::Missing("entry"))
        );
        assert_eq!(
            normalise(br#"{"entry":[]}"#, "a"),
            Err(NotAWebhook::Missing("object"))
        );
        // Another object is a webhook all the same: its entries are unsupported items.
        let items = read(r#"{"object":"user","entry":[{"id":"1"}]}"#);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].object, "user");
        assert_eq!(items[0].reading, Reading::Unsupported);
    }

    #[test]
    fn a_bad_item_spoils_nothing_beside_it() {
        let items = read(
            r#"{"object":"page","entry":[{"id":"1","messaging":[
                {"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1749416383000,"message":{"text":"no mid"}},
                {"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1749416384000,"message":{"mid":"m2"}},
                {"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1749416385000,"brand_new":{"x":1}}],
              "changes":[{"field":"feed"}]}]}"#,
        );
        let outline: Vec<(&str, &str, bool)> = items
            .iter()
            .map(|i| {
                (
                    i.field.as_str(),
                    i.kind.as_str(),
                    matches!(i.reading, Reading::Events(_)),
                )
            })
            .collect();
        assert_eq!(
            outline,
            [
                ("messaging", "message", false),
                ("messaging", "message", true),
                ("messaging", "brand_new", false),
                ("feed", "", false),
            ]
        );
        assert_eq!(items[0].reading, Reading::Malformed("message.mid"));
        assert_eq!(items[2].reading, Reading::Unsupported);
        assert_eq!(items[3].reading, Reading::Malformed("changes[].value"));
        assert_eq!(events(&items)[0].id, "m2");
    }

    #[test]
    fn timestamps_past_the_representable_are_no_instant() {
        // Seconds past the year 2262 (here the year 3554) are no instant, not a wrapped one.
        for timestamp in ["50000000000", "9300000000", "99999999999999999"] {
            let body = format!(
                r#"{{"object":"page","entry":[{{"id":"1","messaging":[{{"sender":{{"id":"2"}},"recipient":{{"id":"1"}},"timestamp":{timestamp},"message":{{"mid":"m1"}}}}]}}]}}"#
            );
            assert_eq!(
                readings(&body),
                [Reading::Malformed("messaging[].timestamp")],
                "{timestamp}"
            );
        }
    }

    #[test]
    fn labels_are_short_and_tame() {
        assert_eq!(label("messages"), "messages");
        assert_eq!(label("a b\r\n{}é"), "a_b_____");
        assert_eq!(label(&"x".repeat(1000)).len(), 64);
    }

    #[test]
    fn numeric_ids_are_read_as_decimal() {
        let items = read(
            r#"{"object":"page","entry":[{"id":1067280970047460,"messaging":[
                {"sender":{"id":6879422812102383},"recipient":{"id":1067280970047460},"timestamp":1749416384000,"message":{"mid":"m2"}}]}]}"#,
        );
        let event = &events(&items)[0];
        assert_eq!(event.conversation.channel_id, "1067280970047460");
        assert_eq!(event.conversation.contact_id, "6879422812102383");
    }
}
