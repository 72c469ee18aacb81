//! Publishes outputs to VENTANA_OUT in order, with `Nats-Msg-Id` = output id, and deletes
//! their outbox rows only after the server acknowledged them (stored, or dropped as a
//! duplicate: it has it already). Only the instance holding the lease publishes, each
//! output fenced (lease.rs); the others keep their rows and forget those the holder has
//! published.
//!
//! On taking the lease, the rows the store holds past VENTANA_OUT's last output are
//! published first (an earlier run's, left by a crash between commit and ack, or those the
//! previous holder had not published yet; every instance computes the same rows at the
//! same positions); then the rows the pipeline hands over in memory, but those already
//! published from the store. A crash between publish and delete makes the next run publish
//! them again, which the server drops as duplicates.
//!
//! Rows go out pipelined, each expecting the one before it on the stream
//! (`Nats-Expected-Last-Msg-Id`), so the server stores a prefix of them, in order. When that
//! fails (a reconnect, a duplicate, another publisher on `ventana.out.>`), the rows whose
//! acks came back are done, and so is every row up to the stream's last output (each carries
//! its outbox position, `Ventana-Position`); the rest go one at a time, each awaited and
//! expecting the stream's last sequence as just read, so duplicates are dropped and nothing
//! is retried blindly or lost. The same position lets a store rolled back by an OS crash fold again without
//! publishing twice.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use ventana_store::OutboxRow;
use ventana_wire::subjects::{INSTANCE_HEADER, MSG_ID, OUT_STREAM, OUT_SUBJECTS, POSITION_HEADER};

use crate::Shared;
use crate::lease::{self, Holding, Lease};

/// Rows of one committed batch, in outbox order.
pub type Rows = Vec<(u64, OutboxRow)>;

const ROWS_PER_ROUND: usize = 4096;

/// How often an instance standing by forgets the rows the holder has published.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// Who publishes, as what.
#[derive(Clone, Copy, Debug)]
struct Publisher<'a> {
    instance: &'a str,
    /// The VENTANA_OUT sequence of this instance's fence.
    fence: u64,
}

/// How holding the lease ended.
enum Held {
    /// The service is stopping.
    Stopped,
    /// The lease task gave it up (not renewed in time).
    Lost,
    /// The server refused an output: another instance has fenced the outputs.
    Fenced,
}

/// What became of a batch of rows.
enum Delivered {
    /// Stored, and removed from the outbox.
    Done,
    /// The service is stopping; the rows stay in the outbox.
    Stopped,
    /// Another instance fenced the outputs; the rows stay in the outbox.
    Fenced,
}

pub async fn run(
    shared: Arc<Shared>,
    lease: Arc<Lease>,
    js: jetstream::Context,
    instance: String,
    mut committed: mpsc::Receiver<Rows>,
    mut holding: Holding,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store = shared.store.clone();
    let waiting = tokio::task::spawn_blocking(move || store.outbox_len()).await?;
    shared.metrics.outbox_depth.set(waiting as i64);
    loop {
        // Standing by: the rows stay in the store (they are read from there on taking the
        // lease), and those the holder has published are forgotten.
        let fence = loop {
            if let Some(fence) = *holding.borrow_and_update() {
                break fence;
            }
            tokio::select! {
                rows = committed.recv() => if rows.is_none() {
                    return Ok(());
                },
                _ = holding.changed() => {}
                _ = tokio::time::sleep(PRUNE_EVERY) => {
                    if let Err(error) = prune(&shared, &js).await {
                        warn!(%error, "cannot forget published outbox rows");
                    }
                }
                _ = shutdown.changed() => return Ok(()),
            }
        };
        let publisher = Publisher {
            instance: &instance,
            fence,
        };
        match hold(
            &shared,
            &js,
            publisher,
            &mut committed,
            &mut holding,
            &mut shutdown,
        )
        .await?
        {
            Held::Stopped => return Ok(()),
            Held::Lost => {}
            Held::Fenced => {
                shared.metrics.fenced.inc();
                lease.step_down(fence);
            }
        }
    }
}

/// Publishes while this instance holds the lease: first what the store holds past the last
/// output stored (this instance's earlier run, or the previous holder, published up to it),
/// then what the pipeline commits.
async fn hold(
    shared: &Shared,
    js: &jetstream::Context,
    publisher: Publisher<'_>,
    committed: &mut mpsc::Receiver<Rows>,
    holding: &mut Holding,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Held> {
    let mut through = loop {
        match published_through(js).await {
            Ok(through) => break through,
            Err(error) => warn!(%error, "cannot read VENTANA_OUT's last output; retrying"),
        }
        if crate::pause_or_stop(shutdown, Duration::from_secs(1)).await {
            return Ok(Held::Stopped);
        }
    };
    let mut recovered = 0;
    loop {
        let store = shared.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.outbox(ROWS_PER_ROUND)).await??;
        let Some(last) = rows.last().map(|(position, _)| *position) else {
            break;
        };
        match deliver(shared, js, publisher, &rows, through, shutdown).await? {
            Delivered::Done => {}
            Delivered::Stopped => return Ok(Held::Stopped),
            Delivered::Fenced => return Ok(Held::Fenced),
        }
        recovered += rows.len();
        through = through.max(Some(last));
        if rows.len() < ROWS_PER_ROUND {
            break;
        }
    }
    if recovered > 0 {
        info!(
            recovered,
            "published the outputs the store held on taking the lease"
        );
    }
    loop {
        let mut rows = tokio::select! {
            rows = committed.recv() => match rows {
                Some(rows) => rows,
                None => return Ok(Held::Stopped),
            },
            _ = holding.changed() => {
                if holding.borrow_and_update().is_none() {
                    return Ok(Held::Lost);
                }
                continue;
            }
            _ = shutdown.changed() => return Ok(Held::Stopped),
        };
        while rows.len() < ROWS_PER_ROUND {
            match committed.try_recv() {
                Ok(more) => rows.extend(more),
                Err(_) => break,
            }
        }
        // Rows read from the store above may come again from the pipeline.
        rows.retain(|(position, _)| through.is_none_or(|through| *position > through));
        let Some(last) = rows.last().map(|(position, _)| *position) else {
            continue;
        };
        match deliver(shared, js, publisher, &rows, through, shutdown).await? {
            Delivered::Done => through = Some(last),
            Delivered::Stopped => return Ok(Held::Stopped),
            Delivered::Fenced => return Ok(Held::Fenced),
        }
    }
}

