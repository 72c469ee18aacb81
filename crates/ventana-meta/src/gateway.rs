//! The send gateway, `POST /v1/messages`: ventana decides (`ventana.api.v1.send`, which logs
//! the message and answers once it is folded), and only an accepted message goes to the
//! Graph API, carrying the decision's `messaging_type`, `tag` or comment. A rejection is a
//! 409 with ventana's reason, detail and suggestion; Meta is never called for it. A Graph
//! API error is logged back as a failed `delivery_status` (R13), so a window error closes
//! the window. The message content is passed through: never stored, never logged.
//!
//! Each message id's [`Outcome`] is recorded in the `VENTANA_META_SENT` bucket, claimed with
//! an atomic create and advanced with compare-and-set: a retry of the same request gets the
//! same answer, finishes what was left (a hold ventana released since, a Graph API that
//! could not be reached), and a message is never delivered twice.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::kv;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{info, warn};
use ventana_bus::client::read_stream;
use ventana_core::{
    Channel, ConversationKey, DeliveryStatus, Event, EventBody, PlatformError, Status, Timestamp,
};
use ventana_notifier::OutputBody;
use ventana_wire::api::{ApiError, ApiErrorCode, DecisionReply, Reply, parse_decision_reply};
use ventana_wire::subjects::{API_SEND, OUT_STREAM, output_subject};

use crate::app::{App, bucket_key, sent_key};
use crate::auth::Client;
use crate::graph::{self, Accepted};

