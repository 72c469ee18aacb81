//! The send gateway, `POST /v1/messages`: ventana decides (`ventana.api.v1.send`, which logs
//! the message and answers once it is folded), and only an accepted message goes to the
//! Graph API, carrying the decision's `messaging_type`, `tag` or comment. A rejection is a
//! 409 with ventana's reason, detail and suggestion; Meta is never called for it. A Graph
//! API error is logged back as a failed `delivery_status` (R13), so a window error closes
//! the window. The message content is passed through: never stored, never logged.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tracing::{info, warn};
use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, PlatformError, Status, Timestamp,
};
use ventana_notifier::OutputBody;
use ventana_wire::subjects::API_SEND;

use crate::graph::{self, Accepted};
use crate::server::{App, sent_key};

/// An answer other than a decision: an HTTP status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: Value,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.error}))).into_response()
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error: json!({"code": code, "message": message.into()}),
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// A send request split into what ventana decides on and the content only Meta sees.
struct SendRequest {
    /// `id`, `conversation`, `sender`, `kind`, `tag`, `comment_id`: the outbound message.
    decide: Map<String, Value>,
    key: ConversationKey,
    message_id: String,
    content: Value,
}

fn parse_request(body: &[u8], account: &str) -> Result<SendRequest, Refusal> {
    let mut decide = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(bad_request("the request must be a JSON object")),
        Err(e) => return Err(bad_request(format!("not JSON: {e}"))),
    };
    let content = decide
        .remove("message")
        .ok_or_else(|| bad_request("`message` (the Graph API message content) is required"))?;
    let message_id = match decide.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        _ => {
            return Err(bad_request(
                "`id` (your message id, unique per message: the idempotency key) is required",
            ));
        }
    };
    let Some(Value::Object(conversation)) = decide.get_mut("conversation") else {
        return Err(bad_request(
            "`conversation` ({channel, channel_id, contact_id}) is required",
        ));
    };
    let named = conversation
        .entry("account")
        .or_insert_with(|| account.into());
    if named != account {
        return Err(bad_request(format!(
            "this gateway sends for account {account:?}, not {named}"
        )));
    }
    let key = ventana_wire::json::parse_conversation(&decide["conversation"])
        .map_err(|e| bad_request(e.to_string()))?;
    let kind = decide.get("kind").and_then(Value::as_str).unwrap_or("");
    if let Some(reason) = graph::unsendable(&key, kind) {
        return Err(bad_request(reason));
    }
    // Whatever ventana accepts must be sendable: nothing is logged as accepted that the
    // Graph API call could not even be made for.
    if !content.is_object() {
        return Err(bad_request(
            "`message` must be an object: the Graph API message content",
        ));
    }
    if kind == "comment_reply" && !decide.get("comment_id").is_some_and(Value::is_string) {
        return Err(bad_request(
            "a comment reply needs the `comment_id` it answers",
        ));
    }
    // ventana logs the request: nothing but the outbound message's own fields goes there.
    decide.retain(|field, _| {
        matches!(
            field.as_str(),
            "id" | "conversation" | "sender" | "kind" | "tag" | "comment_id"
        )
    });
    Ok(SendRequest {
        decide,
        key,
        message_id,
        content,
    })
}

/// `POST /v1/messages`.
pub(crate) async fn send(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request = match parse_request(&body, &app.config.account) {
        Ok(request) => request,
        Err(refusal) => {
            app.metrics.send("refused");
            return refusal.into_response();
        }
    };
    let config = &app.config;
    let token = match request.key.channel {
        Channel::Instagram => config
            .instagram_token
            .as_ref()
            .or(config.graph_token.as_ref()),
        _ => config.graph_token.as_ref(),
    };
    let Some(token) = token.cloned() else {
        app.metrics.send("refused");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_graph_token",
            "ventana-meta has no Graph API token for this channel (VENTANA_META_GRAPH_TOKEN, VENTANA_META_INSTAGRAM_TOKEN): nothing was decided or sent",
        ).into_response();
    };
    let decision = match decide(&app, &request.decide).await {
        Ok(decision) => decision,
        Err(refusal) => {
            app.metrics.send("refused");
            return refusal.into_response();
        }
    };
    let output = match ventana_wire::parse_output(&decision.to_string()) {
        Ok(output) => output,
        Err(e) => {
            return error(
                StatusCode::BAD_GATEWAY,
                "bad_decision",
                format!("ventanad answered something unexpected: {e}"),
            )
            .into_response();
        }
    };
    let message_id = &request.message_id;
    match output.body {
        OutputBody::DeliveryFailed {
            reason,
            detail,
            suggestion,
            ..
        } => {
            app.metrics.send("rejected");
            info!(
                message_id,
                reason = reason.as_str(),
                "send rejected by ventana"
            );
            (
                StatusCode::CONFLICT,
                Json(json!({"status": "rejected", "message_id": message_id,
                    "reason": reason.as_str(), "detail": detail,
                    "suggestion": suggestion.as_str(), "decision": decision})),
            )
                .into_response()
        }
        OutputBody::OutboundHeld { until, .. } => {
            app.metrics.send("held");
            (
                StatusCode::ACCEPTED,
                Json(json!({"status": "held", "message_id": message_id,
                    "until": until.to_string(), "decision": decision,
                    "note": "held until the customer writes; the content was not kept: send it when ventana publishes outbound_accepted for this id"})),
            )
                .into_response()
        }
        OutputBody::OutboundAccepted {
            messaging_type,
            tag,
            comment_id,
            ..
        } => {
            let accepted = Accepted {
                messaging_type,
                tag,
                comment_id: comment_id.as_deref(),
            };
            match graph::graph_call(&request.key, accepted, request.content) {
                Ok(call) => deliver(&app, &token, &request.key, message_id, call, decision).await,
                Err(reason) => {
                    error(StatusCode::BAD_REQUEST, "bad_request", reason).into_response()
                }
            }
        }
        _ => error(
            StatusCode::BAD_GATEWAY,
            "bad_decision",
            "ventanad answered with something other than a decision",
        )
        .into_response(),
    }
}

