//! The consumer ([`Consumer`]): decode → fold (the same `fold_event` as `ventana replay`, with the
//! JetStream timestamp as `logged_at`) → one sled commit per batch holding states, index
//! entries, outbox rows and the checkpoint → flush → ack.
//!
//! Bad input is copied to `ventana.dlq.<reason>` (and acked with its batch); everything else
//! keeps flowing. Events at or below the checkpoint are skipped, so a redelivery after a
//! crash changes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use ventana_core::{Conversation, ConversationToken, Event, validate};
use ventana_notifier::{Decided, fold_event};
use ventana_store::{Commit, Indexed, OutboxRow, Store};
use ventana_wire::subjects::{self, dlq_subject, output_subject};
use ventana_wire::{WireError, output_to_json};

use crate::Shared;

/// How long a batch waits for more messages before it is folded.
const GATHER_PAUSE: Duration = Duration::from_millis(1);

/// How long one pull request waits on the server. The pull asks for no idle heartbeats:
/// async-nats re-arms their timer for every message delivered (a timer registered and
/// dropped per event, and often a wake-up of the runtime's driver). A pull that stalls
/// unseen is asked again when it expires (async-nats waits this long plus 5 s for the
/// server's answer), and at once when the connection comes back.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

use ventana_bus::client::Stored as Incoming;

/// What a decided outbound message became, for `send` callers waiting on it.
#[derive(Clone, Debug)]
pub struct SendAnswer {
    pub json: String,
}

/// Decodes and validates one message; the event, or the reason it is bad.
fn decode(incoming: &Incoming, shared: &Shared) -> Result<Event, WireError> {
    let event = ventana_bus::client::logged_event(incoming, Some(shared.partitions))?;
    validate(&event, &shared.policy)?;
    Ok(event)
}

/// What a folded batch gives the rest of the service.
struct Folded {
    /// Decisions on outbound messages, for `send` callers waiting on them.
    answers: Vec<(ConversationToken, String, SendAnswer)>,
    /// The outbox rows committed, for the publisher.
    rows: crate::outbox::Rows,
}

/// The conversations a batch folds, each with its index entries as stored. One map serves
/// every batch (emptied, its capacity kept): a new one per batch was allocated, grown and
/// freed each time, and its memory was zeroed again by the kernel each time.
type Touched = rustc_hash::FxHashMap<ConversationToken, (Conversation, Indexed)>;

/// Folds a batch of decoded events into the store: one atomic commit, flushed.
/// Runs on a blocking thread.
fn fold_batch(
    shared: &Shared,
    touched: &mut Touched,
    events: &[(u64, Event)],
    dlq_refused: &[(u64, &str)],
    last_sequence: u64,
) -> anyhow::Result<Folded> {
    let started = Instant::now();
    let store: &Store = &shared.store;
    // States left by a batch that failed are not the ones sled holds: read them again.
    touched.clear();
    let mut commit = Commit::new();
    let mut answers = Vec::new();
    let mut rows = Vec::with_capacity(events.len());
    let mut outputs = Vec::new();
    for (sequence, event) in events {
        let token = event.conversation.token();
        let (conversation, _) = match touched.entry(token) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let stored = match shared.states.take(token) {
                    Some(cached) => Some(cached),
                    None => store.load(token)?,
                };
                let conversation =
                    stored.unwrap_or_else(|| Conversation::new(event.conversation.clone()));
                let before = Indexed::of(&conversation, &shared.policy);
                entry.insert((conversation, before))
            }
        };
        outputs.clear();
        let applied = fold_event(conversation, token, event, &shared.policy, &mut outputs);
        match applied {
            ventana_core::Applied::New => shared.metrics.events_folded.inc(),
            ventana_core::Applied::Duplicate => shared.metrics.duplicates.inc(),
        };
        for (index, output) in outputs.iter().enumerate() {
            let json = output_to_json(output);
            if let Some(decided) = output.body.decision() {
                let label = match decided {
                    Decided::Accepted { .. } => "accepted",
                    Decided::Held { .. } => "held",
                    Decided::NotDelivered { reason, .. } => reason.as_str(),
                };
                shared.metrics.reason(&shared.metrics.decisions, label);
                if output.caused_by == event.id {
                    answers.push((
                        token,
                        decided.message_id().to_owned(),
                        SendAnswer { json: json.clone() },
                    ));
                }
            }
            let row = OutboxRow {
                subject: output_subject(output.body.type_name(), token),
                id: output.id.clone(),
                payload: json.into(),
            };
            let position = (sequence << 16) | index as u64;
            commit.push_outbox(position, &row);
            rows.push((position, row));
        }
    }
    for (conversation, before) in touched.values() {
        commit.put_state(
            conversation,
            *before,
            Indexed::of(conversation, &shared.policy),
        );
    }
    for (sequence, reason) in dlq_refused {
        commit.dlq_refused(*sequence, reason);
    }
    commit.checkpoint(last_sequence);
    let folded_at = Instant::now();
    store.commit(commit)?;
    let committed_at = Instant::now();
    store.flush()?;
    let conversations = touched.len();
    shared
        .states
        .committed(touched.drain().map(|(_, (conversation, _))| conversation));
    shared.metrics.states_cached.set(shared.states.len() as i64);
    debug!(
        events = events.len(),
        conversations,
        outputs = rows.len(),
        fold_ms = (folded_at - started).as_secs_f64() * 1e3,
        commit_ms = (committed_at - folded_at).as_secs_f64() * 1e3,
        flush_ms = committed_at.elapsed().as_secs_f64() * 1e3,
        "batch persisted"
    );
    Ok(Folded { answers, rows })
}

