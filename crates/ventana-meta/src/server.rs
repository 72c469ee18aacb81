//! ventana-meta's configuration and HTTP server: `/webhook` (Meta in), `/v1/messages` (the
//! send gateway, Meta out), `/healthz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::{info, warn};
use ventana_bus::{NatsOptions, parse_duration};

use crate::metrics::{Code, Metrics};
use crate::{gateway, webhook};

/// Meta's Graph API, the version ventana-meta was written against.
pub const GRAPH_URL: &str = "https://graph.facebook.com/v23.0";

/// The Instagram API (Instagram Login): DMs are sent as `/{IG account id}/messages`.
pub const INSTAGRAM_GRAPH_URL: &str = "https://graph.instagram.com/v23.0";

/// The key-value bucket of the gateway's messages: `platform.<id>` → ventana message id (so
/// statuses name ventana's message and echoes of its own sends are not logged twice), and
/// `message.<id>` → what became of a send (so a retry gets the same answer).
pub const SENT_BUCKET: &str = "VENTANA_META_SENT";

/// How long the gateway remembers a sent message: statuses and echoes come within days.
const SENT_MEMORY: Duration = Duration::from_secs(8 * 86_400);

/// ventana-meta's configuration: flags or `VENTANA_META_*` (NATS: `VENTANA_NATS_*`, shared
/// with ventanad and the CLI).
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Where to listen for Meta's webhooks (`/webhook`), sends (`/v1/messages`), `/healthz`
    /// and `/metrics`.
    #[arg(long, env = "VENTANA_META_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The app secret: webhooks are verified with its HMAC-SHA256 (`X-Hub-Signature-256`).
    #[arg(long, env = "VENTANA_META_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// The verify token configured in the app's webhook subscription.
    #[arg(long, env = "VENTANA_META_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: String,
    /// The access token sends are made with (a system user token with the messaging
    /// permissions). Without one, `/v1/messages` answers 503 and nothing is decided.
    #[arg(long, env = "VENTANA_META_GRAPH_TOKEN", hide_env_values = true)]
    pub graph_token: Option<String>,
    /// The Graph API base URL, version included (WhatsApp, Messenger).
    #[arg(long, env = "VENTANA_META_GRAPH_URL", default_value = GRAPH_URL)]
    pub graph_url: String,
    /// The Instagram API base URL, version included (Instagram DMs and comment replies).
    #[arg(long, env = "VENTANA_META_INSTAGRAM_GRAPH_URL", default_value = INSTAGRAM_GRAPH_URL)]
    pub instagram_graph_url: String,
    /// The Instagram user access token (default: the Graph API token).
    #[arg(long, env = "VENTANA_META_INSTAGRAM_TOKEN", hide_env_values = true)]
    pub instagram_token: Option<String>,
    /// How long a Graph API call may take.
    #[arg(long, env = "VENTANA_META_GRAPH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub graph_timeout: Duration,
    /// How long to wait for ventanad's decision on a send.
    #[arg(long, env = "VENTANA_META_DECIDE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub decide_timeout: Duration,
    /// The account name in ventana's conversation keys (CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT).
    #[arg(long, env = "VENTANA_META_ACCOUNT", default_value = "meta")]
    pub account: String,
    /// Input partitions (as configured in ventanad).
    #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Largest webhook or send body accepted (bytes); larger ones get 413.
    #[arg(long, env = "VENTANA_META_MAX_BODY", default_value_t = 1 << 20)]
    pub max_body: usize,
    #[command(flatten)]
    pub nats: NatsOptions,
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub config: Config,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub sent: kv::Store,
    pub graph: reqwest::Client,
    pub metrics: Metrics,
}

/// A key of the bucket: `<space>.<id in base32>` (KV keys allow few characters; Meta's ids
/// have `+`, `/` and `=`, callers' ids anything).
pub(crate) fn bucket_key(space: &str, id: &str) -> String {
    format!(
        "{space}.{}",
        data_encoding::BASE32_NOPAD.encode(id.as_bytes())
    )
}

/// Where the ventana id of the message the platform knows as `platform_id` is kept.
pub(crate) fn sent_key(platform_id: &str) -> String {
    bucket_key("platform", platform_id)
}

async fn sent_bucket(js: &jetstream::Context) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(SENT_BUCKET).await {
        return Ok(store);
    }
    js.create_key_value(kv::Config {
        bucket: SENT_BUCKET.into(),
        description: "ventana-meta: platform ids of sent messages, outcomes of sends".into(),
        history: 1,
        max_age: SENT_MEMORY,
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create the key-value bucket {SENT_BUCKET}"))
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

async fn metrics(State(app): State<Arc<App>>) -> String {
    app.metrics.render()
}

/// Counts webhook answers by status (413s are answered before the handler runs).
async fn count_webhooks(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    app.metrics
        .webhooks
        .get_or_create(&Code {
            code: response.status().as_u16(),
        })
        .inc();
    response
}

fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body;
    let webhooks = Router::new()
        .route("/webhook", get(webhook::handshake).post(webhook::receive))
        .layer(middleware::from_fn_with_state(app.clone(), count_webhooks));
    Router::new()
        .merge(webhooks)
        .route("/v1/messages", post(gateway::send))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
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
    let graph = reqwest::Client::builder()
        .timeout(config.graph_timeout)
        .user_agent(concat!("ventana-meta/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the Graph API client")?;
    let client = ventana_bus::connect(&config.nats, "ventana-meta").await?;
    let js = jetstream::new(client.clone());
    let sent = sent_bucket(&js).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    if config.graph_token.is_none() {
        warn!("no Graph API token (VENTANA_META_GRAPH_TOKEN): /v1/messages answers 503");
    }
    info!(listen = %listener.local_addr()?, graph = %config.graph_url,
        "ventana-meta: webhooks on /webhook, sends on /v1/messages");
    let app = Arc::new(App {
        config,
        js,
        client,
        sent,
        graph,
        metrics: Metrics::default(),
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}
