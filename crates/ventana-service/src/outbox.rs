//! Publishes the outputs of the partitions this instance owns (lease.rs) to VENTANA_OUT, each
//! partition in outbox order, with `Nats-Msg-Id` = output id, and deletes their outbox rows
//! only after the server stored them. The rows of partitions other instances own stay in the
//! store until those owners' marks say they are stored, and are then forgotten.
//!
//! Outputs go as JetStream atomic batches of up to 1 000 messages, each holding the rows of as
//! many owned partitions as fit, with one batch in flight per partition (several batches in
//! flight at once). A partition's first output in a batch expects the last message on the
//! partition's fence subject (`ventana.fence.<p>`) to be this instance's fence or last mark
//! (`Nats-Expected-Last-Subject-Sequence`), and the batch ends with a new mark there for each
//! partition, carrying the position of its last output (`Ventana-Position`). The server
//! stores the whole batch or none of it; a fence published since by another instance makes
//! it refuse the batch: the outbox lets that partition go, and the others' rows go again.
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

use anyhow::Context;
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

/// Messages per atomic batch, outputs and marks (the most the server takes). A batch holds
/// the rows of as many owned partitions as fit: on a stream of one replica the server
/// stages each batch in a store of its own on disk, so fewer batches cost it less.
const MESSAGES_PER_BATCH: usize = 1000;
/// Batches in flight at once, per instance (the server takes 50 per stream: six instances
/// stay under it).
const FLIGHTS: usize = 8;
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
    /// The last position queued since the partition was taken (those in flight included).
    queued_through: Option<u64>,
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
            queued_through: None,
            busy: false,
            one_by_one: 0,
        }
    }

    /// Queues a row unless it was queued already (a row read from the store on taking the
    /// partition comes again from the pipeline when it was committed just before: queued
    /// twice, it would go twice, and the stream would refuse its batch as a duplicate);
    /// false when the stream has it already (at or before the partition's mark), so its
    /// outbox row is to be forgotten.
    fn push(&mut self, row: (u64, OutboxRow)) -> bool {
        if self.fence.through.is_some_and(|through| row.0 <= through) {
            return false;
        }
        if self.queued_through.is_none_or(|last| row.0 > last) {
            self.queued_through = Some(row.0);
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

/// One partition's share of a batch: its rows, after the fence or mark `fence` of its
/// fence subject, and the position its mark says it is stored through.
struct Part {
    partition: u32,
    fence: u64,
    rows: Rows,
    through: u64,
}

impl Part {
    fn new(partition: u32, fence: u64, rows: Rows) -> Self {
        let through = rows.last().map_or(0, |(position, _)| *position);
        Self {
            partition,
            fence,
            rows,
            through,
        }
    }
}

/// A batch's end: each part, with what became of it.
type Landed = Vec<(Part, Outcome)>;

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
                for (part, outcome) in landed? {
                    flying -= part.rows.len();
                    settle(&shared, &lease, &mut owned, &mut standby, part, outcome);
                }
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
        // Partitions take turns to go first, so none waits behind the others when more have
        // rows than the batches in flight can take.
        turn = turn.wrapping_add(1);
        let mut ready: VecDeque<u32> = owned
            .iter()
            .filter(|(_, partition)| !partition.busy && !partition.queue.is_empty())
            .map(|(number, _)| *number)
            .collect();
        ready.rotate_left(turn % ready.len().max(1));
        while flights.len() < FLIGHTS {
            let parts = next_batch(&mut owned, &mut ready);
            if parts.is_empty() {
                break;
            }
            if flights.is_empty() {
                // Only a stored batch counts as progress (outbox_alive): one that goes again
                // and again does not.
                shared.outbox_progress.start();
            }
            flying += parts.iter().map(|part| part.rows.len()).sum::<usize>();
            flights.spawn(fly(shared.clone(), js.clone(), instance.clone(), parts));
        }
        if flights.is_empty() {
            shared.outbox_progress.idle();
        }
    }
    // Let the batches in flight land (their rows are deleted once stored).
    while flights.join_next().await.is_some() {}
    Ok(())
}

