//! The request-reply API's JSON (docs/api.md): the requests ventanad reads, the replies it
//! writes, and its errors, `{"error": {"code", "message"}}`, whose [`ApiErrorCode`] clients
//! branch on. ventanad and the Meta gateway both use these types, so neither matches
//! strings.

use std::fmt;

use serde_json::{Map, Value, json};
use ventana_core::{ConversationKey, ConversationToken, Event, Snapshot, Span, Timestamp};
use ventana_notifier::Output;

use crate::WireError;
use crate::json::{conversation_value, event_from_value, output_from_value, parse_conversation};

/// What went wrong with a request, and so what a client does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiErrorCode {
    /// The request is wrong: not JSON, a field missing or invalid, or a message that no
    /// state could ever let out. Fix the request; sent again unchanged it gets the same
    /// answer. Nothing was logged.
    BadRequest,
    /// No conversation has this token: ventana has seen nothing of it. Name it with
    /// `conversation` instead to ask about a conversation not yet started.
    NotFound,
    /// The message id was decided before: its decision is on `VENTANA_OUT`
    /// (`outbound_accepted`, `outbound_held` or `delivery_failed` with this `message_id`).
    /// Never send it again under the same id.
    Duplicate,
    /// The message was logged but not decided in time. It will be decided once, and the
    /// decision published on `VENTANA_OUT`; the same id sent again answers `duplicate`.
    Timeout,
    /// ventanad could not log the message (NATS trouble): nothing happened. Retry with the
    /// same id.
    Unavailable,
    /// ventanad could not read its own store. Retry later; it is worth an alert if it
    /// persists.
    Internal,
}

ventana_core::text_enum!(
    ApiErrorCode {
        BadRequest => "bad_request",
        NotFound => "not_found",
        Duplicate => "duplicate",
        Timeout => "timeout",
        Unavailable => "unavailable",
        Internal => "internal",
    }
);

/// An API failure: a code to branch on, and a message people can read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of failure (see [`ApiErrorCode`] for what to do about each).
    pub code: ApiErrorCode,
    /// What went wrong, for people (never message text).
    pub message: String,
}

impl ApiError {
    /// An error with its code and message.
    pub fn new(code: ApiErrorCode, message: impl ToString) -> Self {
        Self {
            code,
            message: message.to_string(),
        }
    }

    /// A [`ApiErrorCode::BadRequest`].
    pub fn bad_request(message: impl ToString) -> Self {
        Self::new(ApiErrorCode::BadRequest, message)
    }

    /// A [`ApiErrorCode::Internal`].
    pub fn internal(message: impl ToString) -> Self {
        Self::new(ApiErrorCode::Internal, message)
    }

    /// `{"code": .., "message": ..}`.
    pub fn to_value(&self) -> Value {
        json!({"code": self.code.as_str(), "message": self.message})
    }

    /// The reply: `{"error": {"code": .., "message": ..}}`.
    pub fn to_json(&self) -> String {
        json!({"error": self.to_value()}).to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

fn object(payload: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the request must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("not JSON: {e}"))),
    }
}

/// A conversation as a request names it: by its key (which may be new to ventana) or by
/// its token (which must be known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConversationRef {
    /// By its four-part key.
    Key(ConversationKey),
    /// By its token (as printed in subjects and outputs).
    Token(ConversationToken),
}

impl ConversationRef {
    /// `conversation` (an object) if present, else `token`.
    fn of(request: &Map<String, Value>) -> Result<Self, ApiError> {
        match (request.get("conversation"), request.get("token")) {
            (Some(value), _) => Ok(Self::Key(
                parse_conversation(value).map_err(ApiError::bad_request)?,
            )),
            (None, Some(Value::String(token))) => ConversationToken::parse(token)
                .map(Self::Token)
                .ok_or_else(|| ApiError::bad_request("`token` is not a conversation token")),
            _ => Err(ApiError::bad_request(
                "name the conversation with `conversation` or `token`",
            )),
        }
    }

    /// How a request names it: `("conversation", {..})` or `("token", "..")`.
    pub fn field(&self) -> (&'static str, Value) {
        match self {
            Self::Key(key) => ("conversation", conversation_value(key)),
            Self::Token(token) => ("token", Value::String(token.to_string())),
        }
    }

    /// The conversation's token.
    pub fn token(&self) -> ConversationToken {
        match self {
            Self::Key(key) => key.token(),
            Self::Token(token) => *token,
        }
    }
}

/// `ventana.api.v1.state`: `{"conversation": {..}}` or `{"token": ".."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRequest {
    /// Which conversation.
    pub conversation: ConversationRef,
}

/// A `decision` request: `{"conversation": {...}, "id": "..."}` (or `token` for
/// `conversation`).
#[derive(Clone, Debug)]
pub struct DecisionRequest {
    /// Which conversation.
    pub conversation: ConversationRef,
    /// The message id.
    pub id: String,
}

