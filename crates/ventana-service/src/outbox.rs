//! Publishes outputs to VENTANA_OUT in order, with `Nats-Msg-Id` = output id, and deletes
//! their outbox rows only after the server acknowledged them. The pipeline hands each
//! committed batch's rows over in memory; rows left in sled by an earlier run (a crash
//! between commit and ack) are published first, at start. A crash between publish and
//! delete makes the next run publish them again, which the server drops as duplicates.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use ventana_store::OutboxRow;
use ventana_wire::subjects::{MSG_ID, OUT_STREAM};

use crate::Shared;

/// Rows of one committed batch, in outbox order.
pub type Rows = Vec<(u64, OutboxRow)>;

const ROWS_PER_ROUND: usize = 4096;

pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    mut committed: mpsc::Receiver<Rows>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Rows an earlier run committed but did not see acknowledged. Everything the pipeline
    // commits from now on has higher sequences, so the two never overlap.
    let mut recovered = 0;
    let store = shared.store.clone();
    let waiting = tokio::task::spawn_blocking(move || store.outbox_len()).await?;
    shared.metrics.outbox_depth.set(waiting as i64);
    loop {
        let store = shared.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.outbox(ROWS_PER_ROUND)).await??;
        let Some(&(last, _)) = rows.last() else { break };
        if !deliver(&shared, &js, &rows, Mode::OneByOne, &mut shutdown).await? {
            return Ok(());
        }
        recovered += rows.len();
        if rows.len() < ROWS_PER_ROUND || last == u64::MAX {
            break;
        }
    }
    if recovered > 0 {
        info!(
            recovered,
            "published outputs left in the outbox by an earlier run"
        );
    }
    loop {
        let mut rows = tokio::select! {
            rows = committed.recv() => match rows {
                Some(rows) => rows,
                None => return Ok(()),
            },
            _ = shutdown.changed() => return Ok(()),
        };
        while rows.len() < ROWS_PER_ROUND {
            match committed.try_recv() {
                Ok(more) => rows.extend(more),
                Err(_) => break,
            }
        }
        if !deliver(&shared, &js, &rows, Mode::Pipelined, &mut shutdown).await? {
            return Ok(());
        }
    }
}

/// How a batch of rows is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Rows committed by this run: pipelined, each with `Nats-Expected-Last-Sequence`, so
    /// the server stores them in order or not at all (ventanad is VENTANA_OUT's only
    /// publisher). After a failure, the stream's last sequence says how many were stored.
    Pipelined,
    /// Rows an earlier run may have published already: one at a time, each awaited, so the
    /// server's duplicate check drops those it has and order holds across reconnects.
    OneByOne,
}

/// Publishes `rows` until the server acknowledged them all, then deletes them from the
/// outbox. False when asked to stop first (the rows stay in sled for the next run).
async fn deliver(
    shared: &Shared,
    js: &jetstream::Context,
    rows: &Rows,
    mode: Mode,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let began = std::time::Instant::now();
    let mut start = None;
    let mut done = 0;
    while done < rows.len() {
        let attempt = match mode {
            Mode::OneByOne => publish(js, &rows[done], None).await.map(|()| done += 1),
            Mode::Pipelined => async {
                let last = last_sequence(js).await?;
                let start = *start.get_or_insert(last);
                done = ((last - start) as usize).min(rows.len());
                publish_pipelined(js, &rows[done..], last).await
            }
            .await
            .map(|()| done = rows.len()),
        };
        if let Err(error) = attempt {
            warn!(%error, "publishing outputs failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => return Ok(false),
            }
        }
    }
    let published = began.elapsed();
    let sequences: Vec<u64> = rows.iter().map(|(sequence, _)| *sequence).collect();
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || store.remove_outbox(&sequences)).await??;
    tracing::debug!(
        rows = rows.len(),
        publish_ms = published.as_secs_f64() * 1e3,
        delete_ms = (began.elapsed() - published).as_secs_f64() * 1e3,
        "outputs published"
    );
    shared.metrics.outputs_published.inc_by(rows.len() as u64);
    shared.metrics.outbox_depth.dec_by(rows.len() as i64);
    Ok(true)
}

async fn last_sequence(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(OUT_STREAM).await?;
    Ok(stream.info().await?.state.last_sequence)
}

fn headers(row: &OutboxRow, expected_last: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, row.id.as_str());
    headers.insert("Content-Type", "application/json");
    if let Some(last) = expected_last {
        headers.insert("Nats-Expected-Last-Sequence", last.to_string().as_str());
    }
    headers
}

async fn publish(
    js: &jetstream::Context,
    (_, row): &(u64, OutboxRow),
    expected_last: Option<u64>,
) -> anyhow::Result<()> {
    js.publish_with_headers(
        row.subject.clone(),
        headers(row, expected_last),
        row.payload.clone().into(),
    )
    .await?
    .await?;
    Ok(())
}

/// Publishes `rows` after the stream's message `last`, in order, awaiting every ack.
async fn publish_pipelined(
    js: &jetstream::Context,
    rows: &[(u64, OutboxRow)],
    last: u64,
) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(rows.len());
    for (i, (_, row)) in rows.iter().enumerate() {
        acks.push(
            js.publish_with_headers(
                row.subject.clone(),
                headers(row, Some(last + i as u64)),
                row.payload.clone().into(),
            )
            .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
