//! The JSON forms of docs/events.md: input events, output events and snapshots.
//!
//! Reading is lenient where the contract says so (unknown fields are ignored) and precise
//! about what is wrong otherwise. Writing is canonical: fixed field order, instants in UTC
//! with `Z`, so the same values always print the same bytes.

use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};
use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, MessageKind, MessagingType, Origin,
    Outbound, PlatformError, Reason, Sender, Snapshot, State, Status, Tag, Timestamp, Window,
};
use ventana_notifier::{Output, OutputBody, Source, Suggestion, Trigger};

use crate::error::WireError;

/// Text read only to be looked at (a type, an instant, a vocabulary word), not kept:
/// borrowed from the input when it has no escapes, so reading it allocates nothing.
struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<Text<'a>>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }

            fn visit_string<E>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visit(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct RawConversation<'a> {
    #[serde(borrow)]
    channel: Option<Text<'a>>,
    account: Option<String>,
    channel_id: Option<String>,
    contact_id: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    code: Option<i64>,
    subcode: Option<i64>,
    title: Option<String>,
}

/// Every field an input event may carry; which ones are required depends on `type`. Fields
/// of other names (output fields among them) are ignored.
#[derive(Deserialize)]
struct RawInput<'a> {
    id: Option<String>,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    occurred_at: Option<Text<'a>>,
    #[serde(borrow)]
    logged_at: Option<Text<'a>>,
    #[serde(borrow)]
    conversation: Option<RawConversation<'a>>,
    comment_id: Option<String>,
    #[serde(borrow)]
    sender: Option<Text<'a>>,
    #[serde(rename = "kind", borrow)]
    message_kind: Option<Text<'a>>,
    #[serde(borrow)]
    tag: Option<Text<'a>>,
    #[serde(borrow)]
    origin: Option<Text<'a>>,
    message_id: Option<String>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    error: Option<RawError>,
    by: Option<String>,
    #[serde(borrow)]
    at: Option<Text<'a>>,
}

/// Every field an output event may carry; which ones are required depends on `type`.
#[derive(Deserialize)]
struct RawOutput<'a> {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    occurred_at: Option<String>,
    #[serde(borrow)]
    conversation: Option<RawConversation<'a>>,
    caused_by: Option<String>,
    comment_id: Option<String>,
    tag: Option<String>,
    message_id: Option<String>,
    error: Option<RawError>,
    from: Option<String>,
    to: Option<String>,
    window: Option<String>,
    window_ends_at: Option<String>,
    session: Option<u32>,
    messaging_type: Option<String>,
    until: Option<String>,
    source: Option<String>,
    reason: Option<String>,
    detail: Option<String>,
    suggestion: Option<String>,
    trigger: Option<String>,
    reply_by: Option<String>,
    closes_at: Option<String>,
    customer_waiting: Option<bool>,
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, WireError> {
    value.ok_or(WireError::MissingField(field))
}

fn invalid(field: &'static str, problem: impl Into<String>) -> WireError {
    WireError::InvalidField {
        field,
        problem: problem.into(),
    }
}

fn instant(text: &str, field: &'static str) -> Result<Timestamp, WireError> {
    Timestamp::parse_rfc3339(text).map_err(|e| invalid(field, e.to_string()))
}

fn opt_instant(text: Option<&str>, field: &'static str) -> Result<Option<Timestamp>, WireError> {
    text.map(|t| instant(t, field)).transpose()
}

/// A text enum read from JSON: its values, and the list of them an error names (the value
/// read is never echoed: it may be any text).
trait Vocabulary: Sized {
    fn read(text: &str) -> Option<Self>;
    fn accepted() -> String;
}