/// The next batch: rows of the partitions in `ready` (front first) up to
/// [`MESSAGES_PER_BATCH`] with a mark each; those taken are marked busy and leave `ready`.
/// A partition whose rows go one at a time (after a batch refused for a duplicate) goes
/// alone with one row, so a refusal names its row.
fn next_batch(owned: &mut BTreeMap<u32, Partition>, ready: &mut VecDeque<u32>) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut messages = 0;
    let mut passed = VecDeque::new();
    while let Some(number) = ready.pop_front() {
        let Some(partition) = owned
            .get_mut(&number)
            .filter(|partition| !partition.busy && !partition.queue.is_empty())
        else {
            continue;
        };
        let alone = partition.one_by_one > 0;
        if alone && !parts.is_empty() {
            passed.push_back(number);
            continue;
        }
        let room = if alone {
            1
        } else {
            MESSAGES_PER_BATCH - messages - 1
        };
        let rows: Rows = partition
            .queue
            .drain(..room.min(partition.queue.len()))
            .collect();
        messages += rows.len() + 1;
        partition.busy = true;
        parts.push(Part::new(number, partition.fence.sequence, rows));
        if alone || messages + 2 > MESSAGES_PER_BATCH {
            break;
        }
    }
    passed.append(ready);
    *ready = passed;
    parts
}

/// The positions of the store's rows, by partition (as it starts, nothing is owned).
async fn standby_from_store(shared: &Shared) -> anyhow::Result<Standby> {
    let mut standby = Standby::new();
    each_stored_row(shared, |position, row| {
        standby
            .entry(partition_of(&row, shared.partitions))
            .or_default()
            .insert(position);
    })
    .await?;
    Ok(standby)
}

/// Hands `visit` every outbox row in the store, in position order, read a page of
/// [`ROWS_PER_READ`] at a time off the executor.
async fn each_stored_row(
    shared: &Shared,
    mut visit: impl FnMut(u64, OutboxRow),
) -> anyhow::Result<()> {
    let mut after = None;
    loop {
        let store = shared.store.clone();
        let rows =
            tokio::task::spawn_blocking(move || store.outbox_after(after, ROWS_PER_READ)).await??;
        let read = rows.len();
        let Some(last) = rows.last().map(|(position, _)| *position) else {
            return Ok(());
        };
        for (position, row) in rows {
            visit(position, row);
        }
        if read < ROWS_PER_READ {
            return Ok(());
        }
        after = Some(last);
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
    each_stored_row(shared, |position, row| {
        let number = partition_of(&row, shared.partitions);
        if taken.contains_key(&number)
            && let Some(partition) = owned.get_mut(&number)
            && !partition.push((position, row))
        {
            stored.push(position);
        }
    })
    .await?;
    info!(
        partitions = ?taken.keys().collect::<Vec<_>>(),
        recovered = taken.keys().map(|number| owned[number].queue.len()).sum::<usize>(),
        "publishing the taken partitions' outputs from the store"
    );
    Ok(stored)
}

/// Acts on a partition's part of a landed batch: moves the partition's fence on, puts the
/// rows back to go again, or lets the partition go.
fn settle(
    shared: &Shared,
    lease: &Lease,
    owned: &mut BTreeMap<u32, Partition>,
    standby: &mut Standby,
    part: Part,
    outcome: Outcome,
) {
    let Part {
        partition: number,
        fence: expected,
        rows,
        ..
    } = part;
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
            warn!(
                partition = number,
                "another instance fenced the partition: letting it go"
            );
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
                // The refused batch's rows go one at a time; those after them as before.
                partition.one_by_one = landed;
            }
            for row in rows.into_iter().rev() {
                partition.queue.push_front(row);
            }
        }
    }
}

