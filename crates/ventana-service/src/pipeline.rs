//! The consumer: decode → fold (the same `fold_event` as `ventana replay`, with the
//! JetStream timestamp as `logged_at`) → one sled commit per batch holding states, index
//! entries, outbox rows and the checkpoint → flush → ack.
//!
//! Bad input is copied to `ventana.dlq.<reason>` (and acked with its batch); everything else
//! keeps flowing. Events at or below the checkpoint are skipped, so a redelivery after a
//! crash changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use ventana_core::{Conversation, ConversationToken, Event, validate};
use ventana_notifier::{Decided, fold_event};
use ventana_store::{Commit, Indexed, OutboxRow, Store};
use ventana_wire::subjects::{self, dlq_subject, output_subject};
use ventana_wire::{WireError, output_to_json};

use crate::Shared;

/// How long a batch waits for more messages before it is folded.
const GATHER_PAUSE: Duration = Duration::from_millis(1);

use ventana_bus::client::Stored as Incoming;

/// What a decided outbound message became, for `send` callers waiting on it.
#[derive(Clone, Debug)]
pub struct SendAnswer {
    pub json: String,
}

/// Decodes and validates one message; the event, or the reason it is bad.
fn decode(incoming: &Incoming, shared: &Shared) -> Result<Event, WireError> {
    let event = ventana_bus::client::logged_event(incoming)?;
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

/// Folds a batch of decoded events into the store: one atomic commit, flushed.
/// Runs on a blocking thread.
fn fold_batch(
    shared: &Shared,
    events: &[(u64, Event)],
    last_sequence: u64,
) -> anyhow::Result<Folded> {
    let started = Instant::now();
    let store: &Store = &shared.store;
    let mut touched: HashMap<ConversationToken, (Conversation, Indexed)> = HashMap::new();
    let mut commit = Commit::new();
    let mut answers = Vec::new();
    let mut rows = Vec::new();
    let mut outputs = Vec::new();
    for (sequence, event) in events {
        let token = event.conversation.token();
        let (conversation, _) = match touched.entry(token) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let conversation = store
                    .load(token)?
                    .unwrap_or_else(|| Conversation::new(event.conversation.clone()));
                let before = Indexed::of(&conversation, &shared.policy);
                entry.insert((conversation, before))
            }
        };
        outputs.clear();
        let applied = fold_event(conversation, event, &shared.policy, &mut outputs);
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
                payload: json.into_bytes(),
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
    commit.checkpoint(last_sequence);
    let folded_at = Instant::now();
    store.commit(commit)?;
    let committed_at = Instant::now();
    store.flush()?;
    debug!(
        events = events.len(),
        conversations = touched.len(),
        outputs = rows.len(),
        fold_ms = (folded_at - started).as_secs_f64() * 1e3,
        commit_ms = (committed_at - folded_at).as_secs_f64() * 1e3,
        flush_ms = committed_at.elapsed().as_secs_f64() * 1e3,
        "batch persisted"
    );
    Ok(Folded { answers, rows })
}

/// Copies bad input to `ventana.dlq.<reason>` and waits for the server to store it.
async fn to_dlq(js: &jetstream::Context, bad: &[(&Incoming, WireError)]) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(bad.len());
    for (incoming, error) in bad {
        let mut headers = HeaderMap::new();
        headers.insert(
            subjects::MSG_ID,
            format!("dlq:{}", incoming.sequence).as_str(),
        );
        headers.insert(subjects::REASON_HEADER, error.reason());
        headers.insert(
            subjects::ERROR_HEADER,
            error.to_string().replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert("Ventana-Subject", incoming.subject.as_str());
        acks.push(
            js.publish_with_headers(
                dlq_subject(error.reason()),
                headers,
                incoming.payload.clone(),
            )
            .await
            .context("publishing to the DLQ")?,
        );
    }
    for ack in acks {
        ack.await.context("the DLQ did not store a bad message")?;
    }
    Ok(())
}