macro_rules! vocabulary_of_text_enums {
    ($($ty:ty),+) => {$(
        impl Vocabulary for $ty {
            fn read(text: &str) -> Option<Self> {
                <$ty>::parse(text)
            }
            fn accepted() -> String {
                <$ty>::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }
    )+};
}

vocabulary_of_text_enums!(
    Sender,
    MessageKind,
    Tag,
    Origin,
    Status,
    State,
    Window,
    MessagingType,
    Source,
    Reason,
    Suggestion,
    Trigger
);

impl Vocabulary for Channel {
    fn read(text: &str) -> Option<Self> {
        Channel::parse(text)
    }
    fn accepted() -> String {
        "whatsapp, messenger, instagram, custom:<name>".into()
    }
}

fn vocabulary<T: Vocabulary>(text: &str, field: &'static str) -> Result<T, WireError> {
    T::read(text).ok_or_else(|| invalid(field, format!("not one of: {}", T::accepted())))
}

fn conversation(raw: Option<RawConversation<'_>>) -> Result<ConversationKey, WireError> {
    let raw = required(raw, "conversation")?;
    let channel = required(raw.channel, "conversation.channel")?;
    Ok(ConversationKey {
        channel: vocabulary(&channel, "conversation.channel")?,
        account: required(raw.account, "conversation.account")?,
        channel_id: required(raw.channel_id, "conversation.channel_id")?,
        contact_id: required(raw.contact_id, "conversation.contact_id")?,
    })
}

/// Reads a conversation key from its JSON object (`channel`, `account`, `channel_id`,
/// `contact_id`).
pub fn parse_conversation(value: &Value) -> Result<ConversationKey, WireError> {
    conversation(Some(from_value(value)?))
}

fn platform_error(raw: Option<RawError>) -> Result<Option<PlatformError>, WireError> {
    raw.map(|e| {
        Ok(PlatformError {
            code: required(e.code, "error.code")?,
            subcode: e.subcode,
            title: e.title,
        })
    })
    .transpose()
}

/// What is wrong with JSON that does not fit the shape ventana reads: the kind of problem,
/// where, and the field's path; never a value (serde's own messages quote them).
fn undecodable(path: &str, inner: &serde_json::Error) -> WireError {
    use serde_json::error::Category;
    let place = if inner.line() == 0 {
        String::new()
    } else {
        format!(" at line {} column {}", inner.line(), inner.column())
    };
    WireError::Undecodable(match inner.classify() {
        Category::Syntax => format!("not JSON: syntax error{place}"),
        Category::Eof => format!("not JSON: it ends early{place}"),
        Category::Io => "cannot be read".to_owned(),
        Category::Data if path == "." || path.is_empty() => format!("not a JSON object{place}"),
        Category::Data => {
            let path: String = path.chars().take(64).collect();
            format!("`{path}` has the wrong JSON type{place}")
        }
    })
}

/// Reads JSON text into `T`, as [`serde_json::from_str`] does, with errors that never quote
/// the input.
pub(crate) fn from_text<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, WireError> {
    // Almost every input is well formed: read it without tracking where the reader is, and
    // only for an input that fails, read it again to say where (the same types read it both
    // times, so both ways accept and refuse the same inputs).
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut reader = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut reader).map_err(path_error)?;
    reader.end().map_err(|e| undecodable("", &e))?;
    Ok(value)
}

/// Reads parsed JSON into `T`, with errors that never quote the input.
pub(crate) fn from_value<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, WireError> {
    serde_path_to_error::deserialize(value).map_err(path_error)
}

fn path_error(error: serde_path_to_error::Error<serde_json::Error>) -> WireError {
    undecodable(&error.path().to_string(), error.inner())
}

/// Reads one input event (a JSON object). Clock skew is checked by the fold, which knows
/// the policy.
pub fn parse_event(line: &str) -> Result<Event, WireError> {
    match plain_input(line) {
        Some(raw) => event_of(raw),
        None => event_of(from_text(line)?),
    }
}

/// The usual input read without serde: one object of known fields, each once, whose values
/// are strings without escapes or `null`, the conversation an object of the same kind, and
/// nothing after it but whitespace. Anything else (an escape, a number, an `error` object,
/// an unknown or repeated field, broken JSON) gives `None`, and serde reads the input as
/// before; what this accepts, serde reads into the same fields.
fn plain_input<'a>(text: &'a str) -> Option<RawInput<'a>> {
    /// The fields, in the order `values` is read out below.
    const NAMES: [&str; 14] = [
        "id",
        "type",
        "occurred_at",
        "logged_at",
        "conversation",
        "comment_id",
        "sender",
        "kind",
        "tag",
        "origin",
        "message_id",
        "status",
        "by",
        "at",
    ];
    const CONVERSATION: usize = 4;
    // Borrowed while reading; owned copies are made once the whole input is read.
    let mut values: [Option<&str>; 14] = [None; 14];
    let mut conversation: Option<[Option<&str>; 4]> = None;
    let mut plain = Plain { text, at: 0 };
    plain.fields(&NAMES, |plain, field| {
        if field == CONVERSATION {
            conversation = plain.conversation()?;
        } else {
            values[field] = plain.nullable()?;
        }
        Some(())
    })?;
    plain.skip_whitespace();
    if plain.at != text.len() {
        return None;
    }
    let borrowed = |value: Option<&'a str>| value.map(|v| Text(Cow::Borrowed(v)));
    let owned = |value: Option<&str>| value.map(str::to_owned);
    let [
        id,
        kind,
        occurred_at,
        logged_at,
        _conversation,
        comment_id,
        sender,
        message_kind,
        tag,
        origin,
        message_id,
        status,
        by,
        at,
    ] = values;
    Some(RawInput {
        id: owned(id),
        kind: borrowed(kind),
        occurred_at: borrowed(occurred_at),
        logged_at: borrowed(logged_at),
        conversation: conversation.map(|[channel, account, channel_id, contact_id]| {
            RawConversation {
                channel: borrowed(channel),
                account: owned(account),
                channel_id: owned(channel_id),
                contact_id: owned(contact_id),
            }
        }),
        comment_id: owned(comment_id),
        sender: borrowed(sender),
        message_kind: borrowed(message_kind),
        tag: borrowed(tag),
        origin: borrowed(origin),
        message_id: owned(message_id),
        status: borrowed(status),
        error: None,
        by: owned(by),
        at: borrowed(at),
    })
}

