//! Which instance publishes. Every ventanad instance folds the whole log into its own store
//! and answers the API; exactly one, the holder of the lease `outputs` in the key-value
//! bucket VENTANA_LEASES, publishes outputs and logs ticks.
//!
//! - **Liveness**: the bucket's entries live [`LEASE_TTL`] (its `max_age`). The holder
//!   renews its entry every [`RENEW_EVERY`] by compare-and-set on its revision; the others
//!   try to create it every [`TRY_EVERY`], which succeeds only once it is gone: expired
//!   (the holder died or is cut off), or deleted (the holder stopped and handed over).
//! - **Safety**: a lease alone cannot stop a holder that was paused past its TTL. So the new
//!   holder first publishes a *fence* to `ventana.fence.outputs` (in VENTANA_OUT, with its
//!   own `Nats-Msg-Id`). The outbox (outbox.rs) reads the stream's last sequence, then the
//!   last fence, and publishes only if that fence is its own, expecting that sequence
//!   (`Nats-Expected-Last-Sequence`); the rows after it in a pipelined run expect the row
//!   before them (`Nats-Expected-Last-Msg-Id`). A fence published after the read, by
//!   anyone, makes the server refuse the rest: only the last to fence gets outputs stored.
//!   The outbox, finding another's fence, steps down ([`Lease::step_down`]). (The server's
//!   `Nats-Expected-Last-Subject-Sequence` on the fence subject would say it in one header,
//!   but a clustered stream stops answering such publishes after a leader change.)
//!
//! A holder's outputs and the next holder's are one ordered sequence: the next holder
//! fences first, then reads the last output stored, and publishes what follows it from its
//! own store (every instance computes the same outputs at the same outbox positions).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};
use ventana_wire::subjects::{INSTANCE_HEADER, LEASE_BUCKET, OUTPUTS_FENCE};

use crate::Shared;

/// How long a lease lives without renewal: the longest an instance that died keeps the
/// others from taking over.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the holder renews.
const RENEW_EVERY: Duration = Duration::from_millis(750);
/// How often the others try to take the lease.
const TRY_EVERY: Duration = Duration::from_millis(250);
const KEY: &str = "outputs";

/// What the outbox and the clock see: `Some(fence)` while this instance holds the lease
/// (the VENTANA_OUT sequence of its fence), `None` while another does.
pub type Holding = watch::Receiver<Option<u64>>;

/// The lease's side the outbox uses to give it up when the server refused its fence.
#[derive(Debug, Default)]
pub struct Lease {
    /// The fence the outbox found superseded.
    superseded: std::sync::Mutex<Option<u64>>,
    fenced: Notify,
}

impl Lease {
    /// The outbox found another instance's fence after `fence`: stop holding at once (if
    /// `fence` is still this instance's: a late word about an earlier one changes nothing).
    pub fn step_down(&self, fence: u64) {
        *self.superseded.lock().expect("lease lock") = Some(fence);
        self.fenced.notify_one();
    }

    fn superseded(&self, fence: u64) -> bool {
        self.superseded.lock().expect("lease lock").take() == Some(fence)
    }
}

async fn bucket(js: &jetstream::Context, replicas: usize) -> anyhow::Result<kv::Store> {
    ventana_bus::streams::key_value_bucket(
        js,
        kv::Config {
            bucket: LEASE_BUCKET.into(),
            description:
                "ventanad: which instance publishes outputs (entries expire unless renewed)".into(),
            history: 1,
            max_age: LEASE_TTL,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        },
    )
    .await
}

/// Takes the lease if nobody holds it (or this instance's earlier run does): its revision.
async fn try_take(bucket: &kv::Store, instance: &str) -> anyhow::Result<Option<u64>> {
    let value = Bytes::from(instance.to_owned());
    match bucket.entry(KEY).await? {
        Some(entry) if entry.operation == kv::Operation::Put => {
            if entry.value == value {
                // This instance restarted before its lease expired: take it back.
                Ok(bucket.update(KEY, value, entry.revision).await.ok())
            } else {
                Ok(None)
            }
        }
        _ => Ok(bucket.create(KEY, value).await.ok()),
    }
}