/// Consumes VENTANA_IN until `shutdown` turns true, finishing the batch in hand.
pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    mut consumer: jetstream::consumer::Consumer<pull::Config>,
    committed: tokio::sync::mpsc::Sender<crate::outbox::Rows>,
    replicas: usize,
    batch: usize,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut checkpoint = {
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.checkpoint()).await??
    };
    info!(checkpoint, "consuming VENTANA_IN");
    // Set when the consumer was just recreated at `checkpoint + 1`: a first delivery
    // further on then means the messages between were deleted from the log.
    let mut fresh_consumer = true;
    let mut publisher_gone = false;
    // Set after a stream error or a gap: the consumer is recreated at `checkpoint + 1`, so
    // messages delivered but lost are read again at once (not after the ack wait).
    let mut reset = false;
    'reconnect: loop {
        if reset {
            match crate::nats::consumer_after(&js, checkpoint, replicas).await {
                Ok(fresh) => {
                    consumer = fresh;
                    fresh_consumer = true;
                    reset = false;
                }
                Err(error) => {
                    warn!(%error, "cannot recreate the consumer; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'reconnect,
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
            }
        }
        let messages = match consumer
            .stream()
            .max_messages_per_batch(batch)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(messages) => messages,
            Err(error) => {
                warn!(%error, "cannot pull from VENTANA_IN; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'reconnect,
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        };
        let mut chunks = messages.ready_chunks(batch);
        loop {
            shared.touch_consumer();
            let chunk = tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                chunk = chunks.next() => chunk,
            };
            let Some(mut chunk) = chunk else {
                reset = true;
                continue 'reconnect;
            };
            // Under load, fill the batch while messages keep arriving (one sled flush and
            // one ack for all of them); when traffic pauses for a millisecond, go.
            while chunk.len() < batch {
                match tokio::time::timeout(GATHER_PAUSE, chunks.next()).await {
                    Ok(Some(more)) => chunk.extend(more),
                    Ok(None) | Err(_) => break,
                }
            }
            let started = Instant::now();
            let mut delivered = Vec::with_capacity(chunk.len());
            for message in chunk {
                match message {
                    Ok(message) => delivered.push(message),
                    Err(error) => {
                        debug!(%error, "pull stream interrupted; reopening");
                        reset = true;
                        if delivered.is_empty() {
                            continue 'reconnect;
                        }
                        break;
                    }
                }
            }
            let mut incoming = Vec::with_capacity(delivered.len());
            for message in &delivered {
                incoming.push(Incoming::of(message)?);
            }
            // Apply strictly in log order. A gap means messages were delivered and lost (a
            // NATS restart, a redelivery pending behind newer ones): start again from the
            // checkpoint rather than skip them.
            let mut expected = checkpoint + 1;
            let mut gap = None;
            for sequence in incoming
                .iter()
                .map(|i| i.sequence)
                .filter(|s| *s > checkpoint)
            {
                if sequence != expected && !(fresh_consumer && expected == checkpoint + 1) {
                    gap = Some(sequence);
                    break;
                }
                expected = sequence + 1;
            }
            if let Some(first) = gap {
                warn!(
                    checkpoint,
                    first, "gap in delivery; re-reading from the checkpoint"
                );
                reset = true;
                continue 'reconnect;
            }
            if expected > checkpoint + 1 {
                fresh_consumer = false;
            }
            let last_sequence = incoming
                .iter()
                .map(|i| i.sequence)
                .max()
                .unwrap_or(checkpoint);
            let mut events = Vec::with_capacity(incoming.len());
            let mut bad = Vec::new();
            for item in incoming.iter().filter(|i| i.sequence > checkpoint) {
                match decode(item, &shared) {
                    Ok(event) => events.push((item.sequence, event)),
                    Err(error) => {
                        shared.metrics.reason(&shared.metrics.dlq, error.reason());
                        warn!(sequence = item.sequence, subject = %item.subject, reason = error.reason(), %error, "bad input copied to the DLQ");
                        bad.push((item, error));
                    }
                }
            }
            if !bad.is_empty() {
                to_dlq(&js, &bad).await?;
            }
            if last_sequence > checkpoint {
                let worker = shared.clone();
                let folded = tokio::task::spawn_blocking(move || {
                    fold_batch(&worker, &events, last_sequence)
                })
                .await
                .context("the fold panicked")??;
                checkpoint = last_sequence;
                shared.metrics.outbox_depth.inc_by(folded.rows.len() as i64);
                // The publisher stops only when the service does; its rows stay in sled.
                publisher_gone = committed.send(folded.rows).await.is_err();
                shared.clock_wake.notify_one();
                shared.resolve(folded.answers);
            }
            if let Some(last) = delivered.last() {
                // AckPolicy::All: acking the last message acks the whole batch.
                if let Err(error) = last.ack().await {
                    warn!(%error, "ack failed; the batch will be redelivered and skipped");
                }
            }
            shared
                .metrics
                .batch_seconds
                .observe(started.elapsed().as_secs_f64());
            if publisher_gone {
                return Ok(());
            }
            if reset {
                continue 'reconnect;
            }
        }
    }
}
