//! The request-reply API on the NATS services framework (visible to `$SRV.PING/INFO/STATS`):
//! `state`, `check` (no side effect), `send` (logged, answered once folded) and `expiring`.
//! JSON in and out; errors are `{"error":{"code":..,"message":..}}`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::service::ServiceExt;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tracing::warn;
use ventana_core::{Conversation, ConversationKey, ConversationToken, EventBody, Span, Timestamp};
use ventana_notifier::{OutputBody, advance_to, fold_event};
use ventana_wire::json::parse_conversation;
use ventana_wire::subjects::{self, MSG_ID, input_subject};
use ventana_wire::{output_to_json, parse_event, snapshot_to_json};

use crate::Shared;
use crate::clock::now;

/// An API failure: a code clients can branch on, and a message people can read.
#[derive(Debug)]
pub struct ApiError {
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl ToString) -> Self {
        Self {
            code: "bad_request",
            message: message.to_string(),
        }
    }

    fn internal(message: impl ToString) -> Self {
        Self {
            code: "internal",
            message: message.to_string(),
        }
    }

    fn json(&self) -> String {
        json!({"error": {"code": self.code, "message": self.message}}).to_string()
    }
}

type Reply = Result<String, ApiError>;

fn body(payload: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(payload) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the request must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("not JSON: {e}"))),
    }
}

/// The conversation named by `conversation` (an object) or `token`, as stored (or new).
async fn conversation_of(
    shared: &Shared,
    request: &serde_json::Map<String, Value>,
) -> Result<Conversation, ApiError> {
    let (token, key): (ConversationToken, Option<ConversationKey>) =
        match (request.get("conversation"), request.get("token")) {
            (Some(value), _) => {
                let key = parse_conversation(value).map_err(ApiError::bad_request)?;
                (key.token(), Some(key))
            }
            (None, Some(Value::String(token))) => (
                ConversationToken::parse(token)
                    .ok_or_else(|| ApiError::bad_request("`token` is not a conversation token"))?,
                None,
            ),
            _ => {
                return Err(ApiError::bad_request(
                    "name the conversation with `conversation` or `token`",
                ));
            }
        };
    let store = shared.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.load(token))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    match (stored, key) {
        (Some(conversation), _) => Ok(conversation),
        (None, Some(key)) => Ok(Conversation::new(key)),
        (None, None) => Err(ApiError {
            code: "not_found",
            message: format!("no conversation has token {token}"),
        }),
    }
}

/// A copy of the conversation as of now: deadlines already passed have fired.
fn as_of_now(shared: &Shared, mut conversation: Conversation) -> Conversation {
    advance_to(&mut conversation, now(), &shared.policy, &mut Vec::new());
    conversation
}

async fn state(shared: &Shared, payload: &[u8]) -> Reply {
    let request = body(payload)?;
    let conversation = as_of_now(shared, conversation_of(shared, &request).await?);
    Ok(snapshot_to_json(&conversation.snapshot(&shared.policy)))
}

/// Turns a request into an `outbound_message` event: `type` is implied, `occurred_at`
/// defaults to now, `id` to `default_id`. Refuses what could never be sent on the channel.
fn outbound_event(
    mut request: serde_json::Map<String, Value>,
    default_id: Option<&str>,
) -> Result<ventana_core::Event, ApiError> {
    request.insert("type".into(), "outbound_message".into());
    request
        .entry("occurred_at")
        .or_insert_with(|| now().to_string().into());
    if let Some(id) = default_id {
        request.entry("id").or_insert_with(|| id.into());
    }
    request.remove("logged_at");
    let event = parse_event(&Value::Object(request).to_string()).map_err(ApiError::bad_request)?;
    let EventBody::OutboundMessage(out) = &event.body else {
        return Err(ApiError::bad_request("not an outbound message"));
    };
    // What no state could let out is refused up front, not logged (docs/rules.md §1.4 point 14).
    if let Some(why) = out.unsendable_on(&event.conversation.channel) {
        return Err(ApiError::bad_request(why));
    }
    Ok(event)
}

async fn check(shared: &Shared, payload: &[u8]) -> Reply {
    let request = body(payload)?;
    let conversation = conversation_of(shared, &request).await?;
    let mut event = outbound_event(request, Some("check"))?;
    event.logged_at = Some(now());
    ventana_core::validate(&event, &shared.policy).map_err(ApiError::bad_request)?;
    let mut copy = conversation;
    let mut outputs = Vec::new();
    fold_event(&mut copy, &event, &shared.policy, &mut outputs);
    outputs
        .iter()
        .find(|o| {
            o.caused_by == event.id
                && matches!(
                    o.body,
                    OutputBody::OutboundAccepted { .. }
                        | OutputBody::OutboundHeld { .. }
                        | OutputBody::DeliveryFailed { .. }
                )
        })
        .map(output_to_json)
        .ok_or_else(|| ApiError {
            code: "duplicate",
            message: format!("message {} was already decided", event.id),
        })
}

