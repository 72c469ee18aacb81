//! ventanad: ventana's live service. Channel adapters publish input events to JetStream
//! (`VENTANA_IN`); ventanad folds them with the same code as `ventana replay`, keeps every
//! conversation's state in sled, publishes outputs to `VENTANA_OUT` from a durable outbox,
//! logs `tick`s when deadlines pass, and answers the request-reply API.
//!
//! [`run`] is the whole service; the `ventanad` binary and the tests call it alike.
#![forbid(unsafe_code)]

pub mod api;
pub mod clock;
pub mod config;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod micro;
pub mod nats;
pub mod outbox;
pub mod pipeline;
pub mod protobuf_outputs;
pub mod states;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{Instrument, error, info, info_span, warn};
use ventana_core::{ConversationToken, Policy};
use ventana_store::Store;

pub use config::Config;
use pipeline::SendAnswer;

/// How long a graceful stop waits for the tasks.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the service's tasks share.
#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    /// Decoded states as committed, read before `store` (states.rs).
    pub states: states::States,
    pub policy: Policy,
    /// Input partitions (as `VENTANA_IN` records them).
    pub partitions: u32,
    /// The partitions whose outputs this instance publishes now (lease.rs), for `$SRV.INFO`.
    pub owned: Mutex<Vec<u32>>,
    pub metrics: metrics::Metrics,
    clock_wake: Notify,
    /// `send` callers waiting for a decision, several per message id (a retry while the
    /// first is pending waits beside it), each with a number its guard forgets it by.
    waiters: Mutex<HashMap<(ConversationToken, String), Vec<Waiter>>>,
    next_waiter: std::sync::atomic::AtomicU64,
    consumer_seen: AtomicI64,
    /// Whether the consumer, with work in hand, keeps making progress.
    consumer_progress: Progress,
    /// Whether the outbox publisher, with rows in hand, keeps making progress.
    outbox_progress: Progress,
}

/// One `send` caller waiting: its number and where its answer goes.
type Waiter = (u64, oneshot::Sender<SendAnswer>);

