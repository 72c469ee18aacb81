//! Publishes the outputs of the partitions this instance owns (lease.rs) to VENTANA_OUT, each
//! partition in outbox order, with `Nats-Msg-Id` = output id, and deletes their outbox rows
//! only after the server stored them. The rows of partitions other instances own stay in the
//! store until those owners' marks say they are stored, and are then forgotten.
//!
//! A partition's outputs go as JetStream atomic batches, one batch in flight per partition
//! (partitions in parallel): the first output expects the last message on the partition's
//! fence subject (`ventana.fence.<p>`) to be this instance's fence or last mark
//! (`Nats-Expected-Last-Subject-Sequence`), and the batch ends with a new mark there carrying
//! the position of its last output (`Ventana-Position`). The server stores the whole batch
//! or none of it; a fence published since by another instance makes it refuse the batch,
//! and the outbox lets the partition go.
//!
//! On taking a partition, the rows the store holds past the position of the partition's last
//! mark are published first (an earlier run's, left by a crash between commit and delete, or
//! those the previous owner had not published yet: every instance computes the same rows at
//! the same positions); then the rows the pipeline hands over in memory, but those already
//! read. The same positions let a store rolled back by an OS crash fold again without
//! publishing twice. A batch refused for an output the stream already has (its id within the
//! duplicate window) goes again one output at a time, each one refused so skipped by a mark.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};
use ventana_store::OutboxRow;
use ventana_wire::subjects::{
    self, BATCH_COMMIT, BATCH_ID, BATCH_SEQUENCE, INSTANCE_HEADER, MSG_ID, POSITION_HEADER,
};

use crate::Shared;
use crate::lease::{self, Fence, Holding, Lease};

/// Rows of one committed batch, in outbox order.
pub type Rows = Vec<(u64, OutboxRow)>;

/// Outputs per atomic batch (the server takes at most 1 000 messages, the mark included).
const ROWS_PER_BATCH: usize = 512;
/// Batches in flight at once (the server takes 50 per stream).
const FLIGHTS: usize = 32;
/// Rows held in memory before the pipeline's hand-over waits.
const MAX_QUEUED: usize = 200_000;
/// Rows read from the store at a time (as it starts, and on taking partitions).
const ROWS_PER_READ: usize = 4096;
/// How often the rows of partitions others own are forgotten once published.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// The pause before a batch that failed (no answer, a leader change) goes again.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// The server's code for an atomic batch holding a message id it has stored already.
const DUPLICATE_IN_BATCH: &str = "10201";

/// One partition this instance owns.
#[derive(Debug)]
struct Partition {
    /// The sequence of the fence this instance took the partition with.
    taken_at: u64,
    /// This instance's last fence or mark on the partition's fence subject, and the
    /// position its outputs are stored through.
    fence: Fence,
    /// Rows to publish, in position order.
    queue: VecDeque<(u64, OutboxRow)>,
    /// A batch is in flight.
    busy: bool,
    /// Rows still to go one at a time (after a batch was refused for a duplicate).
    one_by_one: usize,
}

impl Partition {
    fn new(fence: Fence) -> Self {
        Self {
            taken_at: fence.sequence,
            fence,
            queue: VecDeque::new(),
            busy: false,
            one_by_one: 0,
        }
    }

    /// Queues a row unless it is queued already; false when the stream has it already
    /// (at or before the partition's mark), so its outbox row is to be forgotten.
    fn push(&mut self, row: (u64, OutboxRow)) -> bool {
        if self.fence.through.is_some_and(|through| row.0 <= through) {
            return false;
        }
        if self.queue.back().is_none_or(|(last, _)| row.0 > *last) {
            self.queue.push_back(row);
        }
        true
    }
}

/// What became of a batch.
enum Outcome {
    /// Stored, with its mark at this sequence; its rows are deleted from the store.
    Stored { mark: u64 },
    /// Another instance fenced the partition.
    Fenced,
    /// Refused: one of its outputs is stored already.
    Duplicate,
    /// No answer, or refused for another reason: it goes again.
    Failed,
}

/// A batch's end: partition, the fence it expected, its rows, the outcome.
type Landed = (u32, u64, Rows, Outcome);

/// The positions of the store's rows this instance does not publish now, by partition:
/// forgotten once the owner's marks pass them.
type Standby = BTreeMap<u32, BTreeSet<u64>>;

