//! ventana-meta's HTTP server: `/webhook` (Meta in), `/v1/messages` (the
//! send gateway, Meta out), `/healthz` and `/metrics`.

use std::sync::Arc;

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::{info, warn};

use crate::app::App;
use crate::config::SENT_MEMORY;
pub use crate::config::{Config, GRAPH_URL, INSTAGRAM_GRAPH_URL, SENT_BUCKET};
use crate::metrics::{Code, Metrics};
use crate::{gateway, webhook};

async fn sent_bucket(js: &jetstream::Context, replicas: usize) -> anyhow::Result<kv::Store> {
    ventana_bus::streams::key_value_bucket(
        js,
        kv::Config {
            bucket: SENT_BUCKET.into(),
            description: "ventana-meta: platform ids of sent messages, outcomes of sends".into(),
            history: 1,
            max_age: SENT_MEMORY,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        },
    )
    .await
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
    let request_timeout = app.config.request_timeout;
    let webhooks = Router::new()
        .route("/webhook", get(webhook::handshake).post(webhook::receive))
        .layer(middleware::from_fn_with_state(app.clone(), count_webhooks));
    Router::new()
        .merge(webhooks)
        .route("/v1/messages", post(gateway::send))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |request, next| {
            crate::listen::request_deadline(request_timeout, request, next)
        }))
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
    let sent = sent_bucket(&js, config.replicas).await?;
    let contacts = crate::contacts::Contacts::open(&js, config.replicas).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let clients = match &config.send_clients {
        Some(path) => crate::auth::Clients::load(path)?,
        None => {
            warn!("no send clients (VENTANA_META_SEND_CLIENTS): /v1/messages answers 503");
            crate::auth::Clients::default()
        }
    };
    let channel_tokens = match &config.channel_tokens {
        Some(path) => crate::tokens::ChannelTokens::load(path)?,
        None => crate::tokens::ChannelTokens::default(),
    };
    if config.graph_token.is_none() && config.channel_tokens.is_none() {
        warn!(
            "no Graph API token (VENTANA_META_GRAPH_TOKEN, VENTANA_META_CHANNEL_TOKENS): /v1/messages answers 503"
        );
    }
    info!(listen = %listener.local_addr()?, graph = %config.graph_url,
        "ventana-meta: webhooks on /webhook, sends on /v1/messages");
    let limits = crate::listen::Limits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        idle_timeout: config.idle_timeout,
        request_timeout: config.request_timeout,
    };
    let app = Arc::new(App {
        config,
        clients,
        channel_tokens,
        js,
        client,
        sent,
        contacts,
        graph,
        metrics: Metrics::default(),
    });
    crate::listen::serve(listener, router(app), limits, shutdown).await;
    Ok(())
}
