//! `/healthz` (NATS connected, the consumer and the outbox publisher making progress) and
//! `/metrics` (Prometheus).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::Shared;

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    client: async_nats::Client,
}

async fn healthz(State(app): State<App>) -> (StatusCode, String) {
    let connected = app.client.connection_state() == async_nats::connection::State::Connected;
    let consumer = app.shared.consumer_alive();
    let outbox = app.shared.outbox_alive();
    let status = if connected && consumer && outbox {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        format!(
            "{{\"nats_connected\":{connected},\"consumer_alive\":{consumer},\"outbox_alive\":{outbox}}}\n"
        ),
    )
}

async fn metrics(State(app): State<App>) -> String {
    app.shared.metrics.render()
}

pub async fn run(
    shared: Arc<Shared>,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(App { shared, client });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await?;
    Ok(())
}
