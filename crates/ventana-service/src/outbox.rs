//! Publishes outputs to VENTANA_OUT in order, with `Nats-Msg-Id` = output id, and deletes
//! their outbox rows only after the server acknowledged them (stored, or dropped as a
//! duplicate: it has it already). The pipeline hands each committed batch's rows over in
//! memory; rows left in sled by an earlier run (a crash between commit and ack) are
//! published first, at start, and only those: the two paths never publish the same row. A
//! crash between publish and delete makes the next run publish them again, which the server
//! drops as duplicates.
//!
//! Rows go out pipelined, each with `Nats-Expected-Last-Sequence`, so the server stores them
//! in order or not at all. When that fails (a reconnect, a duplicate, another publisher on
//! `ventana.out.>`), the rows whose acks came back are done; the stream's last message says
//! whether more of them were stored; the rest go one at a time, each awaited, without the
//! expectation, so duplicates are dropped and nothing is retried blindly or lost.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use ventana_store::OutboxRow;
use ventana_wire::subjects::{MSG_ID, OUT_STREAM, OUT_SUBJECTS};

use crate::Shared;

/// Rows of one committed batch, in outbox order.
pub type Rows = Vec<(u64, OutboxRow)>;

const ROWS_PER_ROUND: usize = 4096;

/// The first outbox position the pipeline of this run can commit, given the checkpoint it
/// starts from: rows below it are an earlier run's.
pub fn first_position_after(checkpoint: u64) -> u64 {
    (checkpoint + 1) << 16
}

pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    mut committed: mpsc::Receiver<Rows>,
    recover_before: u64,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Rows an earlier run committed but did not see acknowledged: those below
    // `recover_before`. The pipeline of this run commits at or above it and hands those over
    // itself, so the two never publish the same row.
    let mut recovered = 0;
    let store = shared.store.clone();
    let waiting = tokio::task::spawn_blocking(move || store.outbox_len()).await?;
    shared.metrics.outbox_depth.set(waiting as i64);
    loop {
        let store = shared.store.clone();
        let mut rows = tokio::task::spawn_blocking(move || store.outbox(ROWS_PER_ROUND)).await??;
        let full_round = rows.len() == ROWS_PER_ROUND;
        rows.retain(|(position, _)| *position < recover_before);
        if rows.is_empty() {
            break;
        }
        if !deliver(&shared, &js, &rows, Mode::Recovered, &mut shutdown).await? {
            return Ok(());
        }
        recovered += rows.len();
        if !full_round {
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
    /// Rows committed by this run: pipelined, each expecting the one before it ([`After`]),
    /// so the server stores a prefix of them, in order. After a failure the acks and the
    /// stream's last message say how long that prefix is, and the rest go [`Mode::OneByOne`].
    Pipelined,
    /// Rows an earlier run left: the stream holds a prefix of them (outputs are stored in
    /// outbox order), up to its last message if that is one of them; the rest go
    /// [`Mode::Pipelined`].
    Recovered,
    /// One at a time, each awaited, without expectations: duplicates are dropped, order
    /// holds across reconnects, and no other publisher can stop it.
    OneByOne,
}

/// Publishes `rows` until the server acknowledged them all, then deletes them from the
/// outbox. False when asked to stop first (the rows stay in sled for the next run).
async fn deliver(
    shared: &Shared,
    js: &jetstream::Context,
    rows: &Rows,
    mut mode: Mode,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let began = std::time::Instant::now();
    shared.outbox_progress.start();
    let mut done = 0;
    if mode == Mode::Recovered {
        done = stored_up_to(js, rows).await.unwrap_or(0);
        mode = Mode::Pipelined;
    }
    while done < rows.len() {
        let attempt = match mode {
            Mode::OneByOne => publish(js, &rows[done]).await.map(|()| done += 1),
            Mode::Pipelined | Mode::Recovered => match last_sequence(js).await {
                Ok(last) => {
                    let (acked, result) = publish_pipelined(js, &rows[done..], last).await;
                    done += acked;
                    if result.is_err() {
                        // Whatever went wrong, go on one row at a time from what is known to
                        // be stored: the acked rows, and any row up to the stream's last
                        // message, if that is one of them.
                        mode = Mode::OneByOne;
                        shared.metrics.outbox_resyncs.inc();
                        done = done.max(stored_up_to(js, rows).await.unwrap_or(0));
                    }
                    result
                }
                Err(error) => Err(error),
            },
        };
        match attempt {
            Ok(()) => shared.outbox_progress.advance(),
            Err(error) => {
                warn!(%error, done, rows = rows.len(), "publishing outputs failed; going on one by one");
                if crate::pause_or_stop(shutdown, Duration::from_millis(500)).await {
                    return Ok(false);
                }
            }
        }
    }
    let published = began.elapsed();
    let sequences: Vec<u64> = rows.iter().map(|(sequence, _)| *sequence).collect();
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || store.remove_outbox(&sequences)).await??;
    shared.outbox_progress.idle();
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

/// How many of `rows` the stream holds for sure: all up to the one its last message is, if
/// it is one of them. A last message that is none of ventana's outputs means another
/// publisher wrote to `ventana.out.>`: said loudly, as it breaks the order promise.
async fn stored_up_to(js: &jetstream::Context, rows: &Rows) -> anyhow::Result<usize> {
    let stream = js.get_stream(OUT_STREAM).await?;
    let last = stream.get_last_raw_message_by_subject(OUT_SUBJECTS).await?;
    let id = last
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .map(|v| v.as_str().to_owned())
        .unwrap_or_default();
    if let Some(index) = rows.iter().position(|(_, row)| row.id == id) {
        return Ok(index + 1);
    }
    if !looks_like_an_output_id(&id) {
        error!(
            sequence = last.sequence,
            id = %id.chars().take(64).filter(|c| !c.is_control()).collect::<String>(),
            "VENTANA_OUT's last message is not ventanad's: another client publishes to ventana.out.> (deny it, see deploy/nats-server.conf); outputs go on one by one, none is lost"
        );
    }
    Ok(0)
}

/// `<conversation token>-<26 characters>`, as every output id ventanad writes.
fn looks_like_an_output_id(id: &str) -> bool {
    id.len() == 53
        && id.as_bytes()[26] == b'-'
        && id
            .get(..26)
            .and_then(ventana_core::ConversationToken::parse)
            .is_some()
}

async fn last_sequence(js: &jetstream::Context) -> anyhow::Result<u64> {
    let mut stream = js.get_stream(OUT_STREAM).await?;
    Ok(stream.info().await?.state.last_sequence)
}

/// What the stream must hold last for a row to be stored after it.
#[derive(Clone, Copy, Debug)]
enum After<'a> {
    /// Anything: the row is published on its own, awaited (duplicates are dropped).
    Anything,
    /// The message at this sequence (the first row of a pipelined run).
    Sequence(u64),
    /// The output with this id (every later row: the row before it). Ids are unique, so
    /// once a row is refused every later one is too, and what the stream holds of a run is
    /// always a prefix of it, whoever else publishes.
    Output(&'a str),
}

fn headers(row: &OutboxRow, after: After<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, row.id.as_str());
    headers.insert("Content-Type", "application/json");
    match after {
        After::Anything => {}
        After::Sequence(last) => {
            headers.insert("Nats-Expected-Last-Sequence", last.to_string().as_str())
        }
        After::Output(id) => headers.insert("Nats-Expected-Last-Msg-Id", id),
    }
    headers
}

async fn publish(js: &jetstream::Context, (_, row): &(u64, OutboxRow)) -> anyhow::Result<()> {
    js.publish_with_headers(
        row.subject.clone(),
        headers(row, After::Anything),
        row.payload.clone().into(),
    )
    .await?
    .await?;
    Ok(())
}

/// Publishes `rows` after the stream's message `last`, in order, awaiting every ack. Returns
/// how many rows, from the first, the server acknowledged before anything failed.
async fn publish_pipelined(
    js: &jetstream::Context,
    rows: &[(u64, OutboxRow)],
    last: u64,
) -> (usize, anyhow::Result<()>) {
    let mut acks = Vec::with_capacity(rows.len());
    for (i, (_, row)) in rows.iter().enumerate() {
        let after = match i.checked_sub(1) {
            None => After::Sequence(last),
            Some(before) => After::Output(&rows[before].1.id),
        };
        match js
            .publish_with_headers(
                row.subject.clone(),
                headers(row, after),
                row.payload.clone().into(),
            )
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(error) => return (0, Err(error.into())),
        }
    }
    for (acked, ack) in acks.into_iter().enumerate() {
        if let Err(error) = ack.await {
            return (acked, Err(error.into()));
        }
    }
    (rows.len(), Ok(()))
}
