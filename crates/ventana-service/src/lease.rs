//! Which instance publishes which partition's outputs. Every ventanad instance folds the
//! whole log into its own store and answers the API (a warm standby for every partition);
//! each input partition's outputs and ticks are published by the one instance holding the
//! partition's lease in the key-value bucket VENTANA_LEASES, and the partitions are shared
//! out among the live instances.
//!
//! - **Who is alive**: each instance puts its key `instance.<name>` in the bucket every
//!   [`RENEW_EVERY`] and watches the others' keys: an instance whose key was not put within
//!   [`LEASE_TTL`] (by this instance's clock, as the puts arrive) is dead. Entries also
//!   expire from the bucket after [`LEASE_TTL`] (its `max_age`). An instance that finds others alive announces itself only once it
//!   has folded (nearly) the whole log, so it never takes partitions it cannot publish yet.
//! - **Who should own what**: [`assign`], a pure function of the live names every instance
//!   computes alike: each partition goes to the instance ranking highest for it (rendezvous
//!   hashing) that has fewer than ⌈P/N⌉ partitions, so no instance owns more than its fair
//!   share and a join or a leave moves few partitions.
//! - **Liveness**: the owner of a partition renews its key `partition.<p>` every
//!   [`RENEW_EVERY`] by compare-and-set on its revision; the instance it is assigned to
//!   creates it once it is gone: expired (the owner died or is cut off) or deleted (the
//!   owner handed it over because another should own it, or as it stopped).
//! - **Safety**: a lease alone cannot stop an owner that was paused past its TTL. So the new
//!   owner first publishes a *fence* to `ventana.fence.<p>` (in VENTANA_OUT), expecting the
//!   last message there to be the one it just read (`Nats-Expected-Last-Subject-Sequence`).
//!   The outbox (outbox.rs) publishes the partition's outputs as JetStream atomic batches,
//!   each expecting the last message on `ventana.fence.<p>` to be its own fence or mark and
//!   ending with a new mark there: a fence published since, by anyone, makes the server
//!   refuse the whole batch. The outbox, refused, steps down ([`Lease::step_down`]).
//!
//! A partition's outputs under one owner and the next are one ordered sequence: every mark
//! and fence carries the outbox position through which the partition's outputs are stored
//! (`Ventana-Position`), and every instance computes the same outputs at the same positions,
//! so the next owner publishes what follows that position from its own store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};
use ventana_wire::subjects::{
    self, INSTANCE_HEADER, LEASE_BUCKET, MEMBER_LEASE_PREFIX, MSG_ID, OUT_STREAM, POSITION_HEADER,
};

use crate::Shared;

/// How long a lease lives without renewal: the longest an instance that died keeps the
/// others from taking over its partitions.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often leases and the instance's own key are renewed.
const RENEW_EVERY: Duration = Duration::from_millis(750);
/// How often an instance looks for partitions to take.
const LOOK_EVERY: Duration = Duration::from_millis(250);
/// How many input messages a joining instance may still have to fold when it announces
/// itself (and is given partitions).
const JOIN_WHEN_PENDING: u64 = 1_000;

/// A partition this instance owns: where its outputs stood when the instance fenced it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// The VENTANA_OUT sequence of this instance's fence on `ventana.fence.<p>`.
    pub sequence: u64,
    /// The outbox position of the partition's last output stored before the fence (`None`
    /// when no owner has stored one since outputs were fenced by partition).
    pub through: Option<u64>,
}

/// The partitions this instance owns, with their fences.
pub type Owned = Arc<BTreeMap<u32, Fence>>;

/// What the outbox and the clock see: the partitions this instance owns now.
pub type Holding = watch::Receiver<Owned>;

/// The lease's side the outbox uses to give a partition up when the server refused its
/// outputs for another's fence.
#[derive(Debug, Default)]
pub struct Lease {
    /// Partitions with the fence the outbox found superseded.
    superseded: Mutex<Vec<(u32, u64)>>,
    fenced: Notify,
}