/// After a clean stop: closes the store and opens it once more, so that sled writes the
/// snapshot of its page table now instead of replaying this run's writes when ventanad next
/// starts (sled 0.34 snapshots only as it opens a store). The partitions are already handed
/// over, so this costs no one a decision. Skipped while anything still holds the store.
async fn snapshot_for_next_start(shared: Arc<Shared>, data: std::path::PathBuf) {
    let Ok(shared) = Arc::try_unwrap(shared) else {
        info!("the store is still in use; the next start replays sled's log");
        return;
    };
    let started = std::time::Instant::now();
    let snapshotted = tokio::task::spawn_blocking(move || {
        drop(shared);
        Store::snapshot(&data)
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|stored| stored.map_err(anyhow::Error::from));
    match snapshotted {
        Ok(()) => info!(
            seconds = started.elapsed().as_secs_f64(),
            "store snapshotted for the next start"
        ),
        Err(error) => warn!(%error, "cannot snapshot the store; the next start replays sled's log"),
    }
}

/// How long a task may hold work without progress before `/healthz` says it is stuck.
pub const STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a task holding work keeps making progress: `start` when it takes work,
/// `advance` at each step done, `idle` when it has none. Starting again while busy (work
/// that failed, taken again) is no progress.
#[derive(Debug, Default)]
struct Progress {
    busy: std::sync::atomic::AtomicBool,
    last: AtomicI64,
}

impl Progress {
    fn start(&self) {
        if !self.busy.load(Ordering::Relaxed) {
            self.advance();
            self.busy.store(true, Ordering::Relaxed);
        }
    }

    fn advance(&self) {
        self.last
            .store(clock::now().unix_nanos(), Ordering::Relaxed);
    }

    fn idle(&self) {
        self.busy.store(false, Ordering::Relaxed);
    }

    /// Holding work and no step done within [`STALL_LIMIT`].
    fn stalled(&self) -> bool {
        self.busy.load(Ordering::Relaxed)
            && clock::now().unix_nanos() - self.last.load(Ordering::Relaxed)
                > STALL_LIMIT.as_nanos() as i64
    }
}

impl Shared {
    fn new(store: Store, states_cached: usize, policy: Policy, partitions: u32) -> Self {
        Self {
            store,
            states: states::States::new(states_cached),
            policy,
            partitions,
            owned: Mutex::new(Vec::new()),
            metrics: metrics::Metrics::default(),
            clock_wake: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
            next_waiter: std::sync::atomic::AtomicU64::new(0),
            consumer_seen: AtomicI64::new(0),
            consumer_progress: Progress::default(),
            outbox_progress: Progress::default(),
        }
    }

    /// Registers a `send` caller waiting for the decision on `message_id`; the wait ends
    /// (and is forgotten) when the returned guard is dropped.
    fn wait_for(
        &self,
        token: ConversationToken,
        message_id: String,
    ) -> (Waiting<'_>, oneshot::Receiver<SendAnswer>) {
        let (sender, receiver) = oneshot::channel();
        let key = (token, message_id);
        let number = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        self.waiters
            .lock()
            .expect("waiters lock")
            .entry(key.clone())
            .or_default()
            .push((number, sender));
        (
            Waiting {
                shared: self,
                key,
                number,
            },
            receiver,
        )
    }

    fn resolve(&self, answers: Vec<(ConversationToken, String, SendAnswer)>) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        if waiters.is_empty() {
            return;
        }
        for (token, message_id, answer) in answers {
            for (_, sender) in waiters.remove(&(token, message_id)).unwrap_or_default() {
                let _ = sender.send(answer.clone());
            }
        }
    }

    fn touch_consumer(&self) {
        self.consumer_seen
            .store(clock::now().unix_nanos(), Ordering::Relaxed);
    }

    /// The consumer loop came round within the last 60 s (it wakes at least every 30 s),
    /// and is not stuck on a batch.
    fn consumer_alive(&self) -> bool {
        let seen = self.consumer_seen.load(Ordering::Relaxed);
        clock::now().unix_nanos() - seen < 60_000_000_000 && !self.consumer_progress.stalled()
    }

    /// The outbox publisher is not stuck on rows it holds.
    fn outbox_alive(&self) -> bool {
        !self.outbox_progress.stalled()
    }
}

/// Reports the consumer's lag every 5 s until the service stops.
async fn watch_lag(
    shared: Arc<Shared>,
    mut consumer: async_nats::jetstream::consumer::Consumer<
        async_nats::jetstream::consumer::pull::Config,
    >,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        if let Ok(info) = consumer.info().await {
            shared.metrics.consumer_lag.set(info.num_pending as i64);
        }
        if pause_or_stop(&mut stopped, std::time::Duration::from_secs(5)).await {
            return Ok(());
        }
    }
}

/// Waits `pause`, or until the service stops: true when it stops.
pub(crate) async fn pause_or_stop(
    stopped: &mut watch::Receiver<bool>,
    pause: std::time::Duration,
) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stopped.changed() => true,
    }
}

/// A `send` caller's wait for a decision; dropping it forgets the wait (a decision already
/// delivered removed it before).
struct Waiting<'a> {
    shared: &'a Shared,
    key: (ConversationToken, String),
    number: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiters) = self.shared.waiters.lock()
            && let Some(waiting) = waiters.get_mut(&self.key)
        {
            waiting.retain(|(number, _)| *number != self.number);
            if waiting.is_empty() {
                waiters.remove(&self.key);
            }
        }
    }
}