/// Publishes this instance's fence: from now on the server stores only its outputs.
async fn fence(js: &jetstream::Context, instance: &str, revision: u64) -> anyhow::Result<u64> {
    let mut headers = HeaderMap::new();
    headers.insert(INSTANCE_HEADER, instance);
    // Its own id: an output chained to the one before it (`Nats-Expected-Last-Msg-Id`) is
    // refused once a fence has come between them.
    let id = format!("fence:{instance}:{revision}");
    headers.insert(ventana_wire::subjects::MSG_ID, id.as_str());
    let ack = js
        .publish_with_headers(
            OUTPUTS_FENCE,
            headers,
            serde_json::json!({"instance": instance, "lease_revision": revision})
                .to_string()
                .into(),
        )
        .await?
        .await
        .context("cannot publish the fence")?;
    Ok(ack.sequence)
}

/// The VENTANA_OUT sequence of the last fence published.
pub async fn last_fence(js: &jetstream::Context) -> anyhow::Result<Option<u64>> {
    let stream = js.get_stream(ventana_wire::subjects::OUT_STREAM).await?;
    match stream.get_last_raw_message_by_subject(OUTPUTS_FENCE).await {
        Ok(message) => Ok(Some(message.sequence)),
        Err(error)
            if error.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
        {
            Ok(None)
        }
        Err(error) => Err(error.into()),
    }
}

/// Takes, holds and hands over the lease until `shutdown`, telling `holding` whether this
/// instance holds it.
pub async fn run(
    shared: Arc<Shared>,
    lease: Arc<Lease>,
    js: jetstream::Context,
    instance: String,
    replicas: usize,
    holding: watch::Sender<Option<u64>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // On a busy cluster making a replicated bucket can time out: keep trying.
    let bucket = loop {
        match bucket(&js, replicas).await {
            Ok(bucket) => break bucket,
            Err(error) => warn!(
                error = format!("{error:#}"),
                "cannot open the lease bucket; retrying"
            ),
        }
        if crate::pause_or_stop(&mut shutdown, Duration::from_secs(1)).await {
            return Ok(());
        }
    };
    loop {
        // Standing by.
        let revision = loop {
            match try_take(&bucket, &instance).await {
                Ok(Some(revision)) => break revision,
                Ok(None) => {}
                Err(error) => warn!(%error, "cannot read the lease"),
            }
            if crate::pause_or_stop(&mut shutdown, TRY_EVERY).await {
                return Ok(());
            }
        };
        let fenced_at = match fence(&js, &instance, revision).await {
            Ok(sequence) => sequence,
            Err(error) => {
                warn!(%error, "took the lease but cannot fence; letting it go");
                let _ = bucket.delete_expect_revision(KEY, Some(revision)).await;
                if crate::pause_or_stop(&mut shutdown, TRY_EVERY).await {
                    return Ok(());
                }
                continue;
            }
        };
        info!(fence = fenced_at, "holding the lease: publishing outputs");
        shared.metrics.lease_held.set(1);
        shared.metrics.takeovers.inc();
        holding.send_replace(Some(fenced_at));
        // Holding.
        let mut revision = revision;
        let stop = loop {
            tokio::select! {
                _ = tokio::time::sleep(RENEW_EVERY) => {}
                () = lease.fenced.notified() => {
                    if lease.superseded(fenced_at) {
                        warn!("another instance fenced the outputs: standing by");
                        break false;
                    }
                    continue;
                }
                _ = shutdown.changed() => break true,
            }
            match bucket
                .update(KEY, Bytes::from(instance.clone()), revision)
                .await
            {
                Ok(next) => {
                    revision = next;
                    shared.metrics.lease_renewals.inc();
                }
                Err(error) => {
                    warn!(%error, "lost the lease: standing by");
                    break false;
                }
            }
        };
        holding.send_replace(None);
        shared.metrics.lease_held.set(0);
        if stop {
            // Hand over: the next instance need not wait for the lease to expire.
            match bucket.delete_expect_revision(KEY, Some(revision)).await {
                Ok(()) => {
                    shared.metrics.handoffs.inc();
                    info!("lease handed over");
                }
                Err(error) => warn!(%error, "cannot hand the lease over; it expires"),
            }
            return Ok(());
        }
    }
}