impl Lease {
    /// The outbox found another instance's fence after `fence` on `partition`: stop owning
    /// it at once (if `fence` is still this instance's: a late word about an earlier one
    /// changes nothing).
    pub fn step_down(&self, partition: u32, fence: u64) {
        self.superseded
            .lock()
            .expect("lease lock")
            .push((partition, fence));
        self.fenced.notify_one();
    }

    fn superseded(&self) -> Vec<(u32, u64)> {
        std::mem::take(&mut *self.superseded.lock().expect("lease lock"))
    }
}

/// Which of `members` should own each of `partitions` partitions: the member ranking
/// highest for a partition (by a stable hash of partition and name) among those that have
/// fewer than ⌈partitions / members⌉ so far. Every instance computes the same answer from
/// the same names; `None` only without members.
pub fn assign(members: &BTreeSet<String>, partitions: u32) -> Vec<Option<&str>> {
    if members.is_empty() {
        return vec![None; partitions as usize];
    }
    let share = (partitions as usize).div_ceil(members.len());
    let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
    (0..partitions)
        .map(|partition| {
            let chosen = members
                .iter()
                .map(String::as_str)
                .filter(|name| owned.get(name).copied().unwrap_or(0) < share)
                .max_by_key(|name| (rank(partition, name), *name))
                .expect("the members have room for every partition");
            *owned.entry(chosen).or_default() += 1;
            Some(chosen)
        })
        .collect()
}

/// How much `name` wants `partition` (rendezvous hashing): the same on every machine and
/// version, unlike std's hasher.
fn rank(partition: u32, name: &str) -> u64 {
    let mut bytes = partition.to_be_bytes().to_vec();
    bytes.extend_from_slice(name.as_bytes());
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

async fn bucket(js: &jetstream::Context, replicas: usize) -> anyhow::Result<kv::Store> {
    ventana_bus::streams::key_value_bucket(
        js,
        kv::Config {
            bucket: LEASE_BUCKET.into(),
            description: "ventanad: live instances and which one publishes each partition's outputs (entries expire unless renewed)".into(),
            history: 1,
            max_age: LEASE_TTL,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas.max(1),
            ..Default::default()
        },
    )
    .await
}

/// The instances whose keys are alive.
async fn live_members(bucket: &kv::Store) -> anyhow::Result<BTreeSet<String>> {
    let keys: Vec<String> = bucket.keys().await?.try_collect().await?;
    Ok(keys
        .into_iter()
        .filter_map(|key| key.strip_prefix(MEMBER_LEASE_PREFIX).map(str::to_owned))
        .collect())
}

/// When each instance's key was last put, as this instance saw the puts arrive.
type Seen = Arc<Mutex<BTreeMap<String, Instant>>>;

/// Watches the instances' keys (their last puts first) into `seen`, until the watch ends.
async fn watch_members(bucket: kv::Store, seen: Seen) -> anyhow::Result<()> {
    let mut puts = bucket
        .watch_with_history(format!("{MEMBER_LEASE_PREFIX}>"))
        .await?;
    while let Some(entry) = futures::StreamExt::next(&mut puts).await {
        let entry = entry?;
        let Some(name) = entry.key.strip_prefix(MEMBER_LEASE_PREFIX) else {
            continue;
        };
        let mut seen = seen.lock().expect("members lock");
        match entry.operation {
            kv::Operation::Put => {
                seen.insert(name.to_owned(), Instant::now());
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                seen.remove(name);
            }
        }
    }
    anyhow::bail!("the watch of the instances' keys ended")
}

/// The instances whose keys were put within [`LEASE_TTL`], and this one.
fn alive(seen: &Seen, instance: &str) -> BTreeSet<String> {
    let mut alive: BTreeSet<String> = seen
        .lock()
        .expect("members lock")
        .iter()
        .filter(|(_, at)| at.elapsed() < LEASE_TTL)
        .map(|(name, _)| name.clone())
        .collect();
    alive.insert(instance.to_owned());
    alive
}

/// Takes the lease `key` if nobody holds it (or this instance's earlier run does): its
/// revision.
async fn try_take(bucket: &kv::Store, key: &str, instance: &str) -> anyhow::Result<Option<u64>> {
    let value = Bytes::from(instance.to_owned());
    match bucket.entry(key).await? {
        Some(entry) if entry.operation == kv::Operation::Put => {
            if entry.value == value {
                // This instance restarted before its lease expired: take it back.
                Ok(bucket.update(key, value, entry.revision).await.ok())
            } else {
                Ok(None)
            }
        }
        _ => Ok(bucket.create(key, value).await.ok()),
    }
}

/// The outbox position a fence or mark says the partition's outputs are stored through.
pub fn position_of(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(POSITION_HEADER)
        .and_then(|value| value.as_str().parse().ok())
}

/// The last message on `partition`'s fence subject: its sequence (0 for none), the
/// instance that published it, and the position it says the outputs are stored through.
pub async fn last_mark(
    js: &jetstream::Context,
    partition: u32,
) -> anyhow::Result<(u64, Option<String>, Option<u64>)> {
    let stream = js.get_stream(OUT_STREAM).await?;
    match stream
        .get_last_raw_message_by_subject(&subjects::partition_fence(partition))
        .await
    {
        Ok(message) => Ok((
            message.sequence,
            message
                .headers
                .get(INSTANCE_HEADER)
                .map(|value| value.as_str().to_owned()),
            position_of(&message.headers),
        )),
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
            Ok((0, None, None))
        }
        Err(error) => Err(error.into()),
    }
}

