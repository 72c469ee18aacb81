//! Publishes outbox rows to VENTANA_OUT in order, with `Nats-Msg-Id` = output id, and
//! deletes them only after the server acknowledged them. A crash between the two makes the
//! next run publish them again, which the server drops as duplicates.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use tokio::sync::watch;
use tracing::warn;
use ventana_wire::subjects::MSG_ID;

use crate::Shared;

const ROWS_PER_ROUND: usize = 1024;

pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let store = shared.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.outbox(ROWS_PER_ROUND)).await??;
        if rows.is_empty() {
            shared.metrics.outbox_depth.set(0);
            tokio::select! {
                _ = shared.outbox_wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            continue;
        }
        match publish(&js, &rows).await {
            Ok(()) => {
                let sequences: Vec<u64> = rows.iter().map(|(sequence, _)| *sequence).collect();
                let store = shared.store.clone();
                tokio::task::spawn_blocking(move || store.remove_outbox(&sequences)).await??;
                shared.metrics.outputs_published.inc_by(rows.len() as u64);
            }
            Err(error) => {
                warn!(%error, "publishing outputs failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    }
}

async fn publish(
    js: &jetstream::Context,
    rows: &[(u64, ventana_store::OutboxRow)],
) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(rows.len());
    for (_, row) in rows {
        let mut headers = HeaderMap::new();
        headers.insert(MSG_ID, row.id.as_str());
        headers.insert("Content-Type", "application/json");
        acks.push(
            js.publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