/// A reader of the JSON [`plain_input`] accepts.
struct Plain<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Plain<'a> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.as_bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, taken.
    fn next(&mut self) -> Option<u8> {
        self.skip_whitespace();
        let byte = *self.text.as_bytes().get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// A string with neither escapes nor control characters (which JSON forbids raw).
    fn string(&mut self) -> Option<&'a str> {
        if self.next()? != b'"' {
            return None;
        }
        let start = self.at;
        let end = start + first_special(&self.text.as_bytes()[start..])?;
        if self.text.as_bytes()[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some(&self.text[start..end])
    }

    /// Whether a `null` comes next (taken if so).
    fn null(&mut self) -> bool {
        self.skip_whitespace();
        let null = self.text.as_bytes()[self.at..].starts_with(b"null");
        if null {
            self.at += 4;
        }
        null
    }

    /// A string, or `null`.
    fn nullable(&mut self) -> Option<Option<&'a str>> {
        if self.null() {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// An object of the fields `names` (at most 32), each at most once: the reader is handed
    /// to `value` with the field's index once its name and colon are read.
    fn fields(
        &mut self,
        names: &[&str],
        mut value: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if self.next()? != b'{' {
            return None;
        }
        self.skip_whitespace();
        if self.text.as_bytes().get(self.at) == Some(&b'}') {
            self.at += 1;
            return Some(());
        }
        let mut seen = 0u32;
        loop {
            let name = self.string()?;
            let field = names.iter().position(|known| *known == name)?;
            if seen & (1 << field) != 0 || self.next()? != b':' {
                return None;
            }
            seen |= 1 << field;
            value(self, field)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// The conversation's object (its channel, account, channel id and contact id), or
    /// `null`.
    fn conversation(&mut self) -> Option<Option<[Option<&'a str>; 4]>> {
        if self.null() {
            return Some(None);
        }
        let mut values = [None; 4];
        self.fields(
            &["channel", "account", "channel_id", "contact_id"],
            |plain, field| {
                values[field] = plain.nullable()?;
                Some(())
            },
        )?;
        Some(Some(values))
    }
}

/// Reads one input event from JSON already parsed (the API completes requests this way).
pub fn event_from_value(value: &Value) -> Result<Event, WireError> {
    event_of(from_value(value)?)
}

fn event_of(raw: RawInput<'_>) -> Result<Event, WireError> {
    let kind = required(raw.kind, "type")?;
    let body = match &*kind {
        "customer_message" => EventBody::CustomerMessage,
        "customer_comment" => EventBody::CustomerComment {
            comment_id: required(raw.comment_id, "comment_id")?,
        },
        "outbound_message" => EventBody::OutboundMessage(Outbound {
            sender: vocabulary(&required(raw.sender, "sender")?, "sender")?,
            kind: vocabulary(&required(raw.message_kind, "kind")?, "kind")?,
            tag: raw.tag.map(|t| vocabulary(&t, "tag")).transpose()?,
            comment_id: raw.comment_id,
            origin: raw
                .origin
                .map(|o| vocabulary(&o, "origin"))
                .transpose()?
                .unwrap_or_default(),
        }),
        "delivery_status" => EventBody::DeliveryStatus(DeliveryStatus {
            message_id: required(raw.message_id, "message_id")?,
            status: vocabulary(&required(raw.status, "status")?, "status")?,
            error: platform_error(raw.error)?,
        }),
        "conversation_closed" => EventBody::ConversationClosed { by: raw.by },
        "conversation_reopened" => EventBody::ConversationReopened { by: raw.by },
        "tick" => EventBody::Tick {
            at: instant(&required(raw.at, "at")?, "at")?,
        },
        _ => return Err(WireError::UnknownType),
    };
    let id = required(raw.id, "id")?;
    // A tick's instant is its occurrence.
    let occurred_at = match (&body, raw.occurred_at) {
        (_, Some(text)) => instant(&text, "occurred_at")?,
        (EventBody::Tick { at }, None) => *at,
        (_, None) => return Err(WireError::MissingField("occurred_at")),
    };
    let event = Event {
        id,
        occurred_at,
        logged_at: opt_instant(raw.logged_at.as_deref(), "logged_at")?,
        conversation: conversation(raw.conversation)?,
        body,
    };
    event.check_ids()?;
    Ok(event)
}

fn instant_value(t: Option<Timestamp>) -> Value {
    serde_json::to_value(InstantJson(t)).expect("an instant always serialises")
}

pub(crate) fn conversation_value(key: &ConversationKey) -> Value {
    serde_json::to_value(KeyJson(key)).expect("a key always serialises")
}

fn error_value(error: &PlatformError) -> Value {
    serde_json::to_value(ErrorJson(error)).expect("an error always serialises")
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
}

/// Writes one input event in canonical form (the inverse of [`parse_event`]).
pub fn event_to_json(event: &Event) -> String {
    let mut map = object(json!({
        "id": event.id,
        "type": event.body.type_name(),
        "occurred_at": event.occurred_at.to_string(),
    }));
    if let Some(logged_at) = event.logged_at {
        map.insert("logged_at".into(), logged_at.to_string().into());
    }
    map.insert(
        "conversation".into(),
        conversation_value(&event.conversation),
    );
    let fields = match &event.body {
        EventBody::CustomerMessage => json!({}),
        EventBody::CustomerComment { comment_id } => json!({"comment_id": comment_id}),
        EventBody::OutboundMessage(out) => {
            let mut fields = object(json!({
                "sender": out.sender.as_str(),
                "kind": out.kind.as_str(),
            }));
            if let Some(tag) = out.tag {
                fields.insert("tag".into(), tag.as_str().into());
            }
            if let Some(comment_id) = &out.comment_id {
                fields.insert("comment_id".into(), comment_id.clone().into());
            }
            fields.insert("origin".into(), out.origin.as_str().into());
            Value::Object(fields)
        }
        EventBody::DeliveryStatus(status) => {
            let mut fields = object(json!({
                "message_id": status.message_id,
                "status": status.status.as_str(),
            }));
            if let Some(error) = &status.error {
                fields.insert("error".into(), error_value(error));
            }
            Value::Object(fields)
        }
        EventBody::ConversationClosed { by } | EventBody::ConversationReopened { by } => match by {
            Some(by) => json!({"by": by}),
            None => json!({}),
        },
        EventBody::Tick { at } => json!({"at": at.to_string()}),
    };
    map.extend(object(fields));
    Value::Object(map).to_string()
}

/// Writes one output event: `id`, `type`, `conversation`, `occurred_at`, `caused_by`, then
/// the fields of its type. Written straight into its text, field by field, as serde_json's
/// compact printer writes JSON (same escapes; a test compares them): the service writes one
/// per output, and serde_json looks at every byte of a string to escape it, where text that
/// needs no escape (almost all of it) is copied here eight bytes at a time.
pub fn output_to_json(output: &Output) -> String {
    let mut text = String::with_capacity(512);
    let mut object = JsonObject::begin(&mut text);
    object.text("id", &output.id);
    object.word("type", output.body.type_name());
    key_fields(object.object("conversation"), &output.conversation);
    object.instant("occurred_at", Some(output.occurred_at));
    object.text("caused_by", &output.caused_by);
    match &output.body {
        OutputBody::StateChanged {
            from,
            to,
            window,
            window_ends_at,
            session,
        } => {
            object.word("from", from.as_str());
            object.word("to", to.as_str());
            object.word("window", window.as_str());
            object.instant("window_ends_at", *window_ends_at);
            object.number("session", i64::from(*session));
        }
        OutputBody::OutboundAccepted {
            message_id,
            messaging_type,
            tag,
            comment_id,
            window_ends_at,
        } => {
            object.text("message_id", message_id);
            object.word("messaging_type", messaging_type.as_str());
            object.optional_text("tag", tag.map(Tag::as_str));
            object.optional_text("comment_id", comment_id.as_deref());
            object.instant("window_ends_at", *window_ends_at);
        }
        OutputBody::OutboundHeld { message_id, until } => {
            object.text("message_id", message_id);
            object.instant("until", Some(*until));
        }
        OutputBody::DeliveryFailed {
            message_id,
            source,
            reason,
            detail,
            suggestion,
            error,
        } => {
            object.text("message_id", message_id);
            object.word("source", source.as_str());
            object.word("reason", reason.as_str());
            object.text("detail", detail);
            object.word("suggestion", suggestion.as_str());
            if let Some(error) = error {
                let mut fields = object.object("error");
                fields.number("code", error.code);
                match error.subcode {
                    Some(subcode) => fields.number("subcode", subcode),
                    None => fields.null("subcode"),
                }
                fields.optional_text("title", error.title.as_deref());
                fields.end();
            }
        }
        OutputBody::AutoReply { trigger, reply_by } => {
            object.word("trigger", trigger.as_str());
            object.instant("reply_by", *reply_by);
        }
        OutputBody::WindowClosing {
            closes_at,
            customer_waiting,
        } => {
            object.instant("closes_at", Some(*closes_at));
            object.boolean("customer_waiting", *customer_waiting);
        }
    }
    object.end();
    text
}

/// A conversation key's fields, as [`KeyJson`] serialises them.
fn key_fields(mut object: JsonObject<'_>, key: &ConversationKey) {
    object.display("channel", &key.channel);
    object.text("account", &key.account);
    object.text("channel_id", &key.channel_id);
    object.text("contact_id", &key.contact_id);
    object.end();
}

/// A JSON object being written into a string: `{`, then `"name":value` pairs, then `}`.
struct JsonObject<'a> {
    text: &'a mut String,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    fn begin(text: &'a mut String) -> Self {
        text.push('{');
        Self { text, empty: true }
    }

    /// A field's name: one of this module's, which need no escape.
    fn key(&mut self, name: &'static str) {
        debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !self.empty {
            self.text.push(',');
        }
        self.empty = false;
        self.text.push('"');
        self.text.push_str(name);
        self.text.push_str("\":");
    }

    fn text(&mut self, name: &'static str, value: &str) {
        self.key(name);
        push_json_string(self.text, value);
    }

    /// A word of one of ventana's vocabularies (a type, a state, a reason: lowercase
    /// letters and underscores), which needs no escape.
    fn word(&mut self, name: &'static str, value: &'static str) {
        self.key(name);
        debug_assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        self.text.push('"');
        self.text.push_str(value);
        self.text.push('"');
    }

    fn optional_text(&mut self, name: &'static str, value: Option<&str>) {
        match value {
            Some(value) => self.text(name, value),
            None => self.null(name),
        }
    }

    fn null(&mut self, name: &'static str) {
        self.key(name);
        self.text.push_str("null");
    }

    fn boolean(&mut self, name: &'static str, value: bool) {
        self.key(name);
        self.text.push_str(if value { "true" } else { "false" });
    }

    fn number(&mut self, name: &'static str, value: i64) {
        use std::fmt::Write;
        self.key(name);
        write!(self.text, "{value}").expect("writing to a string");
    }

    /// `value`'s printed text as a JSON string.
    fn display(&mut self, name: &'static str, value: &impl std::fmt::Display) {
        use std::fmt::Write;
        self.key(name);
        self.text.push('"');
        write!(Escaping(self.text), "{value}").expect("writing to a string");
        self.text.push('"');
    }

    /// An instant in RFC 3339 (digits, `-`, `:`, `.`, `T` and `Z`: no escape), `null`
    /// for none.
    fn instant(&mut self, name: &'static str, value: Option<Timestamp>) {
        use std::fmt::Write;
        self.key(name);
        match value {
            Some(at) => write!(self.text, "\"{at}\"").expect("writing to a string"),
            None => self.text.push_str("null"),
        }
    }

    /// A nested object under `name`; this one continues once it ends.
    fn object(&mut self, name: &'static str) -> JsonObject<'_> {
        self.key(name);
        JsonObject::begin(self.text)
    }

    fn end(self) {
        self.text.push('}');
    }
}

/// `value` as a JSON string.
fn push_json_string(text: &mut String, value: &str) {
    text.push('"');
    push_escaped(text, value);
    text.push('"');
}

/// Text written into a JSON string, escaped as it comes.
struct Escaping<'a>(&'a mut String);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, fragment: &str) -> std::fmt::Result {
        push_escaped(self.0, fragment);
        Ok(())
    }
}