/// An answer other than a decision: an HTTP status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: Value,
    /// Ask for a bearer token (`WWW-Authenticate: Bearer`).
    challenge: bool,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({"error": self.error}))).into_response();
        if self.challenge {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        error: json!({"code": code, "message": message.into()}),
        challenge: false,
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
    let message = decide.remove("message");
    let template = decide.remove("template");
    let message_id = match decide.get("id") {
        Some(Value::String(id)) => {
            ventana_core::check_id(id).map_err(|problem| bad_request(format!("`id` {problem}")))?;
            id.clone()
        }
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
            "this gateway sends for account {account:?} only"
        )));
    }
    let key = ventana_wire::json::parse_conversation(&decide["conversation"])
        .map_err(|e| bad_request(e.to_string()))?;
    // Ids that become Graph API path segments are Meta's ids, nothing else.
    graph::check_platform_id("conversation.channel_id", &key.channel_id).map_err(bad_request)?;
    if let Some(Value::String(comment_id)) = decide.get("comment_id") {
        graph::check_platform_id("comment_id", comment_id).map_err(bad_request)?;
    }
    if template.is_some() {
        let kind = decide.entry("kind").or_insert_with(|| "template".into());
        if kind != "template" {
            return Err(bad_request("`template` is for `kind: template`"));
        }
    }
    let content = match (message, template) {
        (Some(message), None) => message,
        (None, Some(template)) => graph::template_content(&key.channel, template)
            .ok_or_else(|| bad_request("Instagram has no message templates"))?,
        (Some(_), Some(_)) => {
            return Err(bad_request("give `message` or `template`, not both"));
        }
        (None, None) => {
            return Err(bad_request(
                "`message` (the Graph API message content) or `template` is required",
            ));
        }
    };
    let kind = decide.get("kind").and_then(Value::as_str).unwrap_or("");
    let names_a_comment = decide.get("comment_id").is_some_and(Value::is_string);
    if let Some(reason) = graph::unsendable(&key, kind, names_a_comment) {
        return Err(bad_request(reason));
    }
    // Whatever ventana accepts must be sendable: nothing is logged as accepted that the
    // Graph API call could not even be made for.
    if !content.is_object() {
        return Err(bad_request(
            "`message` must be an object: the Graph API message content",
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

/// Where a message is, recorded in the `VENTANA_META_SENT` bucket under its id (metadata
/// only: the decision, the platform's id, the Graph API's error; never the content), so a
/// retry of the same request gets the same answer and never a second delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stage {
    /// Asked ventanad; no decision yet.
    Deciding,
    Rejected,
    /// Held (R11): a retry delivers it once ventana has released it.
    Held,
    /// Calling the Graph API.
    Sending,
    Sent,
    /// The Graph API refused it (logged as a failed `delivery_status`).
    Failed,
    /// The Graph API could not be reached: nothing was sent, a retry sends it.
    Unsent,
    /// The Graph API did not answer: it may have been sent; never sent again.
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    stage: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decision: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform_message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

impl Outcome {
    fn at(stage: Stage, decision: &Value) -> Self {
        Self {
            stage,
            decision: Some(decision.clone()),
            platform_message_id: None,
            error: None,
        }
    }

    fn bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self).expect("JSON").into()
    }

    /// The HTTP answer for this outcome (`repeated`: to a retry of the same message id).
    fn answer(&self, message_id: &str, repeated: bool) -> Response {
        let decision = self.decision.clone().unwrap_or(Value::Null);
        let (status, mut body) = match self.stage {
            Stage::Rejected => (
                StatusCode::CONFLICT,
                json!({"status": "rejected", "reason": decision["reason"],
                    "detail": decision["detail"], "suggestion": decision["suggestion"]}),
            ),
            Stage::Held => (
                StatusCode::ACCEPTED,
                json!({"status": "held", "until": decision["until"],
                    "note": "held until the customer writes (R11); send the same request again once ventana publishes outbound_accepted for this id"}),
            ),
            Stage::Sent => (
                StatusCode::OK,
                json!({"status": "sent", "platform_message_id": self.platform_message_id}),
            ),
            Stage::Failed => (
                StatusCode::BAD_GATEWAY,
                json!({"status": "failed", "error": self.error}),
            ),
            Stage::Unsent => (
                StatusCode::BAD_GATEWAY,
                json!({"status": "unsent", "error": {"code": "graph_unreachable",
                    "message": "not sent: cannot reach the Graph API; send the same request again to retry"}}),
            ),
            Stage::Unknown => (
                StatusCode::GATEWAY_TIMEOUT,
                json!({"status": "unknown", "error": {"code": "graph_no_answer",
                    "message": "the Graph API did not answer: it may have been delivered (its statuses will tell); it is never sent twice"}}),
            ),
            Stage::Deciding | Stage::Sending => (
                StatusCode::CONFLICT,
                json!({"status": "in_progress", "error": {"code": "in_progress",
                    "message": "this message id is being decided or sent by another request"}}),
            ),
        };
        body["message_id"] = message_id.into();
        body["decision"] = decision;
        if repeated {
            body["repeated"] = true.into();
        }
        (status, Json(body)).into_response()
    }
}

/// The bucket key of a message's [`Outcome`].
fn outcome_key(message_id: &str) -> String {
    bucket_key("message", message_id)
}

/// The client the request's bearer token names, if it may send at all.
fn authenticate<'a>(app: &'a App, headers: &HeaderMap) -> Result<&'a Client, Refusal> {
    if app.clients.is_empty() {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_send_clients",
            "ventana-meta has no send clients (VENTANA_META_SEND_CLIENTS): nothing was decided or sent",
        ));
    }
    app.clients.authenticate(headers).ok_or_else(|| Refusal {
        challenge: true,
        ..error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <token>` with a token of the send clients file",
        )
    })
}

/// `POST /v1/messages`.
pub(crate) async fn send(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let client = match authenticate(&app, &headers) {
        Ok(client) => client,
        Err(refusal) => {
            app.metrics.send("unauthorized");
            return refusal.into_response();
        }
    };
    let request = match parse_request(&body, &app.config.account) {
        Ok(request) => request,
        Err(refusal) => {
            app.metrics.send("refused");
            return refusal.into_response();
        }
    };
    if !client.may_send_from(&request.key.channel_id) {
        app.metrics.send("forbidden");
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "client {} may not send from this channel_id: nothing was decided or sent",
                client.name
            ),
        )
        .into_response();
    }
    let config = &app.config;
    let token = app
        .channel_tokens
        .get(&request.key.channel_id)
        .or(match request.key.channel {
            Channel::Instagram => config
                .instagram_token
                .as_ref()
                .or(config.graph_token.as_ref()),
            _ => config.graph_token.as_ref(),
        });
    let Some(token) = token.cloned() else {
        app.metrics.send("refused");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_graph_token",
            "ventana-meta has no Graph API token for this channel (VENTANA_META_CHANNEL_TOKENS, VENTANA_META_GRAPH_TOKEN, VENTANA_META_INSTAGRAM_TOKEN): nothing was decided or sent",
        )
        .into_response();
    };
    let send = Send {
        app: &app,
        request: &request,
        token: &token,
        key: outcome_key(&request.message_id),
    };
    let deciding = Outcome {
        stage: Stage::Deciding,
        decision: None,
        platform_message_id: None,
        error: None,
    };
    let result = match app.sent.create(&send.key, deciding.bytes()).await {
        Ok(revision) => send.first(revision).await.map(|o| (o, false)),
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
            send.again().await.map(|o| (o, true))
        }
        Err(e) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("cannot record the message: {e}; nothing was decided or sent"),
        )),
    };
    match result {
        Ok((outcome, repeated)) => outcome.answer(&request.message_id, repeated),
        Err(refusal) => {
            app.metrics.send("refused");
            refusal.into_response()
        }
    }
}

/// One send request on its way.
struct Send<'a> {
    app: &'a App,
    request: &'a SendRequest,
    token: &'a str,
    /// Where its [`Outcome`] is recorded.
    key: String,
}

impl Send<'_> {
    /// A message id seen for the first time: ventana decides, then it is delivered.
    async fn first(&self, revision: u64) -> Result<Outcome, Refusal> {
        match decide(self.app, &self.request.decide).await {
            Ok(decision) => self.settle(revision, decision).await,
            // No decision in time: the message may be logged and decided later; a retry
            // looks for that decision (see `again`).
            Err(refusal) if refusal.status == StatusCode::GATEWAY_TIMEOUT => Err(refusal),
            Err(refusal) => {
                // Nothing was logged: the id is free again.
                let _ = self.app.sent.delete(&self.key).await;
                Err(refusal)
            }
        }
    }

    /// The same message id again: the recorded answer, or the rest of the way for a
    /// message that was held (and is released now) or could not reach the Graph API.
    async fn again(&self) -> Result<Outcome, Refusal> {
        let unavailable = |e: &dyn std::fmt::Display| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("cannot read what became of the message: {e}"),
            )
        };
        let Some(entry) = self
            .app
            .sent
            .entry(&self.key)
            .await
            .map_err(|e| unavailable(&e))?
        else {
            return Err(error(
                StatusCode::CONFLICT,
                "in_progress",
                "this message id is being decided by another request",
            ));
        };
        let outcome: Outcome = serde_json::from_slice(&entry.value).map_err(|e| unavailable(&e))?;
        let stale = |limit: std::time::Duration| {
            let age = time::OffsetDateTime::now_utc() - entry.created;
            age > time::Duration::try_from(limit * 2).unwrap_or(time::Duration::MAX)
        };
        match outcome.stage {
            Stage::Unsent => {
                let decision = DecisionReply::from_value(outcome.decision.unwrap_or(Value::Null))
                    .map_err(unexpected)?;
                self.settle(entry.revision, decision).await
            }
            Stage::Held => match self.latest_decision().await.map_err(|e| unavailable(&e))? {
                Some(decision) if outcome.decision.as_ref() != Some(&decision.json) => {
                    self.settle(entry.revision, decision).await
                }
                _ => Ok(self.repeat(outcome)),
            },
            // Left by a gateway that stopped between asking ventanad and recording.
            Stage::Deciding if stale(self.app.config.decide_timeout) => {
                match self.latest_decision().await.map_err(|e| unavailable(&e))? {
                    Some(decision) => self.settle(entry.revision, decision).await,
                    None => Ok(self.repeat(outcome)),
                }
            }
            // Left by a gateway that stopped while calling the Graph API: maybe sent.
            Stage::Sending if stale(self.app.config.graph_timeout) => Ok(self.repeat(Outcome {
                stage: Stage::Unknown,
                ..outcome
            })),
            _ => Ok(self.repeat(outcome)),
        }
    }

    /// An answer given before, given again.
    fn repeat(&self, outcome: Outcome) -> Outcome {
        self.app.metrics.send("repeated");
        outcome
    }

    /// Acts on ventana's decision (recorded at `revision`): records a rejection or a hold,
    /// delivers an acceptance.
    async fn settle(&self, revision: u64, decided: DecisionReply) -> Result<Outcome, Refusal> {
        let DecisionReply {
            output,
            json: decision,
        } = decided;
        let message_id = &self.request.message_id;
        let outcome = match output.body {
            OutputBody::DeliveryFailed { reason, .. } => {
                info!(
                    message_id,
                    reason = reason.as_str(),
                    "send rejected by ventana"
                );
                self.app.metrics.send("rejected");
                Outcome::at(Stage::Rejected, &decision)
            }
            OutputBody::OutboundHeld { .. } => {
                self.app.metrics.send("held");
                Outcome::at(Stage::Held, &decision)
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
                let call =
                    graph::graph_call(&self.request.key, accepted, self.request.content.clone())
                        .map_err(|reason| error(StatusCode::BAD_GATEWAY, "bad_decision", reason))?;
                // Claim the delivery: of two retries racing, one sends.
                let sending = Outcome::at(Stage::Sending, &decision);
                if self
                    .app
                    .sent
                    .update(&self.key, sending.bytes(), revision)
                    .await
                    .is_err()
                {
                    return Ok(sending);
                }
                self.deliver(call, decision).await
            }
            _ => {
                return Err(error(
                    StatusCode::BAD_GATEWAY,
                    "bad_decision",
                    "ventanad answered with something other than a decision",
                ));
            }
        };
        if let Err(e) = self.app.sent.put(&self.key, outcome.bytes()).await {
            warn!(message_id, error = %e, "cannot record what became of a message");
        }
        Ok(outcome)
    }

    /// The latest decision ventanad published for this message (a hold released or
    /// expired, or a decision a stopped gateway never recorded).
    async fn latest_decision(&self) -> anyhow::Result<Option<DecisionReply>> {
        let filter = output_subject("*", self.request.key.token());
        let outputs = read_stream(&self.app.js, OUT_STREAM, Some(filter)).await?;
        Ok(outputs
            .iter()
            .filter_map(|m| serde_json::from_slice::<Value>(&m.payload).ok())
            .filter_map(|json| DecisionReply::from_value(json).ok())
            .filter(|reply| {
                reply.output.body.decision().is_some_and(|decided| {
                    decided.by_policy() && decided.message_id() == self.request.message_id
                })
            })
            .last())
    }

    /// Calls the Graph API for an accepted message: what came of it.
    async fn deliver(&self, call: graph::GraphCall, decision: Value) -> Outcome {
        let (app, key, message_id) = (self.app, &self.request.key, &self.request.message_id);
        let base = match key.channel {
            Channel::Instagram => &app.config.instagram_graph_url,
            _ => &app.config.graph_url,
        };
        let url = format!("{}/{}", base.trim_end_matches('/'), call.path);
        let started = Instant::now();
        let sent = app
            .graph
            .post(&url)
            .bearer_auth(self.token)
            .json(&call.body)
            .send()
            .await;
        app.metrics
            .graph_seconds
            .observe(started.elapsed().as_secs_f64());
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                // A refused connection delivered nothing; without an answer nobody knows.
                let stage = if e.is_connect() {
                    Stage::Unsent
                } else {
                    Stage::Unknown
                };
                warn!(message_id, error = %e.without_url(), "the Graph API could not be reached");
                app.metrics.send("unreachable");
                return Outcome::at(stage, &decision);
            }
        };
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            let platform_id = graph::platform_message_id(&answer).map(str::to_owned);
            if let Some(platform_id) = &platform_id {
                if let Err(e) = app
                    .sent
                    .put(sent_key(platform_id), message_id.clone().into())
                    .await
                {
                    warn!(message_id, error = %e, "cannot remember the platform id: its statuses will name it instead");
                }
            }
            info!(message_id, platform_id, "sent");
            app.metrics.send("sent");
            return Outcome {
                platform_message_id: platform_id,
                ..Outcome::at(Stage::Sent, &decision)
            };
        }
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
        app.metrics.send("graph_error");
        let report = failure_report(key, message_id, platform_error.clone());
        let logged = ventana_bus::client::publish_events(
            &app.js,
            &[report],
            app.config.partitions,
        )
        .await
        .inspect_err(
            |e| warn!(message_id, error = %format!("{e:#}"), "cannot log the Graph API's refusal"),
        )
        .is_ok();
        Outcome {
            error: Some(
                json!({"code": platform_error.code, "subcode": platform_error.subcode,
                "message": platform_error.title, "logged": logged}),
            ),
            ..Outcome::at(Stage::Failed, &decision)
        }
    }
}

/// Asks ventanad to log and decide the message.
async fn decide(app: &App, request: &Map<String, Value>) -> Result<DecisionReply, Refusal> {
    let asked = tokio::time::timeout(
        app.config.decide_timeout,
        app.client
            .request(API_SEND, serde_json::to_vec(request).expect("JSON").into()),
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
    match parse_decision_reply(&reply.payload).map_err(unexpected)? {
        Reply::Decision(decision) => Ok(*decision),
        Reply::Error(api_error) => Err(refused_by_ventanad(api_error)),
    }
}

/// ventanad's API error as the gateway's answer.
fn refused_by_ventanad(api_error: ApiError) -> Refusal {
    let status = match api_error.code {
        ApiErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ApiErrorCode::Duplicate => StatusCode::CONFLICT,
        ApiErrorCode::NotFound => StatusCode::NOT_FOUND,
        ApiErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ApiErrorCode::Unavailable | ApiErrorCode::Internal => StatusCode::SERVICE_UNAVAILABLE,
    };
    Refusal {
        status,
        error: api_error.to_value(),
        challenge: false,
    }
}

/// ventanad answered something that is not a decision.
fn unexpected(e: ventana_wire::WireError) -> Refusal {
    error(
        StatusCode::BAD_GATEWAY,
        "bad_decision",
        format!("ventanad answered something unexpected: {e}"),
    )
}

/// The Graph API's refusal of a message, as the `delivery_status` ventana folds (R13).
fn failure_report(key: &ConversationKey, message_id: &str, error: PlatformError) -> Event {
    let now = ventana_bus::now();
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