/// The longest header value a DLQ copy carries (well under NATS' 64 KiB header limit).
const MAX_HEADER_VALUE: usize = 256;

/// `text` as a header value: control characters replaced, cut to [`MAX_HEADER_VALUE`] bytes
/// at a character boundary.
fn header_value(text: &str) -> String {
    let mut value = String::with_capacity(text.len().min(MAX_HEADER_VALUE));
    for c in text.chars() {
        if value.len() + c.len_utf8() > MAX_HEADER_VALUE {
            break;
        }
        value.push(if c.is_control() { ' ' } else { c });
    }
    value
}

/// The DLQ copy of a bad input: its reason and error as headers, where it is in
/// `VENTANA_IN`, and its payload unless `by_reference` (oversize input always goes by
/// reference, so a copy always fits under the server's payload limit).
fn dlq_copy(incoming: &Incoming, error: &WireError, by_reference: bool) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    let sequence = incoming.sequence.to_string();
    headers.insert(subjects::MSG_ID, format!("dlq:{sequence}").as_str());
    headers.insert(subjects::REASON_HEADER, error.reason());
    headers.insert(
        subjects::ERROR_HEADER,
        header_value(&error.to_string()).as_str(),
    );
    headers.insert(
        subjects::DLQ_SUBJECT_HEADER,
        header_value(&incoming.subject).as_str(),
    );
    headers.insert(subjects::DLQ_STREAM_HEADER, subjects::IN_STREAM);
    headers.insert(subjects::DLQ_SEQUENCE_HEADER, sequence.as_str());
    headers.insert(
        subjects::DLQ_SIZE_HEADER,
        incoming.payload.len().to_string().as_str(),
    );
    if by_reference || matches!(error, WireError::Oversize { .. }) {
        (headers, Bytes::new())
    } else {
        (headers, incoming.payload.clone())
    }
}

/// Publishes one DLQ copy and waits for the server to store it.
async fn publish_dlq(
    js: &jetstream::Context,
    incoming: &Incoming,
    error: &WireError,
    by_reference: bool,
) -> anyhow::Result<()> {
    let (headers, payload) = dlq_copy(incoming, error, by_reference);
    js.publish_with_headers(dlq_subject(error.reason()), headers, payload)
        .await?
        .await?;
    Ok(())
}

/// Copies bad input to `ventana.dlq.<reason>` and waits for the server to store it. A copy
/// the DLQ refuses is sent again by reference (empty payload); one refused even so is
/// returned (sequence, reason), for the batch's commit to remember: one bad message never
/// stops the pipeline.
async fn to_dlq(
    js: &jetstream::Context,
    bad: &[(&Incoming, WireError)],
) -> Vec<(u64, &'static str)> {
    let copies = bad
        .iter()
        .map(|(incoming, error)| publish_dlq(js, incoming, error, false));
    let stored = futures::future::join_all(copies).await;
    let mut refused = Vec::new();
    for ((incoming, error), stored) in bad.iter().zip(stored) {
        let Err(first) = stored else { continue };
        let Err(again) = publish_dlq(js, incoming, error, true).await else {
            warn!(sequence = incoming.sequence, error = %first, "the DLQ refused a bad input; stored it by reference");
            continue;
        };
        error!(
            sequence = incoming.sequence,
            reason = error.reason(),
            error = %again,
            "the DLQ refused a bad input even by reference; remembered in the store, left in VENTANA_IN"
        );
        refused.push((incoming.sequence, error.reason()));
    }
    refused
}

