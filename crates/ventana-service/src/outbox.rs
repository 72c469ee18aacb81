//! Publishes outputs to VENTANA_OUT in order, with `Nats-Msg-Id` = output id, and deletes
//! their outbox rows only after the server acknowledged them (stored, or dropped as a
//! duplicate: it has it already). The pipeline hands each committed batch's rows over in
//! memory; rows left in sled by an earlier run (a crash between commit and ack) are
//! published first, at start, and only those: the two paths never publish the same row. A
//! crash between publish and delete makes the next run publish them again, which the server
//! drops as duplicates.
//!
//! Rows go out pipelined, each expecting the one before it on the stream
//! (`Nats-Expected-Last-Msg-Id`), so the server stores a prefix of them, in order. When that
//! fails (a reconnect, a duplicate, another publisher on `ventana.out.>`), the rows whose
//! acks came back are done, and so is every row up to the stream's last output (each carries
//! its outbox position, `Ventana-Position`); the rest go one at a time, each awaited, without
//! expectations, so duplicates are dropped and nothing is retried blindly or lost. The same
//! position lets a store rolled back by an OS crash fold again without publishing twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use ventana_store::OutboxRow;
use ventana_wire::subjects::{MSG_ID, OUT_STREAM, OUT_SUBJECTS, POSITION_HEADER};

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
    // What VENTANA_OUT holds already. Past an OS crash sled may come back older than the
    // outputs it had published: the events after its checkpoint are folded again into the
    // same outputs at the same positions, and those are not published twice.
    let through = loop {
        match published_through(&js).await {
            Ok(through) => break through,
            Err(error) => warn!(%error, "cannot read VENTANA_OUT's last output; retrying"),
        }
        if crate::pause_or_stop(&mut shutdown, Duration::from_secs(1)).await {
            return Ok(());
        }
    };
    if let Some(through) = through.filter(|p| *p >= recover_before) {
        warn!(
            behind = (through >> 16) - (recover_before >> 16) + 1,
            "the store is behind VENTANA_OUT (rolled back by an OS crash?): folding those input events again; their outputs are published already and are not published twice"
        );
    }
    loop {
        let store = shared.store.clone();
        let mut rows = tokio::task::spawn_blocking(move || store.outbox(ROWS_PER_ROUND)).await??;
        let full_round = rows.len() == ROWS_PER_ROUND;
        rows.retain(|(position, _)| *position < recover_before);
        if rows.is_empty() {
            break;
        }
        if !deliver(&shared, &js, &rows, through, &mut shutdown).await? {
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
        if !deliver(&shared, &js, &rows, through, &mut shutdown).await? {
            return Ok(());
        }
    }
}

/// How a batch of rows is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Pipelined, each row expecting the one before it ([`After`]), so the server stores a
    /// prefix of them, in order. After a failure the acks and the stream's last output say
    /// how long that prefix is, and the rest go [`Mode::OneByOne`].
    Pipelined,
    /// One at a time, each awaited, without expectations: duplicates are dropped, order
    /// holds across reconnects, and no other publisher can stop it.
    OneByOne,
}

/// Publishes `rows` (but those at or before `through`, which the stream holds) until the
/// server acknowledged them all, then deletes them from the outbox. False when asked to stop
/// first (the rows stay in sled for the next run).
async fn deliver(
    shared: &Shared,
    js: &jetstream::Context,
    rows: &Rows,
    through: Option<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<bool> {
    let began = std::time::Instant::now();
    shared.outbox_progress.start();
    let mut mode = Mode::Pipelined;
    let mut done = stored(rows, through);
    while done < rows.len() {
        let attempt = match mode {
            Mode::OneByOne => publish(js, &rows[done]).await.map(|()| done += 1),
            Mode::Pipelined => match last_sequence(js).await {
                Ok(last) => {
                    let (acked, result) = publish_pipelined(js, &rows[done..], last).await;
                    done += acked;
                    if result.is_err() {
                        // Whatever went wrong, go on one row at a time from what is known to
                        // be stored: the acked rows, and any row up to the stream's last
                        // message, if that is one of them.
                        mode = Mode::OneByOne;
                        shared.metrics.outbox_resyncs.inc();
                        let through = published_through(js).await.ok().flatten();
                        done = done.max(stored(rows, through));
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

/// How many of `rows`, from the first, the stream holds: those at or before `through`.
fn stored(rows: &Rows, through: Option<u64>) -> usize {
    through.map_or(0, |through| {
        rows.partition_point(|(position, _)| *position <= through)
    })
}

/// The outbox position of VENTANA_OUT's last message: outputs are stored in outbox order,
/// so every row at or before it is there. `None` when the stream is empty, or when its last
/// message is not ventanad's (another client publishes to `ventana.out.>`: said loudly, as
/// it breaks the order promise; nothing is lost, rows are published again and dropped as
/// duplicates).
async fn published_through(js: &jetstream::Context) -> anyhow::Result<Option<u64>> {
    let stream = js.get_stream(OUT_STREAM).await?;
    let last = match stream.get_last_raw_message_by_subject(OUT_SUBJECTS).await {
        Ok(last) => last,
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let position = last
        .headers
        .get(POSITION_HEADER)
        .and_then(|v| v.as_str().parse().ok());
    if position.is_none() {
        error!(
            sequence = last.sequence,
            "VENTANA_OUT's last message is not ventanad's: another client publishes to ventana.out.> (deny it, see deploy/nats-server.conf); outputs go on one by one, none is lost"
        );
    }
    Ok(position)
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

fn headers((position, row): &(u64, OutboxRow), after: After<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, row.id.as_str());
    headers.insert(POSITION_HEADER, position.to_string().as_str());
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

async fn publish(js: &jetstream::Context, entry: &(u64, OutboxRow)) -> anyhow::Result<()> {
    let row = &entry.1;
    js.publish_with_headers(
        row.subject.clone(),
        headers(entry, After::Anything),
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
    for (i, entry) in rows.iter().enumerate() {
        let after = match i.checked_sub(1) {
            None => After::Sequence(last),
            Some(before) => After::Output(&rows[before].1.id),
        };
        match js
            .publish_with_headers(
                entry.1.subject.clone(),
                headers(entry, after),
                entry.1.payload.clone().into(),
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