/// The partition of an outbox row (its output subject names the conversation; ventanad
/// writes no other, and a row of none would go with partition 0 rather than never).
fn partition_of(row: &OutboxRow, partitions: u32) -> u32 {
    subjects::token_of_output_subject(&row.subject).map_or(0, |token| token.partition(partitions))
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
    let instance: Arc<str> = instance.into();
    let mut owned: BTreeMap<u32, Partition> = BTreeMap::new();
    let mut standby = standby_from_store(&shared).await?;
    let mut flights: JoinSet<Landed> = JoinSet::new();
    let mut flying = 0;
    let mut queued = 0;
    let mut turn = 0usize;
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        // Rows the stream has already: their outbox rows go.
        let mut stored = Vec::new();
        tokio::select! {
            rows = committed.recv(), if queued < MAX_QUEUED => {
                let Some(rows) = rows else { break };
                for row in rows {
                    let number = partition_of(&row.1, shared.partitions);
                    match owned.get_mut(&number) {
                        Some(partition) => {
                            let position = row.0;
                            if !partition.push(row) {
                                stored.push(position);
                            }
                        }
                        None => {
                            standby.entry(number).or_default().insert(row.0);
                        }
                    }
                }
            }
            _ = holding.changed() => {
                let now = holding.borrow_and_update().clone();
                stored = take_over(&shared, &mut owned, &mut standby, &now).await?;
            }
            Some(landed) = flights.join_next() => {
                let (partition, expected, rows, outcome) = landed?;
                flying -= rows.len();
                settle(&shared, &lease, &mut owned, &mut standby, partition, expected, rows, outcome);
            }
            _ = prune.tick() => {
                if let Err(error) = forget_published(&shared, &js, &mut standby).await {
                    warn!(error = format!("{error:#}"), "cannot forget published outbox rows");
                }
            }
            _ = shutdown.changed() => break,
        }
        if !stored.is_empty() {
            let store = shared.store.clone();
            tokio::task::spawn_blocking(move || store.remove_outbox(&stored)).await??;
        }
        queued = owned.values().map(|partition| partition.queue.len()).sum();
        let waiting: usize = standby.values().map(BTreeSet::len).sum();
        shared
            .metrics
            .outbox_depth
            .set((queued + flying + waiting) as i64);
        // Partitions take turns to launch first, so none waits behind the others when more
        // have rows than batches may fly.
        turn = turn.wrapping_add(1);
        let first = owned
            .keys()
            .nth(turn % owned.len().max(1))
            .copied()
            .unwrap_or(0);
        let (later, earlier) = {
            let (earlier, later): (Vec<_>, Vec<_>) =
                owned.iter_mut().partition(|(number, _)| **number < first);
            (later, earlier)
        };
        for (&number, partition) in later.into_iter().chain(earlier) {
            if flights.len() >= FLIGHTS {
                break;
            }
            if partition.busy || partition.queue.is_empty() {
                continue;
            }
            let size = if partition.one_by_one > 0 {
                1
            } else {
                ROWS_PER_BATCH
            };
            let rows: Rows = partition
                .queue
                .drain(..size.min(partition.queue.len()))
                .collect();
            partition.busy = true;
            if flights.is_empty() {
                // Only a stored batch counts as progress (outbox_alive): one that goes again
                // and again does not.
                shared.outbox_progress.start();
            }
            flying += rows.len();
            flights.spawn(fly(
                shared.clone(),
                js.clone(),
                instance.clone(),
                number,
                partition.fence.sequence,
                rows,
            ));
        }
        if flights.is_empty() {
            shared.outbox_progress.idle();
        }
    }
    // Let the batches in flight land (their rows are deleted once stored).
    while flights.join_next().await.is_some() {}
    Ok(())
}

/// The positions of the store's rows, by partition (as it starts, nothing is owned).
async fn standby_from_store(shared: &Shared) -> anyhow::Result<Standby> {
    let mut standby = Standby::new();
    let mut after = None;
    loop {
        let store = shared.store.clone();
        let rows =
            tokio::task::spawn_blocking(move || store.outbox_after(after, ROWS_PER_READ)).await??;
        let Some(last) = rows.last().map(|(position, _)| *position) else {
            return Ok(standby);
        };
        let read = rows.len();
        for (position, row) in rows {
            standby
                .entry(partition_of(&row, shared.partitions))
                .or_default()
                .insert(position);
        }
        after = Some(last);
        if read < ROWS_PER_READ {
            return Ok(standby);
        }
    }
}