async fn send(
    shared: Arc<Shared>,
    js: &jetstream::Context,
    partitions: u32,
    timeout: Duration,
    payload: &[u8],
) -> Reply {
    let request = body(payload)?;
    if !request.contains_key("id") {
        return Err(ApiError::bad_request("`id` (the message id) is required"));
    }
    let event = outbound_event(request, None)?;
    let token = event.conversation.token();
    let (sender, receiver) = oneshot::channel();
    shared.wait_for(token, event.id.clone(), sender);
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, event.id.as_str());
    let published = async {
        js.publish_with_headers(
            input_subject(&event.conversation, partitions),
            headers,
            ventana_wire::event_to_json(&event).into(),
        )
        .await?
        .await
    }
    .await;
    match published {
        Ok(ack) if ack.duplicate => {
            shared.forget_wait(token, &event.id);
            return Err(ApiError {
                code: "duplicate",
                message: format!(
                    "message {} is already in the log; its decision was published on VENTANA_OUT",
                    event.id
                ),
            });
        }
        Ok(_) => {}
        Err(error) => {
            shared.forget_wait(token, &event.id);
            return Err(ApiError {
                code: "unavailable",
                message: format!("cannot log the message: {error}"),
            });
        }
    }
    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(decision)) => Ok(decision.json),
        _ => {
            shared.forget_wait(token, &event.id);
            Err(ApiError {
                code: "timeout",
                message: format!(
                    "message {} was logged but not decided within {timeout:?} (a duplicate id is never decided twice)",
                    event.id
                ),
            })
        }
    }
}

async fn expiring(shared: &Shared, payload: &[u8]) -> Reply {
    let request = body(payload)?;
    let within = match request.get("within") {
        Some(Value::String(text)) => {
            ventana_wire::parse_span(text).map_err(ApiError::bad_request)?
        }
        None => Span::from_hours(1),
        _ => {
            return Err(ApiError::bad_request(
                "`within` is a duration such as \"1h\"",
            ));
        }
    };
    let limit = request
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
    let start = now();
    let cursor = match request.get("cursor") {
        Some(Value::String(cursor)) => {
            let (at, token) = cursor
                .split_once('|')
                .ok_or_else(|| ApiError::bad_request("bad cursor"))?;
            let at = Timestamp::parse_rfc3339(at).map_err(ApiError::bad_request)?;
            let token = ConversationToken::parse(token)
                .ok_or_else(|| ApiError::bad_request("bad cursor"))?;
            (at, Some(token))
        }
        _ => (start, None),
    };
    let store = shared.store.clone();
    let until = start.plus(within);
    let rows = tokio::task::spawn_blocking(move || {
        store.expiring(cursor, until, limit).and_then(|rows| {
            rows.into_iter()
                .map(|(at, token)| Ok((at, token, store.load(token)?)))
                .collect::<Result<Vec<_>, _>>()
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(|(at, token, _)| format!("{at}|{token}")))
        .flatten();
    let conversations: Vec<Value> = rows
        .into_iter()
        .filter_map(|(at, token, conversation)| {
            let conversation = conversation?;
            let snapshot: Value = serde_json::from_str(&snapshot_to_json(&conversation.snapshot(&shared.policy))).ok()?;
            Some(json!({"token": token.to_string(), "closes_at": at.to_string(), "conversation": snapshot["conversation"], "state": snapshot["state"], "window": snapshot["window"]}))
        })
        .collect();
    Ok(json!({"conversations": conversations, "next_cursor": next_cursor}).to_string())
}

/// Serves the four endpoints until `shutdown`.
pub async fn run(
    shared: Arc<Shared>,
    client: async_nats::Client,
    js: jetstream::Context,
    partitions: u32,
    send_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let service = client
        .service_builder()
        .description("ventana: what may still be sent in every conversation, and until when")
        .start(subjects::SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the NATS service: {e}"))?;
    let mut endpoints = Vec::new();
    for subject in [
        subjects::API_STATE,
        subjects::API_CHECK,
        subjects::API_SEND,
        subjects::API_EXPIRING,
    ] {
        endpoints.push(
            service
                .endpoint(subject)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve {subject}: {e}"))?,
        );
    }
    let mut requests = futures::stream::select_all(endpoints.into_iter().map(|e| e.boxed()));
    loop {
        let request = tokio::select! {
            request = requests.next() => request,
            _ = shutdown.changed() => break,
        };
        let Some(request) = request else { break };
        let shared = shared.clone();
        let js = js.clone();
        tokio::spawn(async move {
            let subject = request.message.subject.to_string();
            let payload = request.message.payload.clone();
            let reply = match subject.as_str() {
                subjects::API_STATE => state(&shared, &payload).await,
                subjects::API_CHECK => check(&shared, &payload).await,
                subjects::API_SEND => {
                    send(shared.clone(), &js, partitions, send_timeout, &payload).await
                }
                subjects::API_EXPIRING => expiring(&shared, &payload).await,
                _ => Err(ApiError::bad_request(format!("unknown endpoint {subject}"))),
            };
            let text = reply.unwrap_or_else(|error| error.json());
            if let Err(error) = request.respond(Ok(Bytes::from(text))).await {
                warn!(%error, "cannot answer a request");
            }
        });
    }
    let _ = service.stop().await;
    Ok(())
}