impl DecisionRequest {
    /// Reads a request.
    pub fn parse(payload: &[u8]) -> Result<Self, ApiError> {
        let request = object(payload)?;
        let Some(Value::String(id)) = request.get("id") else {
            return Err(ApiError::bad_request("`id` (the message id) is required"));
        };
        ventana_core::check_id(id)
            .map_err(|problem| ApiError::bad_request(format!("`id` {problem}")))?;
        Ok(Self {
            conversation: ConversationRef::of(&request)?,
            id: id.clone(),
        })
    }
}

impl StateRequest {
    /// Reads a request.
    pub fn parse(payload: &[u8]) -> Result<Self, ApiError> {
        Ok(Self {
            conversation: ConversationRef::of(&object(payload)?)?,
        })
    }
}

/// `ventana.api.v1.check` and `ventana.api.v1.send`: the fields of an `outbound_message`
/// event; `type` is implied, `occurred_at` defaults to now, `logged_at` is the log's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    fields: Map<String, Value>,
}

impl OutboundRequest {
    /// Reads a request.
    pub fn parse(payload: &[u8]) -> Result<Self, ApiError> {
        Ok(Self {
            fields: object(payload)?,
        })
    }

    /// The conversation the request names (`check` also takes a `token`).
    pub fn conversation(&self) -> Result<ConversationRef, ApiError> {
        ConversationRef::of(&self.fields)
    }

    /// Whether the request carries a message `id` (`send` needs one).
    pub fn has_id(&self) -> bool {
        self.fields.contains_key("id")
    }

    /// The `outbound_message` event the request stands for, occurring at `now` unless it
    /// says otherwise, with `default_id` when it has no `id`, in `conversation` when it
    /// names none (a `check` by `token`: the conversation the token was found to be).
    pub fn into_event(
        mut self,
        now: Timestamp,
        default_id: Option<&str>,
        conversation: Option<&ConversationKey>,
    ) -> Result<Event, ApiError> {
        let fields = &mut self.fields;
        fields.insert("type".into(), "outbound_message".into());
        if let Some(key) = conversation {
            fields
                .entry("conversation")
                .or_insert_with(|| conversation_value(key));
        }
        fields
            .entry("occurred_at")
            .or_insert_with(|| now.to_string().into());
        if let Some(id) = default_id {
            fields.entry("id").or_insert_with(|| id.into());
        }
        fields.remove("logged_at");
        event_from_value(&Value::Object(self.fields)).map_err(ApiError::bad_request)
    }
}

/// Where a page of `expiring` starts: after this window end and conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// The window end of the last conversation of the previous page.
    pub at: Timestamp,
    /// That conversation's token.
    pub token: ConversationToken,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.at, self.token)
    }
}

impl Cursor {
    /// Reads a cursor printed by `Display`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let (at, token) = text
            .split_once('|')
            .ok_or_else(|| ApiError::bad_request("bad cursor"))?;
        Ok(Self {
            at: Timestamp::parse_rfc3339(at).map_err(ApiError::bad_request)?,
            token: ConversationToken::parse(token)
                .ok_or_else(|| ApiError::bad_request("bad cursor"))?,
        })
    }
}

/// `ventana.api.v1.expiring`: `{"within": "1h", "limit": 100, "cursor": ".."}`, each
/// optional.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiringRequest {
    /// How far ahead to look (1 hour unless said).
    pub within: Span,
    /// At most this many conversations (1–1000; 100 unless said).
    pub limit: usize,
    /// Where the previous page ended.
    pub cursor: Option<Cursor>,
}

impl ExpiringRequest {
    /// Reads a request.
    pub fn parse(payload: &[u8]) -> Result<Self, ApiError> {
        let request = object(payload)?;
        let within = match request.get("within") {
            // The parser's message would quote the input: the API never repeats it.
            Some(Value::String(text)) => crate::parse_span(text).map_err(|_| {
                ApiError::bad_request("`within` is a positive duration such as \"1h\" or \"90m\"")
            })?,
            None => Span::from_hours(1),
            _ => {
                return Err(ApiError::bad_request(
                    "`within` is a duration such as \"1h\"",
                ));
            }
        };
        let limit = match request.get("limit") {
            None | Some(Value::Null) => 100,
            Some(limit) => match limit.as_u64() {
                Some(limit @ 1..=1000) => limit as usize,
                _ => {
                    return Err(ApiError::bad_request(
                        "`limit` is a whole number from 1 to 1000",
                    ));
                }
            },
        };
        let cursor = match request.get("cursor") {
            None | Some(Value::Null) => None,
            Some(Value::String(cursor)) => Some(Cursor::parse(cursor)?),
            Some(_) => {
                return Err(ApiError::bad_request(
                    "`cursor` is the `next_cursor` of the page before",
                ));
            }
        };
        Ok(Self {
            within,
            limit,
            cursor,
        })
    }
}