/// Brings `owned` to the partitions the lease says this instance owns: the rows of those
/// let go wait in `standby`, and the queue of each newly taken one is filled from the
/// store, past its fence's position. Returns the positions of the rows read that the
/// stream has already.
async fn take_over(
    shared: &Shared,
    owned: &mut BTreeMap<u32, Partition>,
    standby: &mut Standby,
    now: &BTreeMap<u32, Fence>,
) -> anyhow::Result<Vec<u64>> {
    // A partition taken again comes with a new fence: it starts over.
    let let_go: Vec<u32> = owned
        .iter()
        .filter(|(number, partition)| {
            now.get(number).map(|fence| fence.sequence) != Some(partition.taken_at)
        })
        .map(|(number, _)| *number)
        .collect();
    for number in let_go {
        if let Some(partition) = owned.remove(&number) {
            standby
                .entry(number)
                .or_default()
                .extend(partition.queue.iter().map(|(position, _)| *position));
        }
    }
    let taken: BTreeMap<u32, Fence> = now
        .iter()
        .filter(|(number, _)| !owned.contains_key(number))
        .map(|(number, fence)| (*number, *fence))
        .collect();
    let mut stored = Vec::new();
    if taken.is_empty() {
        return Ok(stored);
    }
    for (&number, &fence) in &taken {
        owned.insert(number, Partition::new(fence));
        standby.remove(&number);
    }
    let mut after = None;
    loop {
        let store = shared.store.clone();
        let rows =
            tokio::task::spawn_blocking(move || store.outbox_after(after, ROWS_PER_READ)).await??;
        let Some(last) = rows.last().map(|(position, _)| *position) else {
            break;
        };
        let read = rows.len();
        for row in rows {
            let number = partition_of(&row.1, shared.partitions);
            if taken.contains_key(&number)
                && let Some(partition) = owned.get_mut(&number)
            {
                let position = row.0;
                if !partition.push(row) {
                    stored.push(position);
                }
            }
        }
        after = Some(last);
        if read < ROWS_PER_READ {
            break;
        }
    }
    info!(
        partitions = ?taken.keys().collect::<Vec<_>>(),
        recovered = taken.keys().map(|number| owned[number].queue.len()).sum::<usize>(),
        "publishing the taken partitions' outputs from the store"
    );
    Ok(stored)
}

/// Acts on a landed batch: moves the partition's fence on, puts the rows back to go again,
/// or lets the partition go.
#[allow(clippy::too_many_arguments)]
fn settle(
    shared: &Shared,
    lease: &Lease,
    owned: &mut BTreeMap<u32, Partition>,
    standby: &mut Standby,
    number: u32,
    expected: u64,
    rows: Rows,
    outcome: Outcome,
) {
    let landed = rows.len();
    // A batch sent under an earlier fence, or of a partition let go: its rows, unless
    // stored (and deleted), wait with the others of partitions not owned.
    let Some(partition) = owned
        .get_mut(&number)
        .filter(|partition| partition.fence.sequence == expected)
    else {
        if !matches!(outcome, Outcome::Stored { .. }) {
            standby
                .entry(number)
                .or_default()
                .extend(rows.iter().map(|(position, _)| *position));
        }
        return;
    };
    partition.busy = false;
    match outcome {
        Outcome::Stored { mark } => {
            partition.fence = Fence {
                sequence: mark,
                through: rows.last().map(|(position, _)| *position),
            };
            partition.one_by_one = partition.one_by_one.saturating_sub(landed);
            shared.outbox_progress.advance();
        }
        Outcome::Fenced => {
            shared.metrics.fenced.inc();
            lease.step_down(number, partition.taken_at);
            let waiting = standby.entry(number).or_default();
            waiting.extend(rows.iter().map(|(position, _)| *position));
            waiting.extend(partition.queue.iter().map(|(position, _)| *position));
            owned.remove(&number);
        }
        Outcome::Duplicate | Outcome::Failed => {
            if matches!(outcome, Outcome::Duplicate) {
                shared.metrics.outbox_resyncs.inc();
                partition.one_by_one = partition.queue.len() + landed;
            }
            for row in rows.into_iter().rev() {
                partition.queue.push_front(row);
            }
        }
    }
}

/// Publishes one batch of a partition's rows and deletes them from the store once stored.
async fn fly(
    shared: Arc<Shared>,
    js: jetstream::Context,
    instance: Arc<str>,
    partition: u32,
    fence: u64,
    rows: Rows,
) -> Landed {
    let through = rows.last().map_or(0, |(position, _)| *position);
    let outcome = match publish_batch(&js, &instance, partition, fence, &rows, through).await {
        Ok(mark) => Outcome::Stored { mark },
        Err(error) => {
            let duplicate = format!("{error:#}").contains(DUPLICATE_IN_BATCH);
            if duplicate && rows.len() == 1 {
                // The stream has this output already: a mark alone records it as stored.
                match publish_batch(&js, &instance, partition, fence, &[], through).await {
                    Ok(mark) => Outcome::Stored { mark },
                    Err(error) => {
                        landed_how(&js, &instance, partition, fence, through, &error).await
                    }
                }
            } else if duplicate {
                Outcome::Duplicate
            } else {
                landed_how(&js, &instance, partition, fence, through, &error).await
            }
        }
    };
    if let Outcome::Stored { .. } = outcome {
        let positions: Vec<u64> = rows.iter().map(|(position, _)| *position).collect();
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.remove_outbox(&positions)).await {
            Ok(Ok(())) => {}
            // Left in the store, they are read again at the next start and skipped as stored.
            Ok(Err(error)) => warn!(%error, "cannot delete published outbox rows"),
            Err(error) => warn!(%error, "cannot delete published outbox rows"),
        }
        shared.metrics.outputs_published.inc_by(rows.len() as u64);
    }
    if let Outcome::Failed = outcome {
        tokio::time::sleep(RETRY_AFTER).await;
    }
    (partition, fence, rows, outcome)
}

