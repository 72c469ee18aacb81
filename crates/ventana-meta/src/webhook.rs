//! The webhook endpoint: Meta's subscription handshake, signature check, normalisation item
//! by item, and a publish to JetStream acknowledged before Meta is answered 200 (so a retry
//! after any failure neither loses nor duplicates an event: ids are `Nats-Msg-Id`s). Items
//! that cannot be understood are counted and their metadata copied to the DLQ; they never
//! cost the items beside them.

use std::sync::Arc;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use ventana_core::{ConversationKey, Event, EventBody, Origin};
use ventana_wire::subjects;

use crate::app::{App, sent_key};
use crate::normalise::{Found, Item, Reading, normalise};

#[derive(Debug, serde::Deserialize)]
pub(crate) struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhook`: echo the challenge when the verify token matches.
pub(crate) async fn handshake(
    State(app): State<Arc<App>>,
    Query(query): Query<Handshake>,
) -> Response {
    match (query.mode.as_deref(), query.verify_token, query.challenge) {
        (Some("subscribe"), Some(token), Some(challenge))
            if crate::auth::same_secret(&token, &app.config.verify_token) =>
        {
            info!("webhook subscription verified");
            challenge.into_response()
        }
        _ => (StatusCode::FORBIDDEN, "verification failed\n").into_response(),
    }
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`
/// (compared in constant time).
pub fn signature_valid(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex) = header.and_then(|h| h.strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(expected) = data_encoding::HEXLOWER_PERMISSIVE.decode(hex.as_bytes()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// `POST /webhook`.
pub(crate) async fn receive(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !signature_valid(&app.config.app_secret, &body, signature) {
        warn!("webhook with a missing or bad signature refused");
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256\n",
        )
            .into_response();
    }
    let items = match normalise(&body, &app.config.account) {
        Ok(items) => items,
        Err(error) => {
            warn!(%error, "a body that is no Meta webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    let published = async {
        let (events, dead) = sort_items(&app, items).await?;
        let events = resolve_sent(&app, events).await?;
        dead_letter(&app, &body, &dead).await?;
        let fresh =
            ventana_bus::client::publish_events(&app.js, &events, app.config.partitions).await?;
        anyhow::Ok((events.len(), fresh, dead.len()))
    };
    match published.await {
        Ok((events, fresh, dead)) => {
            app.metrics.events_published.inc_by(fresh as u64);
            app.metrics.events_duplicate.inc_by((events - fresh) as u64);
            info!(events, fresh, dead, "webhook published");
            (StatusCode::OK, "EVENT_RECEIVED\n").into_response()
        }
        Err(error) => {
            // Meta retries: what was published so far is dropped as duplicates then.
            warn!(error = %format!("{error:#}"), "publishing a webhook failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot publish now; retry\n",
            )
                .into_response()
        }
    }
}

/// An item that cannot be understood: what its dead-letter copy says (no content).
struct DeadItem {
    /// Its position among the webhook's items (with the body's digest, the copy's id).
    index: usize,
    outcome: &'static str,
    problem: &'static str,
    item: Item,
}

/// The events of the items, their WhatsApp contacts resolved, and the items that cannot be
/// understood; every item counted by outcome. An event whose ids ventana cannot log (over
/// 512 bytes, control characters, `tick:`) makes its item malformed: the rest go through (a
/// refused POST would be retried by Meta for ever, and lose its good items).
async fn sort_items(app: &App, items: Vec<Item>) -> anyhow::Result<(Vec<Event>, Vec<DeadItem>)> {
    let mut events = Vec::new();
    let mut dead = Vec::new();
    for (index, mut item) in items.into_iter().enumerate() {
        let reading = std::mem::replace(&mut item.reading, Reading::Unsupported);
        let (outcome, problem) = match reading {
            Reading::Events(found) => match found.iter().find_map(|f| f.event.check_ids().err()) {
                None => {
                    for found in found {
                        events.push(resolve_contact(app, found).await?);
                    }
                    app.metrics.item("published");
                    continue;
                }
                Some(bad) => {
                    warn!(object = item.object, field = item.field, r#type = item.kind,
                            %bad, "webhook item with ids ventana cannot log");
                    app.metrics.events_refused.inc();
                    ("malformed", "ids ventana cannot log")
                }
            },
            Reading::Ignored(_) => {
                app.metrics.item("ignored");
                continue;
            }
            Reading::Unsupported => ("unsupported", "a shape ventana-meta does not know"),
            Reading::Malformed(missing) => ("malformed", missing),
        };
        warn!(
            object = item.object,
            field = item.field,
            r#type = item.kind,
            outcome,
            problem,
            "webhook item not understood: copied to the DLQ without content"
        );
        app.metrics.item(outcome);
        dead.push(DeadItem {
            index,
            outcome,
            problem,
            item,
        });
    }
    Ok((events, dead))
}

/// The event with its WhatsApp customer's stable contact (see `contacts`).
async fn resolve_contact(app: &App, found: Found) -> anyhow::Result<Event> {
    let mut event = found.event;
    if let Some(customer) = found.customer {
        let key = &event.conversation;
        if let Some(contact) = app.contacts.resolve(&key.channel_id, &customer).await? {
            if contact != key.contact_id {
                event.conversation = ConversationKey::new(
                    key.channel.clone(),
                    &key.account,
                    &key.channel_id,
                    &contact,
                );
            }
        }
    }
    Ok(event)
}

/// Copies the metadata of items that cannot be understood (object, field, type, the
/// problem: never content) to `ventana.dlq.webhook_<outcome>` and waits for the server to
/// store them. Copy ids derive from the body, so Meta's retries are not copied twice.
async fn dead_letter(app: &App, body: &[u8], dead: &[DeadItem]) -> anyhow::Result<()> {
    if dead.is_empty() {
        return Ok(());
    }
    let digest = data_encoding::HEXLOWER.encode(&Sha256::digest(body)[..16]);
    let mut acks = Vec::with_capacity(dead.len());
    for item in dead {
        let reason = format!("webhook_{}", item.outcome);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            subjects::MSG_ID,
            format!("webhook:{digest}:{}", item.index).as_str(),
        );
        headers.insert(subjects::REASON_HEADER, reason.as_str());
        headers.insert(subjects::ERROR_HEADER, item.problem);
        let metadata = serde_json::json!({
            "object": item.item.object,
            "field": item.item.field,
            "type": item.item.kind,
            "outcome": item.outcome,
            "problem": item.problem,
        });
        acks.push(
            app.js
                .publish_with_headers(
                    subjects::dlq_subject(&reason),
                    headers,
                    metadata.to_string().into(),
                )
                .await
                .context("copying a webhook item to the DLQ")?,
        );
    }
    for ack in acks {
        ack.await
            .context("the server did not store a webhook item's DLQ copy")?;
    }
    Ok(())
}

/// Messages the send gateway delivered are known to ventana by its own id: statuses of them
/// are rewritten to name it, and their echoes are dropped (ventana already decided them).
async fn resolve_sent(app: &App, events: Vec<Event>) -> anyhow::Result<Vec<Event>> {
    let mut resolved = Vec::with_capacity(events.len());
    for mut event in events {
        let platform_id = match &event.body {
            EventBody::DeliveryStatus(status) => &status.message_id,
            EventBody::OutboundMessage(out) if out.origin == Origin::Echo => &event.id,
            _ => {
                resolved.push(event);
                continue;
            }
        };
        let Some(ventana_id) = app.sent.get(sent_key(platform_id)).await? else {
            resolved.push(event);
            continue;
        };
        if let EventBody::DeliveryStatus(status) = &mut event.body {
            status.message_id = String::from_utf8_lossy(&ventana_id).into_owned();
            resolved.push(event);
        } // else the echo of a message the gateway sent: ventana decided it already
    }
    Ok(resolved)
}