/// Where the first byte of `bytes` that a JSON string cannot hold as it is lies: below
/// 0x20, `"` or `\\`. Eight bytes are tested at a time.
fn first_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    /// The high bit of each byte below 0x20, `"` or `\\` set. A borrow may set it in bytes
    /// after the first such byte too, never before: the lowest bit set is the first one.
    const fn specials(word: u64) -> u64 {
        let quote = word ^ (ONES * b'"' as u64);
        let backslash = word ^ (ONES * b'\\' as u64);
        (word.wrapping_sub(ONES * 0x20) & !word
            | quote.wrapping_sub(ONES) & !quote
            | backslash.wrapping_sub(ONES) & !backslash)
            & HIGHS
    }
    let mut at = 0;
    while at < bytes.len() {
        let word = match bytes.get(at..at + 8) {
            Some(word) => u64::from_le_bytes(word.try_into().expect("eight bytes")),
            None => {
                let mut padded = [b' '; 8];
                padded[..bytes.len() - at].copy_from_slice(&bytes[at..]);
                u64::from_le_bytes(padded)
            }
        };
        let found = specials(word);
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    None
}

/// `value` escaped as serde_json escapes the contents of a JSON string: `"` and `\\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx`; everything else
/// as is.
fn push_escaped(text: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rest = value;
    while let Some(index) = first_special(rest.as_bytes()) {
        // A special byte is ASCII, so `index` is a character boundary.
        let byte = rest.as_bytes()[index];
        text.push_str(&rest[..index]);
        match byte {
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            0x08 => text.push_str("\\b"),
            0x0c => text.push_str("\\f"),
            _ => {
                text.push_str("\\u00");
                text.push(char::from(HEX[usize::from(byte >> 4)]));
                text.push(char::from(HEX[usize::from(byte & 0xf)]));
            }
        }
        rest = &rest[index + 1..];
    }
    text.push_str(rest);
}

