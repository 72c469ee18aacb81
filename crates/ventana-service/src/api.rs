//! The request-reply API on the NATS services framework ([`micro`], visible to
//! `$SRV.PING/INFO/STATS`): `state`, `check` (no side effect), `send` (logged, answered once
//! folded), `expiring`, `resolve` and `decision`. JSON in and out (`ventana_wire::api`);
//! errors are `{"error":{"code":..,"message":..}}` with the framework's error headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use ventana_core::{
    Conversation, ConversationKey, ConversationToken, EventBody, Origin, Timestamp,
};
use ventana_notifier::{advance_to, fold_event};
use ventana_wire::api::{
    ApiError, ApiErrorCode, ConversationRef, DecisionRequest, Expiring, ExpiringRequest,
    OutboundRequest, StateRequest, expiring_to_json,
};
use ventana_wire::subjects::{self, MSG_ID, input_subject};
use ventana_wire::{output_to_json, snapshot_value};

use crate::clock::now;
use crate::{Shared, micro};

type Reply = Result<String, ApiError>;

/// Requests served at once: past it, requests wait in the subscription, and the pipeline's
/// share of the machine (sled, the executor) stays its own.
const CONCURRENT_REQUESTS: usize = 32;

/// `expiring` pages built at once (each reads up to a page of states from sled).
const CONCURRENT_PAGES: usize = 2;

/// The largest reply: well under NATS' default payload limit (1 MiB), over which a reply
/// would be dropped without a word. An `expiring` page is cut to fit (its cursor goes on
/// from there).
const MAX_REPLY_BYTES: usize = 512 * 1024;

/// The conversation a request names, as stored (or new, when named by its key).
async fn conversation_of(
    shared: &Shared,
    named: ConversationRef,
) -> Result<Conversation, ApiError> {
    let token = named.token();
    let stored = match shared.states.get(token) {
        Some(cached) => Some(cached),
        None => {
            let store = shared.store.clone();
            tokio::task::spawn_blocking(move || store.load(token))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?
        }
    };
    match (stored, named) {
        (Some(conversation), _) => Ok(conversation),
        (None, ConversationRef::Key(key)) => Ok(Conversation::new(key)),
        (None, ConversationRef::Token(token)) => Err(ApiError::new(
            ApiErrorCode::NotFound,
            format!("no conversation has token {token}"),
        )),
    }
}

/// A copy of the conversation as of now: deadlines already passed have fired.
fn as_of_now(shared: &Shared, mut conversation: Conversation) -> Conversation {
    let token = conversation.key().token();
    advance_to(
        &mut conversation,
        token,
        now(),
        &shared.policy,
        &mut Vec::new(),
    );
    conversation
}

async fn state(shared: &Shared, payload: &[u8]) -> Reply {
    let request = StateRequest::parse(payload)?;
    let token = request.conversation.token();
    let conversation = as_of_now(shared, conversation_of(shared, request.conversation).await?);
    let mut snapshot = snapshot_value(&conversation.snapshot(&shared.policy));
    snapshot["token"] = token.to_string().into();
    Ok(snapshot.to_string())
}