/// At most this many bad inputs are logged per [`WARNING_PERIOD`]; the rest are counted.
const WARNINGS_PER_PERIOD: u32 = 10;
const WARNING_PERIOD: Duration = Duration::from_secs(10);

/// Rate-limits the warnings about bad input: a flood of it must not flood the log.
#[derive(Debug)]
struct Throttle {
    since: Instant,
    logged: u32,
    suppressed: u64,
}

impl Throttle {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Whether to log one more warning now; says how many were suppressed when a period ends.
    fn allow(&mut self) -> bool {
        if self.since.elapsed() >= WARNING_PERIOD {
            if self.suppressed > 0 {
                warn!(
                    suppressed = self.suppressed,
                    "more bad input was copied to the DLQ than logged (see ventana_dlq_total)"
                );
            }
            *self = Self::new();
        }
        if self.logged < WARNINGS_PER_PERIOD {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Where a delivered batch stands against the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    /// Every message past the checkpoint follows the one before (`new`: there is one).
    InOrder { new: bool },
    /// Messages were delivered and lost before `first`: read again from the checkpoint.
    Gap { first: u64 },
}

/// Checks that the messages past `checkpoint` come strictly in log order. Only a consumer
/// just (re)created at `checkpoint + 1` may start further on: the messages between were
/// deleted from the log.
fn order(sequences: impl IntoIterator<Item = u64>, checkpoint: u64, fresh_consumer: bool) -> Order {
    let mut expected = checkpoint + 1;
    for sequence in sequences.into_iter().filter(|s| *s > checkpoint) {
        let may_skip = fresh_consumer && expected == checkpoint + 1;
        if sequence != expected && !may_skip {
            return Order::Gap { first: sequence };
        }
        expected = sequence + 1;
    }
    Order::InOrder {
        new: expected > checkpoint + 1,
    }
}

/// What to do after a batch.
enum Next {
    /// Pull the next batch from the same stream.
    Continue,
    /// Recreate the consumer at `checkpoint + 1` and pull from there.
    Reset,
    /// Stop: the service is stopping.
    Stop,
}

/// ventanad's consumer of VENTANA_IN: open the pull stream, gather a batch, check its
/// order, decode (bad input to the DLQ), fold and commit, hand the rows to the outbox,
/// ack.
pub struct Consumer {
    shared: Arc<Shared>,
    js: jetstream::Context,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    /// Where committed outbox rows go.
    committed: tokio::sync::mpsc::Sender<crate::outbox::Rows>,
    /// This instance's name (its consumer is `ventanad-<instance>`).
    instance: String,
    replicas: usize,
    batch: usize,
    shutdown: watch::Receiver<bool>,
    /// The last sequence sled holds.
    checkpoint: u64,
    /// The consumer was just (re)created at `checkpoint + 1`.
    fresh_consumer: bool,
    /// Limits the warnings about bad input.
    warnings: Throttle,
    touched: Touched,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("checkpoint", &self.checkpoint)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub fn new(
        shared: Arc<Shared>,
        js: jetstream::Context,
        consumer: jetstream::consumer::Consumer<pull::Config>,
        committed: tokio::sync::mpsc::Sender<crate::outbox::Rows>,
        config: &crate::Config,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            shared,
            js,
            consumer,
            committed,
            instance: config.instance.clone(),
            replicas: config.replicas,
            batch: config.batch,
            shutdown,
            checkpoint: 0,
            fresh_consumer: true,
            warnings: Throttle::new(),
            touched: Touched::default(),
        }
    }

    /// Consumes VENTANA_IN until the service stops, finishing the batch in hand.
    pub async fn run(mut self) -> anyhow::Result<()> {
        self.checkpoint = {
            let store = self.shared.store.clone();
            tokio::task::spawn_blocking(move || store.checkpoint()).await??
        };
        info!(checkpoint = self.checkpoint, "consuming VENTANA_IN");
        let mut reset = false;
        loop {
            if reset {
                // A message no client can read resets the connection each time it is
                // delivered; one API request tells.
                if self.skip_if_unreadable().await? {
                    return Ok(());
                }
                // After a stream error or a gap: messages delivered but lost are read again
                // at once, not after the ack wait.
                if !self.recreate().await {
                    return Ok(());
                }
            }
            let Some(mut chunks) = self.open().await else {
                return Ok(());
            };
            reset = loop {
                match self.next_batch(&mut chunks).await? {
                    Next::Continue => {}
                    Next::Reset => break true,
                    Next::Stop => return Ok(()),
                }
            };
        }
    }

    /// After a reset: if the next message's header block cannot be read at all (see
    /// [`ventana_bus::client::unreadable`]), it is copied to the DLQ by reference and the
    /// checkpoint moves past it, like any bad input. True when the outbox publisher is gone.
    async fn skip_if_unreadable(&mut self) -> anyhow::Result<bool> {
        let sequence = self.checkpoint + 1;
        if !ventana_bus::client::unreadable(&self.js, subjects::IN_STREAM, sequence).await {
            return Ok(false);
        }
        let unreadable = Incoming {
            sequence,
            published: crate::clock::now(),
            subject: String::new(),
            payload: Bytes::new(),
            protobuf: false,
            position: None,
        };
        let error = WireError::Undecodable("its header block cannot be read".into());
        self.commit(Vec::new(), &[(&unreadable, error)], sequence)
            .await
    }

    /// Recreates the consumer at `checkpoint + 1`, retrying; false when stopping first.
    async fn recreate(&mut self) -> bool {
        loop {
            match crate::nats::consumer_after(
                &self.js,
                &self.instance,
                self.checkpoint,
                self.replicas,
            )
            .await
            {
                Ok(fresh) => {
                    self.consumer = fresh;
                    self.fresh_consumer = true;
                    return true;
                }
                Err(error) => warn!(%error, "cannot recreate the consumer; retrying"),
            }
            if crate::pause_or_stop(&mut self.shutdown, Duration::from_secs(1)).await {
                return false;
            }
        }
    }

    /// Opens the pull stream, retrying; `None` when stopping first.
    async fn open(&mut self) -> Option<Chunks> {
        loop {
            match self
                .consumer
                .stream()
                .max_messages_per_batch(self.batch)
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(messages) => return Some(messages.ready_chunks(self.batch)),
                Err(error) => warn!(%error, "cannot pull from VENTANA_IN; retrying"),
            }
            if crate::pause_or_stop(&mut self.shutdown, Duration::from_secs(1)).await {
                return None;
            }
        }
    }

