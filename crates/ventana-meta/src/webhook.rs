//! The webhook endpoint: Meta's subscription handshake, signature check, normalisation, and
//! a publish to JetStream acknowledged before Meta is answered 200 (so a retry after any
//! failure neither loses nor duplicates an event: ids are `Nats-Msg-Id`s).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{info, warn};
use ventana_core::{Event, EventBody, Origin};

use crate::app::{App, sent_key};
use crate::normalise::normalise;

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
    let mut events = match normalise(&body, &app.config.account) {
        Ok(events) => events,
        Err(error) => {
            warn!(%error, "malformed webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    // An item whose ids ventana cannot log is dropped on its own; the rest go through (a
    // refused POST would be retried by Meta for ever, and lose its good items).
    events.retain(|event| match event.check_ids() {
        Ok(()) => true,
        Err(bad) => {
            warn!(r#type = event.body.type_name(), %bad, "webhook item dropped");
            app.metrics.events_refused.inc();
            false
        }
    });
    let published = async {
        let events = resolve_sent(&app, events).await?;
        let fresh =
            ventana_bus::client::publish_events(&app.js, &events, app.config.partitions).await?;
        anyhow::Ok((events.len(), fresh))
    };
    match published.await {
        Ok((events, fresh)) => {
            app.metrics.events_published.inc_by(fresh as u64);
            app.metrics.events_duplicate.inc_by((events - fresh) as u64);
            info!(events, fresh, "webhook published");
            (StatusCode::OK, "EVENT_RECEIVED\n").into_response()
        }
        Err(error) => {
            // Meta retries: the events published so far are dropped as duplicates then.
            warn!(error = %format!("{error:#}"), "publishing a webhook failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot publish now; retry\n",
            )
                .into_response()
        }
    }
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