/// The last decision published for `message_id` in conversation `token` (read from
/// VENTANA_OUT), as published.
async fn decision_of(
    js: &jetstream::Context,
    token: ConversationToken,
    message_id: &str,
) -> Result<Option<String>, ApiError> {
    let outputs = ventana_bus::client::read_stream(
        js,
        subjects::OUT_STREAM,
        Some(format!("ventana.out.*.{token}")),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(outputs
        .iter()
        .rev()
        .find_map(|stored| decision_in(&stored.payload, message_id)))
}

/// The output's JSON, if `payload` is the decision on `message_id`.
fn decision_in(payload: &[u8], message_id: &str) -> Option<String> {
    let text = std::str::from_utf8(payload).ok()?;
    let output = ventana_wire::parse_output(text).ok()?;
    let decided = output.body.decision()?;
    (decided.message_id() == message_id).then(|| text.to_owned())
}

/// Outbox rows `decision` looks through for a decision made but not yet published.
const OUTBOX_LOOKUP: usize = 100_000;

/// `decision`: what was decided for a message id (for a caller who lost the answer): as
/// published on VENTANA_OUT, or, decided but not published yet (the outbox publishes right
/// after the fold), as it waits in this instance's outbox.
async fn decision(shared: &Shared, js: &jetstream::Context, payload: &[u8]) -> Reply {
    let request = DecisionRequest::parse(payload)?;
    let token = request.conversation.token();
    // The outbox first: a row leaves it only once published, so read in this order nothing
    // decided falls between the two.
    let store = shared.store.clone();
    let pending = tokio::task::spawn_blocking(move || store.outbox(OUTBOX_LOOKUP))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    let subject_end = format!(".{token}");
    if let Some(waiting) = pending
        .iter()
        .rev()
        .filter(|(_, row)| row.subject.ends_with(&subject_end))
        .find_map(|(_, row)| decision_in(&row.payload, &request.id))
    {
        return Ok(waiting);
    }
    decision_of(js, token, &request.id).await?.ok_or_else(|| {
        ApiError::new(
            ApiErrorCode::NotFound,
            format!("no decision on message {} is known", request.id),
        )
    })
}

/// `resolve`: where a conversation's events go (its token, partition and input subject),
/// computed as every publisher must compute it (docs/api.md, "Conversation tokens").
fn resolve(shared: &Shared, payload: &[u8]) -> Reply {
    let request = StateRequest::parse(payload)?;
    let token = request.conversation.token();
    Ok(serde_json::json!({
        "token": token.to_string(),
        "partition": token.partition(shared.partitions),
        "partitions": shared.partitions,
        "subject": subjects::input_subject_of(token, shared.partitions),
    })
    .to_string())
}

/// The id a `check` request without one gets: derived from the request, so two different
/// questions never share an output id.
fn check_id(payload: &[u8]) -> String {
    use std::hash::{DefaultHasher, Hasher};
    let mut hasher = DefaultHasher::new();
    hasher.write(payload);
    format!("check:{:016x}", hasher.finish())
}

/// The `outbound_message` event a request stands for. Refuses what could never be sent on
/// the channel.
fn outbound_event(
    request: OutboundRequest,
    default_id: Option<&str>,
    conversation: Option<&ConversationKey>,
) -> Result<ventana_core::Event, ApiError> {
    let event = request.into_event(now(), default_id, conversation)?;
    let EventBody::OutboundMessage(out) = &event.body else {
        return Err(ApiError::bad_request("not an outbound message"));
    };
    // What no state could let out is refused up front, not logged (docs/rules.md §1.4 point 14).
    if let Some(why) = out.unsendable_on(&event.conversation.channel) {
        return Err(ApiError::bad_request(why));
    }
    // An echo reports a message already sent elsewhere: there is nothing to decide or wait for.
    if out.origin == Origin::Echo {
        return Err(ApiError::bad_request(
            "`origin: echo` reports a message sent elsewhere: log it as an input event, do not ask for a decision",
        ));
    }
    Ok(event)
}

async fn check(shared: &Shared, payload: &[u8]) -> Reply {
    let request = OutboundRequest::parse(payload)?;
    let conversation = conversation_of(shared, request.conversation()?).await?;
    let mut event = outbound_event(request, Some(&check_id(payload)), Some(conversation.key()))?;
    event.logged_at = Some(now());
    ventana_core::validate(&event, &shared.policy).map_err(ApiError::bad_request)?;
    let mut copy = conversation;
    let mut outputs = Vec::new();
    let token = copy.key().token();
    fold_event(&mut copy, token, &event, &shared.policy, &mut outputs);
    outputs
        .iter()
        .find(|o| o.caused_by == event.id && o.body.decision().is_some())
        .map(output_to_json)
        .ok_or_else(|| {
            ApiError::new(
                ApiErrorCode::Duplicate,
                format!("message {} was already decided", event.id),
            )
        })
}

async fn send(
    shared: &Shared,
    js: &jetstream::Context,
    partitions: u32,
    timeout: Duration,
    payload: &[u8],
) -> Reply {
    let request = OutboundRequest::parse(payload)?;
    if !request.has_id() {
        return Err(ApiError::bad_request("`id` (the message id) is required"));
    }
    let event = outbound_event(request, None, None)?;
    // What would never be folded (an `occurred_at` past the clock skew) is refused now, as
    // `check` refuses it, not logged to the DLQ while the caller waits.
    let mut judged = event.clone();
    judged.logged_at = Some(now());
    ventana_core::validate(&judged, &shared.policy).map_err(ApiError::bad_request)?;
    let token = event.conversation.token();
    let (_waiting, mut receiver) = shared.wait_for(token, event.id.clone());
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
        // Already logged (a retry, or a concurrent request with this id): its decision,
        // as soon as there is one, whether it is still being made or long published.
        Ok(ack) if ack.duplicate => {
            let waited = async {
                let mut pending = Some(&mut receiver);
                loop {
                    let answer = async {
                        match pending.as_deref_mut() {
                            Some(receiver) => receiver.await.ok(),
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        answer = answer => match answer {
                            Some(answer) => return Ok(answer.json),
                            None => pending = None,
                        },
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if let Some(found) = decision_of(js, token, &event.id).await? {
                                return Ok(found);
                            }
                        }
                    }
                }
            };
            return match tokio::time::timeout(timeout, waited).await {
                Ok(found) => found,
                Err(_) => Err(ApiError::new(
                    ApiErrorCode::Duplicate,
                    format!(
                        "message {} is already in the log and no decision was found within {timeout:?}; ask `decision` later",
                        event.id
                    ),
                )),
            };
        }
        Ok(_) => {}
        Err(error) => {
            return Err(ApiError::new(
                ApiErrorCode::Unavailable,
                format!("cannot log the message: {error}"),
            ));
        }
    }
    match tokio::time::timeout(timeout, receiver).await {
        Ok(Ok(answer)) => Ok(answer.json),
        // An id folded before (R14, past the stream's duplicate window) is not decided again:
        // its first decision is the answer.
        _ => match decision_of(js, token, &event.id).await {
            Ok(Some(found)) => Ok(found),
            _ => Err(ApiError::new(
                ApiErrorCode::Timeout,
                format!(
                    "message {} was logged but not decided within {timeout:?} (a duplicate id is never decided twice)",
                    event.id
                ),
            )),
        },
    }
}