    /// Gathers one batch and carries it all the way: checked, decoded, folded, committed,
    /// acked.
    async fn next_batch(&mut self, chunks: &mut Chunks) -> anyhow::Result<Next> {
        self.shared.touch_consumer();
        self.shared.consumer_progress.idle();
        let chunk = tokio::select! {
            biased;
            _ = self.shutdown.changed() => return Ok(Next::Stop),
            chunk = chunks.next() => chunk,
        };
        let Some(mut chunk) = chunk else {
            return Ok(Next::Reset);
        };
        // From here until the batch is acked, the consumer holds work: a step that never
        // ends (the outbox not taking rows, a store that hangs) turns /healthz to 503.
        self.shared.consumer_progress.start();
        // Under load, fill the batch while messages keep arriving (one sled flush and one
        // ack for all of them); when traffic pauses for a millisecond, go.
        while chunk.len() < self.batch {
            match tokio::time::timeout(GATHER_PAUSE, chunks.next()).await {
                Ok(Some(more)) => chunk.extend(more),
                Ok(None) | Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut next = Next::Continue;
        let mut delivered = Vec::with_capacity(chunk.len());
        for message in chunk {
            match message {
                Ok(message) => delivered.push(message),
                Err(error) => {
                    debug!(%error, "pull stream interrupted; reopening");
                    next = Next::Reset;
                    break;
                }
            }
        }
        if delivered.is_empty() {
            return Ok(next);
        }
        let incoming = delivered
            .iter()
            .map(Incoming::of)
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Apply strictly in log order. A gap means messages were delivered and lost (a NATS
        // restart, a redelivery pending behind newer ones): start again from the checkpoint
        // rather than skip them.
        match order(
            incoming.iter().map(|i| i.sequence),
            self.checkpoint,
            self.fresh_consumer,
        ) {
            Order::Gap { first } => {
                warn!(
                    checkpoint = self.checkpoint,
                    first, "gap in delivery; re-reading from the checkpoint"
                );
                return Ok(Next::Reset);
            }
            Order::InOrder { new } => self.fresh_consumer &= !new,
        }
        let publisher_gone = self.fold(&incoming).await?;
        if let Some(last) = delivered.last() {
            // AckPolicy::All: acking the last message acks the whole batch.
            if let Err(error) = last.ack().await {
                warn!(%error, "ack failed; the batch will be redelivered and skipped");
            }
        }
        self.shared
            .metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(if publisher_gone { Next::Stop } else { next })
    }

    /// Decodes the messages past the checkpoint (bad input to the DLQ first), folds and
    /// commits them, and hands the rows to the outbox. True when the outbox publisher is
    /// gone (the service is stopping).
    async fn fold(&mut self, incoming: &[Incoming]) -> anyhow::Result<bool> {
        let checkpoint = self.checkpoint;
        let last_sequence = incoming
            .iter()
            .map(|i| i.sequence)
            .max()
            .unwrap_or(checkpoint);
        let mut events = Vec::with_capacity(incoming.len());
        let mut bad = Vec::new();
        for item in incoming.iter().filter(|i| i.sequence > checkpoint) {
            match decode(item, &self.shared) {
                Ok(event) => events.push((item.sequence, event)),
                Err(error) => bad.push((item, error)),
            }
        }
        if last_sequence <= checkpoint {
            return Ok(false);
        }
        self.commit(events, &bad, last_sequence).await
    }

    /// Copies `bad` to the DLQ, then folds `events` and commits them with the checkpoint at
    /// `last_sequence` (and what the DLQ refused), and hands the rows to the outbox. True
    /// when the outbox publisher is gone (the service is stopping).
    async fn commit(
        &mut self,
        events: Vec<(u64, Event)>,
        bad: &[(&Incoming, WireError)],
        last_sequence: u64,
    ) -> anyhow::Result<bool> {
        for (item, error) in bad {
            self.shared
                .metrics
                .reason(&self.shared.metrics.dlq, error.reason());
            if self.warnings.allow() {
                // The error names the field and the problem, never the input's text.
                warn!(sequence = item.sequence, reason = error.reason(), %error, "bad input copied to the DLQ");
            }
        }
        let refused = if bad.is_empty() {
            Vec::new()
        } else {
            to_dlq(&self.js, bad).await
        };
        self.shared.metrics.dlq_refused.inc_by(refused.len() as u64);
        let worker = self.shared.clone();
        let mut touched = std::mem::take(&mut self.touched);
        let (folded, touched) = tokio::task::spawn_blocking(move || {
            let folded = fold_batch(&worker, &mut touched, &events, &refused, last_sequence);
            (folded, touched)
        })
        .await
        .context("the fold panicked")?;
        self.touched = touched;
        let folded = folded?;
        self.checkpoint = last_sequence;
        // The publisher stops only when the service does; its rows stay in sled.
        let publisher_gone = self.committed.send(folded.rows).await.is_err();
        self.shared.clock_wake.notify_one();
        self.shared.resolve(folded.answers);
        Ok(publisher_gone)
    }
}

/// The pull stream in batches.
type Chunks = futures::stream::ReadyChunks<jetstream::consumer::pull::Stream>;

#[cfg(test)]
mod tests {
    use super::{Order, order};

    #[test]
    fn messages_past_the_checkpoint_must_follow_each_other() {
        assert_eq!(order([5, 6, 7], 4, false), Order::InOrder { new: true });
        // Redelivered messages at or below the checkpoint are skipped, not a gap.
        assert_eq!(order([3, 4, 5], 4, false), Order::InOrder { new: true });
        assert_eq!(order([2, 3], 4, false), Order::InOrder { new: false });
        assert_eq!(order([5, 7], 4, false), Order::Gap { first: 7 });
        assert_eq!(order([6], 4, false), Order::Gap { first: 6 });
    }

    #[test]
    fn only_a_fresh_consumer_may_start_further_on() {
        // Messages 5..9 were deleted from the log.
        assert_eq!(order([10, 11], 4, true), Order::InOrder { new: true });
        assert_eq!(order([10, 12], 4, true), Order::Gap { first: 12 });
    }
}