/// After a batch failed: whether it was stored all the same (its mark is the last message
/// on the fence subject: the answer was lost), refused for another's fence, or is to go
/// again (the fence subject still ends with this instance's fence or mark).
async fn landed_how(
    js: &jetstream::Context,
    instance: &str,
    partition: u32,
    fence: u64,
    through: u64,
    error: &anyhow::Error,
) -> Outcome {
    match lease::last_mark(js, partition).await {
        Ok((sequence, by, position)) => {
            if sequence == fence {
                warn!(
                    partition,
                    error = format!("{error:#}"),
                    "publishing outputs failed; going again"
                );
                Outcome::Failed
            } else if by.as_deref() == Some(instance) && position == Some(through) {
                Outcome::Stored { mark: sequence }
            } else {
                warn!(partition, "another instance fenced the partition");
                Outcome::Fenced
            }
        }
        Err(read) => {
            warn!(
                partition,
                error = format!("{error:#}"),
                read = format!("{read:#}"),
                "publishing outputs failed; going again"
            );
            Outcome::Failed
        }
    }
}

/// Publishes `rows` of `partition` as one atomic batch after the fence subject's message
/// `fence`, ending with a mark that the partition's outputs are stored through `through`.
/// Returns the mark's sequence.
async fn publish_batch(
    js: &jetstream::Context,
    instance: &str,
    partition: u32,
    fence: u64,
    rows: &[(u64, OutboxRow)],
    through: u64,
) -> anyhow::Result<u64> {
    let batch = nuid::next();
    let fence_subject = subjects::partition_fence(partition);
    let expect = |headers: &mut HeaderMap| {
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            fence.to_string().as_str(),
        );
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence-Subject",
            fence_subject.as_str(),
        );
    };
    let client = js.client();
    for (n, (position, row)) in rows.iter().enumerate() {
        let mut headers = HeaderMap::new();
        headers.insert(BATCH_ID, batch.as_str());
        headers.insert(BATCH_SEQUENCE, (n + 1).to_string().as_str());
        headers.insert(MSG_ID, row.id.as_str());
        headers.insert(POSITION_HEADER, position.to_string().as_str());
        headers.insert("Content-Type", "application/json");
        headers.insert(INSTANCE_HEADER, instance);
        if n == 0 {
            expect(&mut headers);
        }
        // Only the commit is answered; the connection keeps the batch in order.
        client
            .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
            .await?;
    }
    let mut headers = HeaderMap::new();
    headers.insert(BATCH_ID, batch.as_str());
    headers.insert(BATCH_SEQUENCE, (rows.len() + 1).to_string().as_str());
    headers.insert(BATCH_COMMIT, "1");
    headers.insert(INSTANCE_HEADER, instance);
    headers.insert(POSITION_HEADER, through.to_string().as_str());
    if rows.is_empty() {
        expect(&mut headers);
    }
    let payload =
        serde_json::json!({"instance": instance, "partition": partition, "through": through});
    let ack = js
        .publish_with_headers(fence_subject.clone(), headers, payload.to_string().into())
        .await?
        .await;
    match ack {
        Ok(ack) => Ok(ack.sequence),
        Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
            Err(anyhow::Error::new(error).context("the partition was fenced"))
        }
        Err(error) => Err(error.into()),
    }
}

/// Forgets the store's rows of partitions other instances own, up to the position their
/// last marks say is stored.
async fn forget_published(
    shared: &Shared,
    js: &jetstream::Context,
    standby: &mut Standby,
) -> anyhow::Result<()> {
    let mut published = Vec::new();
    for (&number, waiting) in standby.iter_mut() {
        if waiting.is_empty() {
            continue;
        }
        let (_, _, Some(through)) = lease::last_mark(js, number).await? else {
            continue;
        };
        let later = waiting.split_off(&through.saturating_add(1));
        published.extend(std::mem::replace(waiting, later));
    }
    standby.retain(|_, waiting| !waiting.is_empty());
    if !published.is_empty() {
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.remove_outbox(&published)).await??;
    }
    Ok(())
}