async fn expiring(shared: &Shared, payload: &[u8]) -> Reply {
    let request = ExpiringRequest::parse(payload)?;
    let start = now();
    let cursor: (Timestamp, _) = match request.cursor {
        Some(cursor) => (cursor.at, Some(cursor.token)),
        None => (start, None),
    };
    let store = shared.store.clone();
    let (until, limit) = (start.plus(request.within), request.limit);
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
    let mut page: Vec<Expiring> = rows
        .iter()
        .filter_map(|(closes_at, token, conversation)| {
            Some(Expiring {
                token: *token,
                closes_at: *closes_at,
                snapshot: conversation.as_ref()?.snapshot(&shared.policy),
            })
        })
        .collect();
    let mut next_cursor = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|&(at, token, _)| ventana_wire::api::Cursor { at, token })
        })
        .flatten();
    // Long keys can make a full page too large for one reply: halve it until it fits, and
    // go on after the last conversation kept.
    loop {
        let json = expiring_to_json(&page, next_cursor);
        if json.len() <= MAX_REPLY_BYTES || page.len() <= 1 {
            return Ok(json);
        }
        page.truncate(page.len() / 2);
        next_cursor = page.last().map(|row| ventana_wire::api::Cursor {
            at: row.closes_at,
            token: row.token,
        });
    }
}

/// The framework's error code for each of ventana's (HTTP's numbers, as the framework's
/// clients expect).
fn service_error_code(code: ApiErrorCode) -> u16 {
    match code {
        ApiErrorCode::BadRequest => 400,
        ApiErrorCode::NotFound => 404,
        ApiErrorCode::Duplicate => 409,
        ApiErrorCode::Internal => 500,
        ApiErrorCode::Unavailable => 503,
        ApiErrorCode::Timeout => 504,
    }
}

