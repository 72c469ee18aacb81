//! The live log as plain iterators, for the commands that fold it (replay, explain, export,
//! rebuild, verify, what-if): a reader task pulls batches from JetStream on a small runtime
//! while the caller folds on its own thread.

use std::fmt;

use anyhow::Context;
use async_nats::jetstream;
use ventana_bus::NatsOptions;
use ventana_bus::client::{Start, Stored, logged_event, read_log};
use ventana_core::{ConversationToken, Event, Policy, Timestamp, validate};
use ventana_wire::WireError;
use ventana_wire::subjects;

use crate::args::conversation_token;

/// Batches in flight between the reader and the fold: bounds memory.
const QUEUED_BATCHES: usize = 16;

/// The policy of `path` (the defaults without one), and a line saying which.
pub fn file_policy(path: Option<&std::path::Path>) -> anyhow::Result<(Policy, String)> {
    let policy = crate::load_policy(path)?;
    let said = match path {
        Some(path) => format!("policy: {}", path.display()),
        None => "policy: the defaults (pass --policy for another)".to_owned(),
    };
    Ok((policy, said))
}

/// A connection to NATS with its own runtime, for commands that are otherwise blocking.
#[derive(Debug)]
pub struct LiveLog {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    /// The partition count `VENTANA_IN` records (events on another partition are not
    /// folded, as ventanad does not fold them).
    partitions: Option<u32>,
}

impl LiveLog {
    pub fn connect(nats: &NatsOptions, name: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let (js, partitions) = runtime.block_on(async {
            let js = jetstream::new(ventana_bus::connect_once(nats, name).await?);
            let partitions = ventana_bus::streams::input_partitions(&js).await?;
            anyhow::Ok((js, partitions))
        })?;
        Ok(Self {
            runtime,
            js,
            partitions,
        })
    }

    /// The policy to fold the live log with: `path` if given, else the one ventanad
    /// published (the policy it decides with), else the defaults; and a line saying which.
    pub fn policy(&self, path: Option<&std::path::Path>) -> anyhow::Result<(Policy, String)> {
        if path.is_some() {
            return file_policy(path);
        }
        Ok(
            match self.block_on(ventana_bus::policy::active(&self.js))? {
                Some(published) => {
                    let said = format!(
                        "policy: ventanad's ({} revision {}, sha256 {}, published {})",
                        ventana_bus::policy::POLICY_BUCKET,
                        published.revision,
                        published.digest(),
                        crate::grid::short_time(published.published)
                    );
                    (published.policy, said)
                }
                None => (
                    Policy::default(),
                    "policy: the defaults (ventanad published none; pass --policy)".to_owned(),
                ),
            },
        )
    }

    pub fn js(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The messages of `stream` matching `filter` from `start` up to the last one stored when
    /// called, in order.
    pub fn read(&self, stream: &'static str, filter: Option<String>, start: Start) -> Messages {
        let (sink, batches) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        let failed = self.spawn_reader(stream, filter, start, sink);
        Batches::new(batches, failed)
    }

    /// Starts the task that reads `stream` into `sink`; the receiver gets the reason the read
    /// failed, if it did. `sink` closes only after the reason is sent, so a caller that sees
    /// it closed finds the reason.
    fn spawn_reader(
        &self,
        stream: &'static str,
        filter: Option<String>,
        start: Start,
        sink: tokio::sync::mpsc::Sender<Vec<Stored>>,
    ) -> tokio::sync::oneshot::Receiver<anyhow::Error> {
        let (failure, failed) = tokio::sync::oneshot::channel();
        let js = self.js.clone();
        self.runtime.spawn(async move {
            if let Err(error) = read_log(&js, stream, filter, start, sink.clone()).await {
                let _ = failure.send(error);
            }
            drop(sink);
        });
        failed
    }

    /// The input events logged for `conversation` (all when `None`), from `start`.
    pub fn input(&self, conversation: Option<ConversationToken>, start: Start) -> Messages {
        self.read(subjects::IN_STREAM, conversation.map(input_filter), start)
    }

    /// [`LiveLog::input`] as logged events (JetStream's timestamp as `logged_at`), decoded on
    /// the reader's thread while the caller folds on its own.
    pub fn input_events(&self, conversation: Option<ConversationToken>, start: Start) -> Events {
        let (sink, mut read) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        let failed = self.spawn_reader(
            subjects::IN_STREAM,
            conversation.map(input_filter),
            start,
            sink,
        );
        let (decoded, batches) = tokio::sync::mpsc::channel(QUEUED_BATCHES);
        let partitions = self.partitions;
        // Ends when the reader has closed `sink` (after any failure's reason is sent).
        self.runtime.spawn(async move {
            while let Some(batch) = read.recv().await {
                let events = batch
                    .iter()
                    .map(|message| Logged {
                        position: Position::Sequence(message.sequence),
                        event: logged_event(message, partitions),
                    })
                    .collect();
                if decoded.send(events).await.is_err() {
                    return;
                }
            }
        });
        Batches::new(batches, failed)
    }
}

/// Every input subject of one conversation, whatever the partition count.
pub fn input_filter(token: ConversationToken) -> String {
    format!("ventana.in.*.{token}")
}

/// Every output subject of one conversation.
pub fn output_filter(token: ConversationToken) -> String {
    format!("ventana.out.*.{token}")
}

/// What a reader read, in stream order, as the caller takes it: batch by batch from the
/// reader's thread.
#[derive(Debug)]
pub struct Batches<T> {
    batches: tokio::sync::mpsc::Receiver<Vec<T>>,
    /// Why reading stopped early, if it did.
    failed: tokio::sync::oneshot::Receiver<anyhow::Error>,
    batch: std::vec::IntoIter<T>,
}

impl<T> Batches<T> {
    fn new(
        batches: tokio::sync::mpsc::Receiver<Vec<T>>,
        failed: tokio::sync::oneshot::Receiver<anyhow::Error>,
    ) -> Self {
        Self {
            batches,
            failed,
            batch: Vec::new().into_iter(),
        }
    }
}

/// Stored messages, in stream order.
pub type Messages = Batches<Stored>;

/// Logged events, in stream order.
pub type Events = Batches<Logged>;

impl<T> Iterator for Batches<T> {
    type Item = anyhow::Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.batch.next() {
                return Some(Ok(item));
            }
            match self.batches.blocking_recv() {
                Some(batch) => self.batch = batch.into_iter(),
                // The reader is done: it either read everything or says why not.
                None => return self.failed.try_recv().ok().map(Err),
            }
        }
    }
}