/// Publishes this instance's fence on `partition`: from now on the server stores only its
/// outputs of the partition. It expects the fence subject's last message to be the one
/// read, whose position it carries on; another fence in between makes it read again.
async fn fence(
    js: &jetstream::Context,
    instance: &str,
    partition: u32,
    revision: u64,
) -> anyhow::Result<Fence> {
    for _ in 0..5 {
        let (last, _, through) = last_mark(js, partition).await?;
        let mut headers = HeaderMap::new();
        headers.insert(INSTANCE_HEADER, instance);
        headers.insert(
            MSG_ID,
            format!("fence:{instance}:{partition}:{revision}").as_str(),
        );
        headers.insert(
            "Nats-Expected-Last-Subject-Sequence",
            last.to_string().as_str(),
        );
        if let Some(through) = through {
            headers.insert(POSITION_HEADER, through.to_string().as_str());
        }
        let payload = serde_json::json!({
            "instance": instance,
            "partition": partition,
            "lease_revision": revision,
        });
        match js
            .publish_with_headers(
                subjects::partition_fence(partition),
                headers,
                payload.to_string().into(),
            )
            .await?
            .await
        {
            Ok(ack) => {
                return Ok(Fence {
                    sequence: ack.sequence,
                    through,
                });
            }
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => continue,
            Err(error) => return Err(error).context("cannot publish the fence"),
        }
    }
    anyhow::bail!("the partition's fence kept moving while this instance fenced it")
}

/// Whether this instance may announce itself: nobody else is alive (it owns everything at
/// once), or it has folded all but [`JOIN_WHEN_PENDING`] input messages.
async fn ready_to_join(
    js: &jetstream::Context,
    bucket: &kv::Store,
    instance: &str,
) -> anyhow::Result<bool> {
    let others = live_members(bucket).await?;
    if others.iter().all(|name| name == instance) {
        return Ok(true);
    }
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream(subjects::IN_STREAM)
        .await?
        .get_consumer(&subjects::consumer_name(instance))
        .await
        .map_err(|error| anyhow::anyhow!("cannot read this instance's consumer: {error}"))?;
    Ok(consumer.info().await?.num_pending <= JOIN_WHEN_PENDING)
}