/// The endpoints: subject, what it does, what it takes, what it answers.
const ENDPOINTS: [(&str, &str, &str, &str); 6] = [
    (
        subjects::API_STATE,
        "a conversation now",
        "StateRequest",
        "StateReply",
    ),
    (
        subjects::API_CHECK,
        "would this message be delivered now (nothing logged)",
        "CheckRequest",
        "DecisionReply",
    ),
    (
        subjects::API_SEND,
        "log a message and answer its decision",
        "SendRequest",
        "DecisionReply",
    ),
    (
        subjects::API_EXPIRING,
        "conversations whose window closes soon",
        "ExpiringRequest",
        "ExpiringReply",
    ),
    (
        subjects::API_RESOLVE,
        "a conversation's token, partition and input subject",
        "StateRequest",
        "ResolveReply",
    ),
    (
        subjects::API_DECISION,
        "what was decided for a message id",
        "DecisionRequest",
        "DecisionReply",
    ),
];

/// Serves the endpoints until `shutdown`.
pub async fn run(
    shared: Arc<Shared>,
    client: async_nats::Client,
    js: jetstream::Context,
    instance: String,
    partitions: u32,
    send_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let text = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    // What a client needs to publish and subscribe without reading ventana's code
    // (docs/api.md): the partition count and the subject layout.
    let partition_count = partitions.to_string();
    let owner = shared.clone();
    let metadata = text(&[
        ("partitions", &partition_count),
        ("input_subject", "ventana.in.<partition>.<token>"),
        ("output_subject", "ventana.out.<type>.<token>"),
        ("dlq_subject", "ventana.dlq.<reason>"),
        ("streams", "VENTANA_IN VENTANA_OUT VENTANA_DLQ"),
        (
            "token",
            "XXH3-128 of the length-prefixed key, big-endian, lower-case unpadded base32; partition = hash mod partitions (docs/api.md)",
        ),
        ("schemas", "docs/contract (JSON Schema, AsyncAPI)"),
    ]);
    let endpoints = ENDPOINTS
        .iter()
        .map(|&(subject, description, request, reply)| micro::Endpoint {
            name: subject.rsplit('.').next().unwrap_or(subject).to_owned(),
            subject: subject.to_owned(),
            metadata: text(&[
                ("description", description),
                ("request", request),
                ("reply", reply),
            ]),
        })
        .collect();
    let (service, mut requests) = micro::Service::start(
        client,
        subjects::SERVICE_NAME,
        "ventana: what may still be sent in every conversation, and until when",
        metadata,
        micro::LiveMetadata(Box::new(move || {
            let owned = owner.owned.lock().expect("owned lock");
            let owned: Vec<String> = owned.iter().map(u32::to_string).collect();
            text(&[
                ("instance", &instance),
                ("owned_partitions", &owned.join(" ")),
            ])
        })),
        endpoints,
        shutdown,
    )
    .await?;
    let serving = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
    let paging = Arc::new(Semaphore::new(CONCURRENT_PAGES));
    loop {
        let permit = serving.clone().acquire_owned().await?;
        let Some(request) = requests.next().await else {
            break;
        };
        let shared = shared.clone();
        let service = service.clone();
        let js = js.clone();
        let paging = paging.clone();
        tokio::spawn(async move {
            let payload = &request.message.payload;
            let reply = match ENDPOINTS[request.endpoint].0 {
                subjects::API_STATE => state(&shared, payload).await,
                subjects::API_CHECK => check(&shared, payload).await,
                subjects::API_SEND => send(&shared, &js, partitions, send_timeout, payload).await,
                subjects::API_RESOLVE => resolve(&shared, payload),
                subjects::API_DECISION => decision(&shared, &js, payload).await,
                _ => match paging.acquire().await {
                    Ok(_page) => expiring(&shared, payload).await,
                    Err(_) => Err(ApiError::internal("stopping")),
                },
            };
            let reply = match reply {
                Ok(text) if text.len() > MAX_REPLY_BYTES => Err(ApiError::internal(
                    "the reply would be larger than a NATS message may be",
                )),
                reply => reply,
            };
            let answer = match reply {
                Ok(text) => micro::Answer {
                    body: Bytes::from(text),
                    error: None,
                },
                Err(error) => micro::Answer {
                    body: Bytes::from(error.to_json()),
                    error: Some((service_error_code(error.code), error.message.clone())),
                },
            };
            service.answer(&request, answer).await;
            drop(permit);
        });
    }
    Ok(())
}