/// Where a logged event was: a line of a file or a sequence of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    Line(u64),
    Sequence(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Sequence(n) => write!(f, "sequence {n}"),
        }
    }
}

/// One entry of a log: an event, or why it is not one.
#[derive(Debug)]
pub struct Logged {
    pub position: Position,
    pub event: Result<Event, WireError>,
}

/// `event` if it is valid under `policy` (the check ventanad makes before folding).
pub fn valid(event: Result<Event, WireError>, policy: &Policy) -> Result<Event, WireError> {
    let event = event?;
    validate(&event, policy)?;
    Ok(event)
}

/// The non-empty lines of a JSONL file as logged events.
pub fn file_events(input: impl std::io::BufRead) -> impl Iterator<Item = anyhow::Result<Logged>> {
    input
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|(index, line)| {
            let line = line.context("reading the input")?;
            Ok(Logged {
                position: Position::Line(index as u64 + 1),
                event: ventana_wire::parse_event(&line),
            })
        })
}

/// `--since`: a stream sequence (digits) or an RFC 3339 instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    Sequence(u64),
    Instant(Timestamp),
}

impl Since {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(sequence) = text.parse::<u64>() {
            return Ok(Since::Sequence(sequence));
        }
        Timestamp::parse_rfc3339(text)
            .map(Since::Instant)
            .map_err(|e| format!("neither a stream sequence nor an RFC 3339 instant: {e}"))
    }

    /// Where to start reading the stream to see everything since.
    pub fn start(self) -> Start {
        match self {
            Since::Sequence(sequence) => Start::Sequence(sequence),
            Since::Instant(at) => Start::Time(at),
        }
    }

    /// Whether an event at `position`, decided at `decided`, is at or after this point.
    pub fn includes(self, position: Position, decided: Timestamp) -> bool {
        match (self, position) {
            (Since::Sequence(from), Position::Sequence(sequence)) => sequence >= from,
            (Since::Sequence(_), Position::Line(_)) => true,
            (Since::Instant(from), _) => decided >= from,
        }
    }
}

/// Parses a `--conversation` argument into its token.
pub fn parse_conversation(text: &str) -> Result<ConversationToken, String> {
    conversation_token(text).map_err(|e| e.to_string())
}

/// Which part of the input log a command reads.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct Selection {
    /// Only this conversation (CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID or its token): only its
    /// subject is read.
    #[arg(long, value_name = "KEY|TOKEN", value_parser = parse_conversation)]
    pub conversation: Option<ConversationToken>,
    /// From this stream sequence or RFC 3339 instant on.
    #[arg(long, value_name = "INSTANT|SEQ", value_parser = Since::parse)]
    pub since: Option<Since>,
}
