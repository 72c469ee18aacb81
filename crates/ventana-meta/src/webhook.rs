//! The webhook endpoint: Meta's subscription handshake, signature check, normalisation, and
//! a publish to JetStream acknowledged before Meta is answered 200 (so a retry after any
//! failure neither loses nor duplicates an event: ids are `Nats-Msg-Id`s).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::{info, warn};
use ventana_service::config::NatsOptions;

use crate::normalise::normalise;

/// ventana-meta's configuration: flags or `VENTANA_META_*` (NATS: `VENTANA_NATS_*`).
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Where to listen for Meta's webhooks (`/webhook`) and `/healthz`.
    #[arg(long, env = "VENTANA_META_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The app secret: webhooks are verified with its HMAC-SHA256 (`X-Hub-Signature-256`).
    #[arg(long, env = "VENTANA_META_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// The verify token configured in the app's webhook subscription.
    #[arg(long, env = "VENTANA_META_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: String,
    /// The account name in ventana's conversation keys (CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT).
    #[arg(long, env = "VENTANA_META_ACCOUNT", default_value = "meta")]
    pub account: String,
    /// Input partitions (as configured in ventanad).
    #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Largest webhook body accepted (bytes); larger ones get 413.
    #[arg(long, env = "VENTANA_META_MAX_BODY", default_value_t = 1 << 20)]
    pub max_body: usize,
    #[command(flatten)]
    pub nats: NatsOptions,
}

struct App {
    config: Config,
    js: jetstream::Context,
    client: async_nats::Client,
}

#[derive(Debug, serde::Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// `GET /webhook`: echo the challenge when the verify token matches.
async fn handshake(State(app): State<Arc<App>>, Query(query): Query<Handshake>) -> Response {
    match (query.mode.as_deref(), query.verify_token, query.challenge) {
        (Some("subscribe"), Some(token), Some(challenge)) if token == app.config.verify_token => {
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
async fn receive(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
    let events = match normalise(&body, &app.config.account) {
        Ok(events) => events,
        Err(error) => {
            warn!(%error, "malformed webhook refused");
            return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response();
        }
    };
    match ventana_service::client::publish_events(&app.js, &events, app.config.partitions).await {
        Ok(fresh) => {
            info!(events = events.len(), fresh, "webhook published");
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

async fn healthz(State(app): State<Arc<App>>) -> Response {
    match app.client.connection_state() {
        async_nats::connection::State::Connected => "ok\n".into_response(),
        state => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("nats: {state:?}\n"),
        )
            .into_response(),
    }
}

/// The HTTP routes, on a connection to NATS.
fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body;
    Router::new()
        .route("/webhook", get(handshake).post(receive))
        .route("/healthz", get(healthz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::ensure!(!config.app_secret.is_empty(), "the app secret is empty");
    anyhow::ensure!(!config.verify_token.is_empty(), "the verify token is empty");
    let client = ventana_service::nats::connect(&config.nats, "ventana-meta").await?;
    let js = jetstream::new(client.clone());
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(listen = %listener.local_addr()?, "ventana-meta receiving webhooks on /webhook");
    let app = Arc::new(App { config, js, client });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving webhooks")
}