/// One conversation of an `expiring` page: its window closes at `closes_at`.
#[derive(Clone, Debug)]
pub struct Expiring {
    /// The conversation's token.
    pub token: ConversationToken,
    /// When its window closes.
    pub closes_at: Timestamp,
    /// The conversation now.
    pub snapshot: Snapshot,
}

/// The reply to `expiring`: `{"conversations": [{"token", "closes_at", "conversation",
/// "state", "window"}, ..], "next_cursor": ..}`.
pub fn expiring_to_json(page: &[Expiring], next_cursor: Option<Cursor>) -> String {
    let conversations: Vec<Value> = page
        .iter()
        .map(|row| {
            json!({
                "token": row.token.to_string(),
                "closes_at": row.closes_at.to_string(),
                "conversation": conversation_value(&row.snapshot.conversation),
                "state": row.snapshot.view.state.as_str(),
                "window": row.snapshot.view.window.as_str(),
            })
        })
        .collect();
    json!({
        "conversations": conversations,
        "next_cursor": next_cursor.map(|c| c.to_string()),
    })
    .to_string()
}

/// A decision as ventanad answered `send` or `check`: the output, and its JSON as sent, to
/// be passed on unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionReply {
    /// The decision output, typed.
    pub output: Output,
    /// The same output as ventanad sent it.
    pub json: Value,
}

impl DecisionReply {
    /// A decision from its JSON.
    pub fn from_value(json: Value) -> Result<Self, WireError> {
        Ok(Self {
            output: output_from_value(&json)?,
            json,
        })
    }
}

/// What ventanad answered to `send` or `check`.
#[derive(Debug)]
pub enum Reply {
    /// The decision (`outbound_accepted`, `outbound_held` or `delivery_failed`).
    Decision(Box<DecisionReply>),
    /// The request could not be answered.
    Error(ApiError),
}

/// Reads ventanad's answer to `send` or `check`. An error code this version does not know
/// reads as [`ApiErrorCode::Unavailable`].
pub fn parse_decision_reply(payload: &[u8]) -> Result<Reply, WireError> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| WireError::Undecodable(e.to_string()))?;
    if let Some(error) = value.get("error") {
        let text = |field: &str| error.get(field).and_then(Value::as_str).unwrap_or("");
        return Ok(Reply::Error(ApiError {
            code: ApiErrorCode::parse(text("code")).unwrap_or(ApiErrorCode::Unavailable),
            message: text("message").to_owned(),
        }));
    }
    DecisionReply::from_value(value).map(|decision| Reply::Decision(Box::new(decision)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_back_as_written() {
        let error = ApiError::new(ApiErrorCode::Duplicate, "message m1 was already decided");
        assert_eq!(
            error.to_json(),
            r#"{"error":{"code":"duplicate","message":"message m1 was already decided"}}"#
        );
        let Reply::Error(read) = parse_decision_reply(error.to_json().as_bytes()).unwrap() else {
            panic!("an error reads as an error");
        };
        assert_eq!(read, error);
    }

    #[test]
    fn a_cursor_reads_back_and_bad_ones_are_refused() {
        let token = ConversationKey {
            channel: ventana_core::Channel::WhatsApp,
            account: "acme".into(),
            channel_id: "1555".into(),
            contact_id: "49151".into(),
        }
        .token();
        let cursor = Cursor {
            at: Timestamp::parse_rfc3339("2026-03-02T10:00:00Z").unwrap(),
            token,
        };
        assert_eq!(Cursor::parse(&cursor.to_string()), Ok(cursor));
        for bad in [
            "",
            "2026-03-02T10:00:00Z",
            "yesterday|x",
            "2026-03-02T10:00:00Z|x",
        ] {
            assert_eq!(
                Cursor::parse(bad).unwrap_err().code,
                ApiErrorCode::BadRequest
            );
        }
    }

    #[test]
    fn an_outbound_request_becomes_its_event() {
        let request = OutboundRequest::parse(
            br#"{"conversation": {"channel": "whatsapp", "account": "acme", "channel_id": "1555", "contact_id": "49151"}, "sender": "agent", "kind": "message", "logged_at": "2020-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert!(!request.has_id());
        let now = Timestamp::parse_rfc3339("2026-03-02T10:00:00Z").unwrap();
        let event = request.into_event(now, Some("check"), None).unwrap();
        assert_eq!(event.id, "check");
        assert_eq!(event.occurred_at, now);
        assert_eq!(event.logged_at, None);
        assert!(matches!(
            event.body,
            ventana_core::EventBody::OutboundMessage(_)
        ));
        let refused = OutboundRequest::parse(b"[1]").unwrap_err();
        assert_eq!(refused.code, ApiErrorCode::BadRequest);
    }
}