/// Publishes one batch of partitions' rows and deletes them from the store once stored.
async fn fly(
    shared: Arc<Shared>,
    js: jetstream::Context,
    instance: Arc<str>,
    parts: Vec<Part>,
) -> Landed {
    let outcomes: Vec<Outcome> = match publish_batch(&js, &instance, &parts).await {
        // The marks are the batch's last messages, in the parts' order.
        Ok(last) => (0..parts.len())
            .map(|k| Outcome::Stored {
                mark: last - (parts.len() - 1 - k) as u64,
            })
            .collect(),
        Err(error) if format!("{error:#}").contains(DUPLICATE_IN_BATCH) => {
            if let [part] = &parts[..]
                && part.rows.len() == 1
            {
                // The stream has this output already: a mark alone records it as stored.
                let mark = Part {
                    rows: Vec::new(),
                    ..*part
                };
                vec![match publish_batch(&js, &instance, &[mark]).await {
                    Ok(mark) => Outcome::Stored { mark },
                    Err(error) => landed_how(&js, &instance, part, &error).await,
                }]
            } else {
                parts.iter().map(|_| Outcome::Duplicate).collect()
            }
        }
        Err(error) => {
            let mut outcomes = Vec::with_capacity(parts.len());
            for part in &parts {
                outcomes.push(landed_how(&js, &instance, part, &error).await);
            }
            outcomes
        }
    };
    let stored: Vec<u64> = parts
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| matches!(outcome, Outcome::Stored { .. }))
        .flat_map(|(part, _)| part.rows.iter().map(|(position, _)| *position))
        .collect();
    if !stored.is_empty() {
        shared.metrics.outputs_published.inc_by(stored.len() as u64);
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.remove_outbox(&stored)).await {
            Ok(Ok(())) => {}
            // Left in the store, they are read again at the next start and skipped as stored.
            Ok(Err(error)) => warn!(%error, "cannot delete published outbox rows"),
            Err(error) => warn!(%error, "cannot delete published outbox rows"),
        }
    }
    // A batch refused for another's fence goes again at once without that partition; one
    // that failed for no known reason waits first.
    let fenced = outcomes.iter().any(|o| matches!(o, Outcome::Fenced));
    if !fenced && outcomes.iter().any(|o| matches!(o, Outcome::Failed)) {
        tokio::time::sleep(RETRY_AFTER).await;
    }
    parts.into_iter().zip(outcomes).collect()
}