/// The partitions this instance holds: each with its lease revision and fence.
type Held = BTreeMap<u32, (u64, Fence)>;

fn publish_owned(owns: &watch::Sender<Owned>, held: &Held, shared: &Shared) {
    let owned: BTreeMap<u32, Fence> = held.iter().map(|(p, (_, fence))| (*p, *fence)).collect();
    shared.metrics.partitions_owned.set(owned.len() as i64);
    *shared.owned.lock().expect("owned lock") = owned.keys().copied().collect();
    owns.send_replace(Arc::new(owned));
}

/// Joins, takes, renews and hands over partitions until `shutdown`, telling `owns` which
/// this instance owns.
pub async fn run(
    shared: Arc<Shared>,
    lease: Arc<Lease>,
    js: jetstream::Context,
    instance: String,
    replicas: usize,
    owns: watch::Sender<Owned>,
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
        match ready_to_join(&js, &bucket, &instance).await {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => warn!(%error, "cannot tell whether to join yet"),
        }
        if crate::pause_or_stop(&mut shutdown, LOOK_EVERY).await {
            return Ok(());
        }
    }
    let partitions = shared.partitions;
    let member = subjects::member_lease(&instance);
    let mut members = BTreeSet::from([instance.clone()]);
    let seen = Seen::default();
    let mut watching = tokio::spawn(watch_members(bucket.clone(), seen.clone()));
    let mut held = Held::new();
    let mut renewed = Instant::now() - RENEW_EVERY;
    info!(partitions, "joined the instances sharing the partitions");
    loop {
        let mut changed = false;
        let renew = renewed.elapsed() >= RENEW_EVERY;
        if renew {
            renewed = Instant::now();
            if let Err(error) = bucket.put(&member, Bytes::from(instance.clone())).await {
                warn!(%error, "cannot renew this instance's key");
            }
            if watching.is_finished() {
                warn!("the watch of the instances' keys ended; watching again");
                watching = tokio::spawn(watch_members(bucket.clone(), seen.clone()));
            }
        }
        let live = alive(&seen, &instance);
        if live != members {
            info!(instances = ?live, "the live instances changed");
            members = live;
        }
        for (partition, superseded) in lease.superseded() {
            if held.get(&partition).map(|(_, fence)| fence.sequence) == Some(superseded) {
                warn!(
                    partition,
                    "another instance fenced the partition: letting it go"
                );
                held.remove(&partition);
                changed = true;
            }
        }
        let assigned = assign(&members, partitions);
        // Hand over what another live instance should own; renew the rest.
        let mut handed = Vec::new();
        for (&partition, (revision, _)) in held.iter_mut() {
            if assigned[partition as usize] != Some(instance.as_str()) {
                handed.push((partition, *revision));
            } else if renew {
                match bucket
                    .update(
                        subjects::partition_lease(partition),
                        Bytes::from(instance.clone()),
                        *revision,
                    )
                    .await
                {
                    Ok(next) => {
                        *revision = next;
                        shared.metrics.lease_renewals.inc();
                    }
                    Err(error) => {
                        warn!(partition, %error, "lost the partition's lease");
                        handed.push((partition, u64::MAX));
                    }
                }
            }
        }
        if !handed.is_empty() {
            // The outbox stops first; then the lease goes, and the next owner fences.
            for (partition, _) in &handed {
                held.remove(partition);
            }
            publish_owned(&owns, &held, &shared);
            hand_over(&shared, &bucket, &handed).await;
        }
        for partition in 0..partitions {
            if assigned[partition as usize] != Some(instance.as_str())
                || held.contains_key(&partition)
            {
                continue;
            }
            let key = subjects::partition_lease(partition);
            let revision = match try_take(&bucket, &key, &instance).await {
                Ok(Some(revision)) => revision,
                Ok(None) => continue,
                Err(error) => {
                    warn!(partition, %error, "cannot read the partition's lease");
                    continue;
                }
            };
            match fence(&js, &instance, partition, revision).await {
                Ok(fence) => {
                    info!(partition, fence = fence.sequence, through = ?fence.through, "took the partition");
                    shared.metrics.takeovers.inc();
                    held.insert(partition, (revision, fence));
                    changed = true;
                }
                Err(error) => {
                    warn!(
                        partition,
                        error = format!("{error:#}"),
                        "took the partition's lease but cannot fence; letting it go"
                    );
                    let _ = bucket.delete_expect_revision(&key, Some(revision)).await;
                }
            }
        }
        if changed {
            publish_owned(&owns, &held, &shared);
        }
        tokio::select! {
            _ = tokio::time::sleep(LOOK_EVERY) => {}
            () = lease.fenced.notified() => {}
            _ = shutdown.changed() => break,
        }
    }
    watching.abort();
    // Hand everything over: the next owners need not wait for the leases to expire.
    let handed: Vec<(u32, u64)> = held
        .iter()
        .map(|(p, (revision, _))| (*p, *revision))
        .collect();
    held.clear();
    publish_owned(&owns, &held, &shared);
    hand_over(&shared, &bucket, &handed).await;
    if let Err(error) = bucket.delete(&member).await {
        warn!(%error, "cannot remove this instance's key; it expires");
    }
    Ok(())
}