/// An instant as its RFC 3339 text (`null` for none), printed straight into the output.
struct InstantJson(Option<Timestamp>);

impl Serialize for InstantJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(t) => serializer.collect_str(&t),
            None => serializer.serialize_none(),
        }
    }
}

/// A conversation key's JSON: `channel`, `account`, `channel_id`, `contact_id`.
struct KeyJson<'a>(&'a ConversationKey);

impl Serialize for KeyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let key = self.0;
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("channel", &format_args!("{}", key.channel))?;
        map.serialize_entry("account", &key.account)?;
        map.serialize_entry("channel_id", &key.channel_id)?;
        map.serialize_entry("contact_id", &key.contact_id)?;
        map.end()
    }
}

/// A platform error's JSON: `code`, `subcode`, `title`.
struct ErrorJson<'a>(&'a PlatformError);

impl Serialize for ErrorJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("code", &self.0.code)?;
        map.serialize_entry("subcode", &self.0.subcode)?;
        map.serialize_entry("title", &self.0.title)?;
        map.end()
    }
}

/// Reads one output event printed by [`output_to_json`].
pub fn parse_output(line: &str) -> Result<Output, WireError> {
    output_of(from_text(line)?)
}

/// Reads one output event from JSON already parsed.
pub fn output_from_value(value: &Value) -> Result<Output, WireError> {
    output_of(from_value(value)?)
}