/// After a batch failed, for one part of it: whether it was stored all the same (the
/// part's mark is the last message on its fence subject: the answer was lost), refused for
/// another's fence, or is to go again (the fence subject still ends with this instance's
/// fence or mark). A part of a batch the server refused for another part's fence (a
/// partition handed over while the batch flew) just goes again, unremarked.
async fn landed_how(
    js: &jetstream::Context,
    instance: &str,
    part: &Part,
    error: &anyhow::Error,
) -> Outcome {
    let Part {
        partition,
        fence,
        through,
        ..
    } = *part;
    let refused_for_a_fence = error
        .downcast_ref::<jetstream::context::PublishError>()
        .is_some_and(|error| error.kind() == PublishErrorKind::WrongLastSequence);
    match lease::last_mark(js, partition).await {
        Ok((sequence, by, position)) => {
            if sequence == fence {
                if !refused_for_a_fence {
                    warn!(
                        partition,
                        error = format!("{error:#}"),
                        "publishing outputs failed; going again"
                    );
                }
                Outcome::Failed
            } else if by.as_deref() == Some(instance) && position == Some(through) {
                Outcome::Stored { mark: sequence }
            } else {
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

/// Publishes `parts` as one atomic batch: each part's rows after its fence subject's message
/// `fence`, then a mark per part that its partition's outputs are stored through
/// `through`. Returns the sequence of the last mark.
async fn publish_batch(
    js: &jetstream::Context,
    instance: &str,
    parts: &[Part],
) -> anyhow::Result<u64> {
    let batch = nuid::next();
    let mut sequence = 0;
    let mut headers = |expect: Option<&Part>| {
        sequence += 1;
        let mut headers = HeaderMap::new();
        headers.insert(BATCH_ID, batch.as_str());
        headers.insert(BATCH_SEQUENCE, sequence.to_string().as_str());
        headers.insert(INSTANCE_HEADER, instance);
        if let Some(part) = expect {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                part.fence.to_string().as_str(),
            );
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence-Subject",
                subjects::partition_fence(part.partition).as_str(),
            );
        }
        headers
    };
    let client = js.client();
    // Each part's first message carries its expectation (the server checks it against the
    // stream before the batch, and a fence subject takes nothing before the marks).
    for part in parts {
        for (n, (position, row)) in part.rows.iter().enumerate() {
            let mut headers = headers((n == 0).then_some(part));
            headers.insert(MSG_ID, row.id.as_str());
            headers.insert(POSITION_HEADER, position.to_string().as_str());
            headers.insert("Content-Type", "application/json");
            // Only the commit is answered; the connection keeps the batch in order.
            client
                .publish_with_headers(row.subject.clone(), headers, row.payload.clone())
                .await?;
        }
    }
    let (last, before) = parts.split_last().context("a batch of no parts")?;
    let mark = |part: &Part, headers: &mut HeaderMap| {
        headers.insert(POSITION_HEADER, part.through.to_string().as_str());
        let payload = serde_json::json!({
            "instance": instance,
            "partition": part.partition,
            "through": part.through,
        });
        (
            subjects::partition_fence(part.partition),
            payload.to_string(),
        )
    };
    for part in before {
        let mut headers = headers(part.rows.is_empty().then_some(part));
        let (subject, payload) = mark(part, &mut headers);
        client
            .publish_with_headers(subject, headers, payload.into())
            .await?;
    }
    let mut headers = headers(last.rows.is_empty().then_some(last));
    headers.insert(BATCH_COMMIT, "1");
    let (subject, payload) = mark(last, &mut headers);
    let ack = js
        .publish_with_headers(subject, headers, payload.into())
        .await?
        .await;
    match ack {
        Ok(ack) => Ok(ack.sequence),
        Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
            Err(anyhow::Error::new(error).context("a partition was fenced"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: u64) -> (u64, OutboxRow) {
        (
            position,
            OutboxRow {
                subject: format!("ventana.out.decision.{position}"),
                id: format!("o{position}"),
                payload: bytes::Bytes::new(),
            },
        )
    }

    /// Partitions 0.. with `rows[p]` rows queued each, fenced at sequence 100 + p.
    fn owned(rows: &[u64]) -> BTreeMap<u32, Partition> {
        rows.iter()
            .enumerate()
            .map(|(number, &count)| {
                let mut partition = Partition::new(Fence {
                    sequence: 100 + number as u64,
                    through: None,
                });
                for position in 1..=count {
                    assert!(partition.push(row(position)));
                }
                (number as u32, partition)
            })
            .collect()
    }

    fn shape(parts: &[Part]) -> Vec<(u32, u64, usize)> {
        parts
            .iter()
            .map(|part| (part.partition, part.fence, part.rows.len()))
            .collect()
    }

    #[test]
    fn a_batch_takes_partitions_in_turn_until_a_thousand_messages() {
        let mut owned = owned(&[300, 400, 500, 10]);
        let mut ready = VecDeque::from([1, 2, 3, 0]);
        let first = next_batch(&mut owned, &mut ready);
        // 400 rows + a mark, 500 + 1, 10 + 1, then 86 rows and a mark make 1 000.
        assert_eq!(
            shape(&first),
            [(1, 101, 400), (2, 102, 500), (3, 103, 10), (0, 100, 86)]
        );
        assert_eq!(first[3].through, 86);
        assert!(owned.values().all(|partition| partition.busy));
        assert!(ready.is_empty());
        // Busy partitions wait for their batch to land, whatever they still hold.
        assert!(next_batch(&mut owned, &mut VecDeque::from([0])).is_empty());
        assert_eq!(owned[&0].queue.len(), 214);
    }

    #[test]
    fn a_partition_going_one_row_at_a_time_goes_alone() {
        let mut owned = owned(&[5, 5, 5]);
        owned.get_mut(&1).unwrap().one_by_one = 2;
        let mut ready = VecDeque::from([0, 1, 2]);
        assert_eq!(
            shape(&next_batch(&mut owned, &mut ready)),
            [(0, 100, 5), (2, 102, 5)]
        );
        assert_eq!(ready, [1]);
        assert_eq!(shape(&next_batch(&mut owned, &mut ready)), [(1, 101, 1)]);
    }

    #[test]
    fn a_row_is_queued_once_and_not_at_all_when_its_mark_passed_it() {
        let mut partition = Partition::new(Fence {
            sequence: 7,
            through: Some(3),
        });
        assert!(!partition.push(row(3)), "stored already: forgotten");
        assert!(partition.push(row(4)));
        assert!(partition.push(row(5)));
        partition.queue.clear(); // in flight
        // The pipeline hands over rows read from the store already: kept, not queued again.
        assert!(partition.push(row(5)));
        assert!(partition.queue.is_empty());
        assert!(partition.push(row(6)));
        assert_eq!(partition.queue.len(), 1);
    }
}