/// Deletes the leases of `handed` (partition, revision; `u64::MAX` for a lease already
/// lost), so their next owners take them at once.
async fn hand_over(shared: &Shared, bucket: &kv::Store, handed: &[(u32, u64)]) {
    for &(partition, revision) in handed {
        if revision == u64::MAX {
            continue;
        }
        match bucket
            .delete_expect_revision(subjects::partition_lease(partition), Some(revision))
            .await
        {
            Ok(()) => {
                shared.metrics.handoffs.inc();
                info!(partition, "partition handed over");
            }
            Err(error) => {
                warn!(partition, %error, "cannot hand the partition over; its lease expires")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn counts<'a>(assigned: &[Option<&'a str>]) -> BTreeMap<&'a str, usize> {
        let mut counts = BTreeMap::new();
        for name in assigned.iter().flatten() {
            *counts.entry(*name).or_default() += 1;
        }
        counts
    }

    #[test]
    fn every_partition_has_one_owner_and_nobody_more_than_a_fair_share() {
        for partitions in [1, 2, 7, 16, 64, 1024] {
            for n in 1..=6 {
                let names: Vec<String> = (0..n).map(|i| format!("host-{i}")).collect();
                let live: BTreeSet<String> = names.iter().cloned().collect();
                let assigned = assign(&live, partitions);
                assert_eq!(assigned.len(), partitions as usize);
                assert!(assigned.iter().all(Option::is_some));
                let share = (partitions as usize).div_ceil(n);
                for (name, count) in counts(&assigned) {
                    assert!(
                        count <= share,
                        "{name} owns {count} of {partitions} with {n} instances"
                    );
                }
            }
        }
        assert_eq!(assign(&BTreeSet::new(), 4), vec![None; 4]);
    }

    #[test]
    fn a_single_instance_owns_everything() {
        let only = members(&["only"]);
        let assigned = assign(&only, 16);
        assert!(assigned.iter().all(|owner| *owner == Some("only")));
    }

    #[test]
    fn a_joining_instance_takes_its_share_and_few_others_move() {
        let (three, four) = (members(&["a", "b", "c"]), members(&["a", "b", "c", "d"]));
        let before = assign(&three, 64);
        let after = assign(&four, 64);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let to_d = after.iter().filter(|owner| **owner == Some("d")).count();
        assert_eq!(to_d, 16);
        // Only d's share and the few that the caps push around move.
        assert!(moved < 32, "{moved} of 64 partitions moved");
        // The order names are given in changes nothing.
        let reordered = members(&["d", "c", "b", "a"]);
        assert_eq!(after, assign(&reordered, 64));
    }
}