/// Asks ventanad to log and decide the message.
async fn decide(app: &App, request: &Map<String, Value>) -> Result<Value, Refusal> {
    let asked = tokio::time::timeout(
        app.config.decide_timeout,
        app.client
            .request(API_SEND, Value::Object(request.clone()).to_string().into()),
    )
    .await;
    let reply = match asked {
        Ok(Ok(reply)) => reply,
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "ventanad is not answering on ventana.api.v1.send: nothing was sent",
            ));
        }
        Ok(Err(e)) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot ask ventanad: {e}; nothing was sent"),
            ));
        }
        Err(_) => {
            return Err(error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                "ventanad did not decide in time; nothing was sent (the message may be logged: send again with a new id)",
            ));
        }
    };
    let decision: Value = serde_json::from_slice(&reply.payload).map_err(|e| {
        error(
            StatusCode::BAD_GATEWAY,
            "bad_decision",
            format!("ventanad answered with something other than JSON: {e}"),
        )
    })?;
    if let Some(api_error) = decision.get("error") {
        let code = api_error.get("code").and_then(Value::as_str).unwrap_or("");
        let status = match code {
            "bad_request" => StatusCode::BAD_REQUEST,
            "duplicate" => StatusCode::CONFLICT,
            "not_found" => StatusCode::NOT_FOUND,
            "timeout" => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        return Err(Refusal {
            status,
            error: api_error.clone(),
        });
    }
    Ok(decision)
}

/// Calls the Graph API for an accepted message and records what came of it.
async fn deliver(
    app: &App,
    token: &str,
    key: &ConversationKey,
    message_id: &str,
    call: graph::GraphCall,
    decision: Value,
) -> Response {
    let base = match key.channel {
        Channel::Instagram => &app.config.instagram_graph_url,
        _ => &app.config.graph_url,
    };
    let url = format!("{}/{}", base.trim_end_matches('/'), call.path);
    let started = Instant::now();
    let sent = app
        .graph
        .post(&url)
        .bearer_auth(token)
        .json(&call.body)
        .send()
        .await;
    app.metrics
        .graph_seconds
        .observe(started.elapsed().as_secs_f64());
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            app.metrics.send("unreachable");
            // Without a response nobody knows whether Meta delivered it; the statuses will
            // tell. A refused connection delivered nothing.
            let connect = e.is_connect();
            warn!(message_id, error = %e.without_url(), "the Graph API could not be reached");
            let (status, text) = if connect {
                (
                    StatusCode::BAD_GATEWAY,
                    "not sent: cannot reach the Graph API",
                )
            } else {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "outcome unknown: no answer from the Graph API (its statuses will tell)",
                )
            };
            return (
                status,
                Json(json!({"status": "unknown", "message_id": message_id,
                    "error": {"code": "graph_unreachable", "message": text}, "decision": decision})),
            )
                .into_response();
        }
    };
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        app.metrics.send("sent");
        let platform_id = graph::platform_message_id(&answer).map(str::to_owned);
        if let Some(platform_id) = &platform_id {
            if let Err(e) = app
                .sent
                .put(sent_key(platform_id), message_id.to_owned().into())
                .await
            {
                warn!(message_id, error = %e, "cannot remember the platform id: its statuses will name it instead");
            }
        }
        info!(message_id, platform_id, "sent");
        return Json(json!({"status": "sent", "message_id": message_id,
            "platform_message_id": platform_id, "decision": decision}))
        .into_response();
    }
    app.metrics.send("graph_error");
    let platform_error = graph::graph_error(&answer).unwrap_or(PlatformError {
        code: i64::from(status.as_u16()),
        subcode: None,
        title: Some(format!("HTTP {status} from the Graph API")),
    });
    warn!(
        message_id,
        code = platform_error.code,
        subcode = platform_error.subcode,
        "the Graph API refused a message"
    );
    let report = failure_report(key, message_id, platform_error.clone());
    let logged = ventana_service::client::publish_events(&app.js, &[report], app.config.partitions)
        .await
        .inspect_err(
            |e| warn!(message_id, error = %format!("{e:#}"), "cannot log the Graph API's refusal"),
        )
        .is_ok();
    (
        StatusCode::BAD_GATEWAY,
        Json(json!({"status": "failed", "message_id": message_id,
            "error": {"code": platform_error.code, "subcode": platform_error.subcode,
                      "message": platform_error.title},
            "logged": logged, "decision": decision})),
    )
        .into_response()
}

/// The Graph API's refusal of a message, as the `delivery_status` ventana folds (R13).
fn failure_report(key: &ConversationKey, message_id: &str, error: PlatformError) -> Event {
    let now = ventana_service::clock::now();
    Event {
        id: format!("graph-error:{message_id}"),
        occurred_at: now,
        logged_at: None::<Timestamp>,
        conversation: key.clone(),
        body: EventBody::DeliveryStatus(DeliveryStatus {
            message_id: message_id.to_owned(),
            status: Status::Failed,
            error: Some(error),
        }),
    }
}