fn output_of(raw: RawOutput<'_>) -> Result<Output, WireError> {
    let kind = required(raw.kind, "type")?;
    let message_id = || required(raw.message_id.clone(), "message_id");
    let body = match kind.as_str() {
        "state_changed" => OutputBody::StateChanged {
            from: vocabulary(&required(raw.from, "from")?, "from")?,
            to: vocabulary(&required(raw.to, "to")?, "to")?,
            window: vocabulary(&required(raw.window, "window")?, "window")?,
            window_ends_at: opt_instant(raw.window_ends_at.as_deref(), "window_ends_at")?,
            session: required(raw.session, "session")?,
        },
        "outbound_accepted" => OutputBody::OutboundAccepted {
            message_id: message_id()?,
            messaging_type: vocabulary(
                &required(raw.messaging_type, "messaging_type")?,
                "messaging_type",
            )?,
            tag: raw.tag.map(|t| vocabulary(&t, "tag")).transpose()?,
            comment_id: raw.comment_id,
            window_ends_at: opt_instant(raw.window_ends_at.as_deref(), "window_ends_at")?,
        },
        "outbound_held" => OutputBody::OutboundHeld {
            message_id: message_id()?,
            until: instant(&required(raw.until, "until")?, "until")?,
        },
        "delivery_failed" => OutputBody::DeliveryFailed {
            message_id: message_id()?,
            source: vocabulary(&required(raw.source, "source")?, "source")?,
            reason: vocabulary(&required(raw.reason, "reason")?, "reason")?,
            detail: required(raw.detail, "detail")?,
            suggestion: vocabulary(&required(raw.suggestion, "suggestion")?, "suggestion")?,
            error: platform_error(raw.error)?,
        },
        "auto_reply" => OutputBody::AutoReply {
            trigger: vocabulary(&required(raw.trigger, "trigger")?, "trigger")?,
            reply_by: opt_instant(raw.reply_by.as_deref(), "reply_by")?,
        },
        "window_closing" => OutputBody::WindowClosing {
            closes_at: instant(&required(raw.closes_at, "closes_at")?, "closes_at")?,
            customer_waiting: required(raw.customer_waiting, "customer_waiting")?,
        },
        _ => return Err(WireError::UnknownType),
    };
    Ok(Output {
        id: required(raw.id, "id")?,
        conversation: conversation(raw.conversation)?.into(),
        occurred_at: instant(&required(raw.occurred_at, "occurred_at")?, "occurred_at")?,
        caused_by: required(raw.caused_by, "caused_by")?,
        body,
    })
}

/// Writes a snapshot line: `{"type":"snapshot", ...}`.
pub fn snapshot_to_json(snapshot: &Snapshot) -> String {
    snapshot_value(snapshot).to_string()
}