/// Forgets the outbox rows the holder has published (standing by).
async fn prune(shared: &Shared, js: &jetstream::Context) -> anyhow::Result<()> {
    let Some(through) = published_through(js).await? else {
        return Ok(());
    };
    loop {
        let store = shared.store.clone();
        let forgotten = tokio::task::spawn_blocking(move || {
            let rows = store.outbox(ROWS_PER_ROUND)?;
            let published: Vec<u64> = rows
                .iter()
                .map(|(position, _)| *position)
                .take_while(|position| *position <= through)
                .collect();
            store.remove_outbox(&published)?;
            Ok::<_, ventana_store::StoreError>(published.len())
        })
        .await??;
        shared.metrics.outbox_depth.dec_by(forgotten as i64);
        if forgotten < ROWS_PER_ROUND {
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
    publisher: Publisher<'_>,
    rows: &Rows,
    through: Option<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<Delivered> {
    let began = std::time::Instant::now();
    shared.outbox_progress.start();
    let mut mode = Mode::Pipelined;
    let mut done = stored(rows, through);
    while done < rows.len() {
        // Each attempt starts from the stream as it is, and only while this instance's fence
        // is the last: a fence published after the read makes the publish expecting that
        // read's last sequence fail.
        let attempt = match fenced_last_sequence(js, publisher).await {
            Ok(None) => {
                warn!(
                    done,
                    rows = rows.len(),
                    "another instance fenced the outputs"
                );
                shared.outbox_progress.idle();
                return Ok(Delivered::Fenced);
            }
            Err(error) => Err(error),
            Ok(Some(last)) => match mode {
                Mode::OneByOne => publish(js, publisher, &rows[done], last)
                    .await
                    .map(|()| done += 1),
                Mode::Pipelined => {
                    let (acked, result) =
                        publish_pipelined(js, publisher, &rows[done..], last).await;
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
            },
        };
        match attempt {
            Ok(()) => shared.outbox_progress.advance(),
            Err(error) => {
                warn!(%error, done, rows = rows.len(), "publishing outputs failed; going on one by one");
                if crate::pause_or_stop(shutdown, Duration::from_millis(500)).await {
                    return Ok(Delivered::Stopped);
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
    Ok(Delivered::Done)
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

/// VENTANA_OUT's last sequence, read before its last fence: `None` when that fence is not
/// this instance's. A publish expecting the sequence is then stored only if no other fence
/// came since (lease.rs).
async fn fenced_last_sequence(
    js: &jetstream::Context,
    publisher: Publisher<'_>,
) -> anyhow::Result<Option<u64>> {
    let mut stream = js.get_stream(OUT_STREAM).await?;
    let last = stream.info().await?.state.last_sequence;
    let fence = lease::last_fence(js).await?;
    Ok((fence == Some(publisher.fence)).then_some(last))
}

/// What the stream must hold last for a row to be stored after it.
#[derive(Clone, Copy, Debug)]
enum After<'a> {
    /// The message at this sequence (a row published alone, or the first of a pipelined
    /// run): read after the fence was found to be this instance's.
    Sequence(u64),
    /// The output with this id (every later row: the row before it). Ids are unique, and a
    /// fence has its own, so once a row is refused every later one is too, and what the
    /// stream holds of a run is always a prefix of it, whoever else publishes.
    Output(&'a str),
}

fn headers(
    publisher: Publisher<'_>,
    (position, row): &(u64, OutboxRow),
    after: After<'_>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, row.id.as_str());
    headers.insert(POSITION_HEADER, position.to_string().as_str());
    headers.insert("Content-Type", "application/json");
    headers.insert(INSTANCE_HEADER, publisher.instance);
    match after {
        After::Sequence(last) => {
            headers.insert("Nats-Expected-Last-Sequence", last.to_string().as_str())
        }
        After::Output(id) => headers.insert("Nats-Expected-Last-Msg-Id", id),
    }
    headers
}

/// Publishes one row after the stream's message `last`, awaited (a duplicate is dropped).
async fn publish(
    js: &jetstream::Context,
    publisher: Publisher<'_>,
    entry: &(u64, OutboxRow),
    last: u64,
) -> anyhow::Result<()> {
    let row = &entry.1;
    js.publish_with_headers(
        row.subject.clone(),
        headers(publisher, entry, After::Sequence(last)),
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
    publisher: Publisher<'_>,
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
                headers(publisher, entry, after),
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