/// Runs ventanad until `shutdown` completes: finishes the batch in hand (flushed and acked),
/// then stops every task.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    // Read once: what ventanad decides with is exactly what it publishes.
    let policy_text = match &config.policy {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read policy file {}", path.display()))?,
        None => String::new(),
    };
    let policy = ventana_wire::parse_policy(&policy_text).with_context(|| {
        format!(
            "policy file {}",
            config
                .policy
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        )
    })?;
    let store = {
        let path = config.data.clone();
        let cache = config.cache_mb * 1024 * 1024;
        tokio::task::spawn_blocking(move || Store::open(&path, cache))
            .await?
            .with_context(|| {
                format!(
                    "cannot open the store in {dir} (sled is a projection of the log: if a crash damaged it, rebuild it with `ventana rebuild --data {dir}`)",
                    dir = config.data.display()
                )
            })?
    };
    let client = ventana_bus::connect(&config.nats, "ventanad").await?;
    let js = async_nats::jetstream::new(client.clone());
    let checkpoint = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.checkpoint()).await??
    };
    let consumer = nats::declare(&js, &config, checkpoint).await?;
    // The tools (explain, replay --from-stream, what-if) read the policy decided with.
    let revision = ventana_bus::policy::publish(&js, &policy_text, config.replicas).await?;
    info!(
        digest = ventana_bus::policy::digest(&policy_text),
        revision,
        "policy published to {}",
        ventana_bus::policy::POLICY_BUCKET
    );
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen on {}", config.http))?;
    info!(http = %listener.local_addr()?, data = %config.data.display(), "ventanad started");

    let shared = Arc::new(Shared::new(
        store,
        config.states_cached,
        policy,
        config.partitions,
    ));
    let (stop, stopped) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let (committed, to_publish) = tokio::sync::mpsc::channel::<outbox::Rows>(64);
    // The partitions whose outputs and ticks this instance publishes: lease.rs.
    let lease = Arc::new(lease::Lease::default());
    let (holds, holding) = watch::channel(lease::Owned::default());
    tasks.spawn(
        pipeline::Consumer::new(
            shared.clone(),
            js.clone(),
            consumer.clone(),
            committed,
            &config,
            stopped.clone(),
        )
        .run()
        .instrument(info_span!("consumer")),
    );
    tasks.spawn(
        outbox::run(
            shared.clone(),
            lease.clone(),
            js.clone(),
            config.instance.clone(),
            to_publish,
            holding.clone(),
            stopped.clone(),
        )
        .instrument(info_span!("outbox")),
    );
    tasks.spawn(
        clock::run(
            shared.clone(),
            js.clone(),
            config.partitions,
            holding.clone(),
            stopped.clone(),
        )
        .instrument(info_span!("clock")),
    );
    tasks.spawn(
        lease::run(
            shared.clone(),
            lease,
            js.clone(),
            config.instance.clone(),
            config.replicas,
            holds,
            stopped.clone(),
        )
        .instrument(info_span!("lease")),
    );
    tasks.spawn(
        api::run(
            shared.clone(),
            client.clone(),
            js.clone(),
            config.instance.clone(),
            config.partitions,
            config.send_timeout,
            stopped.clone(),
        )
        .instrument(info_span!("api")),
    );
    tasks.spawn(
        http::run(shared.clone(), client.clone(), listener, stopped.clone())
            .instrument(info_span!("http")),
    );
    if config.protobuf_outputs {
        tasks.spawn(
            protobuf_outputs::run(shared.clone(), js.clone(), stopped.clone())
                .instrument(info_span!("protobuf_outputs")),
        );
    }
    tasks.spawn(watch_lag(shared.clone(), consumer, stopped.clone()).instrument(info_span!("lag")));

    let mut failure = None;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => info!("shutting down"),
        Some(result) = tasks.join_next() => {
            failure = Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("a task stopped unexpectedly"),
                Ok(Err(error)) => error,
                Err(error) => anyhow::anyhow!("a task panicked: {error}"),
            });
        }
    }
    let _ = stop.send(true);
    // Tasks finish what they hold (the pipeline its batch: flushed, acked). With NATS away
    // some could wait on the network forever: past the grace period they are cut off; what
    // they had not acked is read again at the next start.
    let stopping = async {
        while let Some(result) = tasks.join_next().await {
            if let Ok(Err(error)) = result {
                error!(%error, "task failed while stopping");
            }
        }
    };
    if tokio::time::timeout(STOP_GRACE, stopping).await.is_err() {
        warn!("tasks still busy after {STOP_GRACE:?}; stopping them");
        tasks.abort_all();
    }
    let store = shared.store.clone();
    tokio::task::spawn_blocking(move || store.flush()).await??;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), client.flush()).await;
    drop(tasks);
    if failure.is_none() {
        snapshot_for_next_start(shared, config.data.clone()).await;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