/// [`snapshot_to_json`] as a JSON value (the API adds the conversation's token to it).
pub fn snapshot_value(snapshot: &Snapshot) -> Value {
    json!({
        "type": "snapshot",
        "conversation": conversation_value(&snapshot.conversation),
        "state": snapshot.view.state.as_str(),
        "window": snapshot.view.window.as_str(),
        "window_ends_at": instant_value(snapshot.view.window_ends_at),
        "last_customer_at": instant_value(snapshot.last_customer_at),
        "session": snapshot.view.session,
        "allowed": snapshot.allowed.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "events": snapshot.events,
        "last_event_id": snapshot.last_event_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONV: &str = r#""conversation": {"channel": "whatsapp", "account": "acme", "channel_id": "1555", "contact_id": "49151"}"#;

    fn line(fields: &str) -> String {
        format!("{{{fields}, {CONV}}}")
    }

    /// Every input read without serde reads as serde reads it, and whatever it leaves to
    /// serde is still read (or refused) by serde: the examples' events, and 200 000 variants
    /// of them with a byte changed, inserted or dropped, or a field added, repeated or nulled.
    #[test]
    fn inputs_read_without_serde_read_as_serde_reads_them() {
        let lines: Vec<&str> = [
            include_str!("../../../examples/whatsapp.jsonl"),
            include_str!("../../../examples/messenger.jsonl"),
            include_str!("../../../examples/instagram-comment.jsonl"),
        ]
        .iter()
        .flat_map(|file| file.lines())
        .chain([
            r#"{"id":"s1","type":"delivery_status","occurred_at":"2026-03-02T10:00:00Z","message_id":"m1","status":"failed","error":{"code":10,"subcode":2018278},"conversation":{"channel":"messenger","account":"a","channel_id":"p","contact_id":"c"}}"#,
            r#" { "id" : "t1" , "type":"tick","at":"2026-03-02T10:00:00Z","occurred_at":null,"logged_at":"2026-03-02T10:00:00.5Z", "conversation" : {"channel":"custom:sms","account":"é","channel_id":"p","contact_id":"c"} }
"#,
            r#"{"id":"c1","type":"conversation_closed","by":null,"occurred_at":"2026-03-02T10:00:00Z","conversation":null}"#,
            "{}",
        ])
        .collect();
        let serde = |text: &str| from_text(text).and_then(event_of);
        // Whether the input was read without serde.
        let check = |text: &str| match plain_input(text) {
            Some(raw) => {
                assert_eq!(event_of(raw), serde(text), "{text}");
                true
            }
            None => false,
        };
        let plain_read = lines.iter().filter(|line| check(line)).count();
        assert_eq!(
            plain_read,
            lines.len() - 1,
            "only the error object goes to serde"
        );
        let pieces = [
            " ",
            "\t",
            "\n",
            "\\",
            "\\n",
            "\"",
            ",",
            ":",
            "{",
            "}",
            "null",
            "1",
            "\u{1}",
            "\u{7f}",
            "é",
            r#""id":"x","#,
            r#""extra":1,"#,
            r#""type":null,"#,
            r#""conversation":null,"#,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let mut variants_read = 0;
        for _ in 0..200_000 {
            let line = lines[random(lines.len())];
            let mut text = line.to_owned();
            let mut at = random(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match random(3) {
                0 => text.insert_str(at, pieces[random(pieces.len())]),
                1 if at < text.len() => {
                    text.remove(at);
                }
                _ => {
                    let after = text[at..].find(',').map_or(text.len(), |i| at + i);
                    text.replace_range(at..after, pieces[random(pieces.len())]);
                }
            }
            variants_read += usize::from(check(&text));
        }
        assert!(
            variants_read > 30_000,
            "{variants_read} variants read without serde"
        );
    }

    /// Outputs are written straight into their text: compact, fields in their order, `null`
    /// for an absent instant, text escaped, and read back as they were.
    #[test]
    fn outputs_print_canonically_and_read_back() {
        let at = Timestamp::parse_rfc3339("2026-03-02T10:00:01.250Z").unwrap();
        let conversation =
            ConversationKey::new(Channel::Custom("s\"ms".into()), "acme", "line\n1", "c\u{1}");
        let held = Output {
            id: "t-1".into(),
            conversation: conversation.into(),
            occurred_at: at,
            caused_by: "e\"1".into(),
            body: OutputBody::OutboundHeld {
                message_id: "m1".into(),
                until: at,
            },
        };
        let failed = Output {
            body: OutputBody::DeliveryFailed {
                message_id: "m2".into(),
                source: Source::Platform,
                reason: ventana_core::Reason::PlatformError,
                detail: "R13: failed.".into(),
                suggestion: Suggestion::None,
                error: Some(PlatformError {
                    code: 131_047,
                    subcode: None,
                    title: Some("Re-engagement".into()),
                }),
            },
            ..held.clone()
        };
        let key = r#"{"channel":"custom:s\"ms","account":"acme","channel_id":"line\n1","contact_id":"c\u0001"}"#;
        assert_eq!(
            output_to_json(&held),
            format!(
                r#"{{"id":"t-1","type":"outbound_held","conversation":{key},"occurred_at":"2026-03-02T10:00:01.250Z","caused_by":"e\"1","message_id":"m1","until":"2026-03-02T10:00:01.250Z"}}"#
            )
        );
        assert_eq!(
            output_to_json(&failed),
            format!(
                r#"{{"id":"t-1","type":"delivery_failed","conversation":{key},"occurred_at":"2026-03-02T10:00:01.250Z","caused_by":"e\"1","message_id":"m2","source":"platform","reason":"platform_error","detail":"R13: failed.","suggestion":"none","error":{{"code":131047,"subcode":null,"title":"Re-engagement"}}}}"#
            )
        );
        for output in [held, failed] {
            assert_eq!(parse_output(&output_to_json(&output)).unwrap(), output);
        }
    }

    /// Strings are escaped byte for byte as serde_json escapes them: every control
    /// character, quotes and backslashes at every position of an eight-byte word, and text
    /// beyond ASCII.
    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet: Vec<char> = (0..0x20u8)
            .map(char::from)
            .chain("\"\\/ az~\u{7f}\u{80}é€😀".chars())
            .collect();
        let mut cases: Vec<String> = (0..0x80u8).map(|b| char::from(b).to_string()).collect();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 40) as usize;
            let text = (0..len)
                .map(|i| {
                    // Mostly plain letters, as real text is, so the fast path is crossed too.
                    let pick = (state >> (i % 50)) as usize;
                    if pick % 5 == 0 {
                        alphabet[pick / 5 % alphabet.len()]
                    } else {
                        'a'
                    }
                })
                .collect();
            cases.push(text);
        }
        for case in &cases {
            let mut ours = String::new();
            push_json_string(&mut ours, case);
            assert_eq!(ours, serde_json::to_string(case).unwrap(), "{case:?}");
        }
    }

    #[test]
    fn reads_the_design_example_and_ignores_unknown_fields() {
        let text = line(
            r#""id": "wamid.1", "type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z", "logged_at": "2026-03-02T10:00:01.250Z", "extra": [1, 2]"#,
        );
        let event = parse_event(&text).unwrap();
        assert_eq!(event.body, EventBody::CustomerMessage);
        assert_eq!(
            event.decision_time().to_string(),
            "2026-03-02T10:00:01.250Z"
        );
        assert_eq!(
            event_to_json(&event),
            r#"{"id":"wamid.1","type":"customer_message","occurred_at":"2026-03-02T10:00:00Z","logged_at":"2026-03-02T10:00:01.250Z","conversation":{"channel":"whatsapp","account":"acme","channel_id":"1555","contact_id":"49151"}}"#
        );
    }

    #[test]
    fn says_precisely_what_is_wrong() {
        let cases = [
            ("not json", "undecodable"),
            (
                &line(r#""id": "1", "type": "fax", "occurred_at": "2026-03-02T10:00:00Z""#),
                "unknown_type",
            ),
            (
                &line(
                    r#""id": "1", "type": "customer_comment", "occurred_at": "2026-03-02T10:00:00Z""#,
                ),
                "missing_field",
            ),
            (
                &line(r#""type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z""#),
                "missing_field",
            ),
            (
                &line(r#""id": "1", "type": "customer_message", "occurred_at": "yesterday""#),
                "invalid_field",
            ),
            (
                &line(
                    r#""id": "1", "type": "outbound_message", "sender": "robot", "kind": "message", "occurred_at": "2026-03-02T10:00:00Z""#,
                ),
                "invalid_field",
            ),
            (
                r#"{"id": "1", "type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z"}"#,
                "missing_field",
            ),
            (
                &line(
                    r#""id": 7, "type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z""#,
                ),
                "undecodable",
            ),
        ];
        for (text, reason) in cases {
            let error = parse_event(text).unwrap_err();
            assert_eq!(error.reason(), reason, "{text}: {error}");
        }
    }

    #[test]
    fn escaped_text_reads_as_plain_text_and_a_failing_input_is_read_again_to_say_where() {
        let escaped = line(
            r#""id": "1", "type": "customer\u005fmessage", "occurred_at": "2026-03-02T10:00:00\u005a""#,
        );
        let plain =
            line(r#""id": "1", "type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z""#);
        assert_eq!(parse_event(&escaped).unwrap(), parse_event(&plain).unwrap());
        // An input that fails is read again to say where it fails.
        let error = parse_event(&line(
            r#""id": "1", "type": 5, "occurred_at": "2026-03-02T10:00:00Z""#,
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("`type` has the wrong JSON type"), "{error}");
    }

    #[test]
    fn a_tick_needs_only_its_instant() {
        let token = ConversationKey::new(Channel::WhatsApp, "acme", "1555", "49151").token();
        let at = "2026-03-03T10:00:00Z";
        let event = parse_event(&line(&format!(
            r#""id": "tick:{token}:{at}", "type": "tick", "at": "{at}""#
        )))
        .unwrap();
        assert_eq!(event.occurred_at.to_string(), at);
        // A tick's id names its own conversation and instant, nothing else.
        for id in [
            "t1".to_owned(),
            format!("tick:{token}:2026-03-03T09:00:00Z"),
        ] {
            let text = line(&format!(r#""id": "{id}", "type": "tick", "at": "{at}""#));
            assert_eq!(
                parse_event(&text).unwrap_err().to_string(),
                "invalid field `id`: a tick's id is tick:<conversation token>:<its instant>"
            );
        }
    }

    #[test]
    fn errors_name_the_field_and_never_repeat_the_input() {
        let secret = "SECRET-BODY: my card is 4111";
        let cases = [
            line(&format!(
                r#""id": "1", "type": "{secret}", "occurred_at": "2026-03-02T10:00:00Z""#
            )),
            line(&format!(
                r#""id": "1", "type": "customer_message", "occurred_at": "{secret}""#
            )),
            line(&format!(
                r#""id": "1", "type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z", "by": {{"{secret}": 1}}"#
            )),
            line(&format!(
                r#""id": "1", "type": "outbound_message", "sender": "{secret}", "kind": "message", "occurred_at": "2026-03-02T10:00:00Z""#
            )),
            line(&format!(
                r#""id": "1", "type": "delivery_status", "message_id": "m", "status": "failed", "error": {{"code": "{secret}"}}, "occurred_at": "2026-03-02T10:00:00Z""#
            )),
            line(&format!(
                r#""id": "{secret}\n", "type": "customer_message", "occurred_at": "2026-03-02T10:00:00Z""#
            )),
            format!(r#"{{"id": 1, "{secret}"#),
        ];
        for text in &cases {
            let error = parse_event(text).unwrap_err().to_string();
            assert!(!error.contains("SECRET"), "{error}");
        }
        let error = parse_event(&cases[4]).unwrap_err().to_string();
        assert_eq!(
            error,
            "undecodable: `error.code` has the wrong JSON type at line 1 column 126"
        );
        let error = parse_event(&cases[3]).unwrap_err().to_string();
        assert_eq!(
            error,
            "invalid field `sender`: not one of: agent, automation"
        );
        let error = parse_event(&line(
            r#""id": "1", "type": "customer_message", "occurred_at": "3000-01-01T00:00:00Z""#,
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "invalid field `occurred_at`: an instant outside the years 1677 to 2262"
        );
    }
}
