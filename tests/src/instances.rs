//! Several ventanad instances (the `ventanad` binary, each with its own store) and what the
//! tests read of their sharing: who owns which partition, whose fence and marks came last,
//! and that nothing of a partition was stored but by the instance that fenced it last.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use futures::StreamExt;
use ventana_wire::subjects::{
    self, CONSUMER, IN_STREAM, INSTANCE_HEADER, LEASE_BUCKET, OUT_STREAM,
};

use crate::service::{eventually, spawn_ventanad_with};

/// The input partitions (the default).
pub const PARTITIONS: u32 = 16;

/// One ventanad instance: its name, store and process.
#[derive(Debug)]
pub struct Instance {
    pub name: &'static str,
    pub data: PathBuf,
    /// The NATS URLs and extra arguments it runs with.
    nats: String,
    args: Vec<String>,
    process: Option<Child>,
}

impl Instance {
    /// Starts `ventanad --instance name --data dir/name` on `nats` with `args`.
    pub fn start(nats: &str, dir: &Path, name: &'static str, args: &[&str]) -> Self {
        let mut instance = Self {
            name,
            data: dir.join(name),
            nats: nats.to_owned(),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            process: None,
        };
        instance.restart();
        instance
    }

    /// Starts it again (after a kill or a stop), with the same store.
    pub fn restart(&mut self) {
        let mut args = vec!["--instance", self.name];
        args.extend(self.args.iter().map(String::as_str));
        self.process = Some(spawn_ventanad_with(&self.nats, &self.data, &args));
    }

    /// Sends `signal` (`-STOP`, `-CONT`, ...).
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().unwrap().id().to_string();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// kill -9, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }

    /// SIGTERM, and its exit status.
    pub fn stop(&mut self) -> bool {
        self.signal("-TERM");
        self.wait()
    }

    /// Waits for it to exit (after a signal): whether it exited cleanly.
    pub fn wait(&mut self) -> bool {
        self.process.take().unwrap().wait().unwrap().success()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if self.process.is_some() {
            let _ = self.signal_quietly();
            self.kill();
        }
    }
}

impl Instance {
    fn signal_quietly(&self) -> std::io::Result<()> {
        // A paused process must be resumed before it can be reaped.
        let pid = self.process.as_ref().map(|p| p.id().to_string());
        if let Some(pid) = pid {
            std::process::Command::new("kill")
                .args(["-CONT", &pid])
                .status()?;
        }
        Ok(())
    }
}

/// Who holds each of the [`PARTITIONS`] partitions' leases now.
pub async fn owners(js: &async_nats::jetstream::Context) -> Vec<Option<String>> {
    owners_of(js, PARTITIONS).await
}

/// Who holds each of `partitions` partitions' leases now.
pub async fn owners_of(
    js: &async_nats::jetstream::Context,
    partitions: u32,
) -> Vec<Option<String>> {
    let Ok(bucket) = js.get_key_value(LEASE_BUCKET).await else {
        return vec![None; partitions as usize];
    };
    let mut owners = Vec::new();
    for partition in 0..partitions {
        let entry = bucket
            .entry(subjects::partition_lease(partition))
            .await
            .ok()
            .flatten();
        owners.push(entry.and_then(|entry| {
            (entry.operation == async_nats::jetstream::kv::Operation::Put)
                .then(|| String::from_utf8_lossy(&entry.value).into_owned())
        }));
    }
    owners
}

/// The live instances: those whose membership key in the leases bucket was put within the
/// lease's life (each renews its own every 0.75 s), as the instances see each other.
pub async fn members(js: &async_nats::jetstream::Context) -> std::collections::BTreeSet<String> {
    let mut members = std::collections::BTreeSet::new();
    let Ok(bucket) = js.get_key_value(LEASE_BUCKET).await else {
        return members;
    };
    let Ok(keys) = bucket.keys().await else {
        return members;
    };
    let keys: Vec<String> = keys
        .filter_map(|key| async move { key.ok() })
        .collect()
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let alive_since = now - ventana_service::lease::LEASE_TTL.as_nanos() as i128;
    for key in keys {
        let Some(name) = key.strip_prefix(subjects::MEMBER_LEASE_PREFIX) else {
            continue;
        };
        if let Ok(Some(entry)) = bucket.entry(&key).await
            && entry.operation == async_nats::jetstream::kv::Operation::Put
            && entry.created.unix_timestamp_nanos() > alive_since
        {
            members.insert(name.to_owned());
        }
    }
    members
}

/// Whether `names` are the members and each of `partitions` partitions is held by the
/// instance the rendezvous assignment gives it among them (no handover is under way).
pub async fn settled_among(
    js: &async_nats::jetstream::Context,
    names: &[&str],
    partitions: u32,
) -> bool {
    let wanted: std::collections::BTreeSet<String> =
        names.iter().map(|name| (*name).to_owned()).collect();
    if members(js).await != wanted {
        return false;
    }
    let assigned = ventana_service::lease::assign(&wanted, partitions);
    let owners = owners_of(js, partitions).await;
    owners
        .iter()
        .zip(&assigned)
        .all(|(owner, assigned)| owner.as_deref() == *assigned)
}

/// The partitions `name` holds.
pub async fn owned_by(js: &async_nats::jetstream::Context, name: &str) -> Vec<u32> {
    owners(js)
        .await
        .iter()
        .enumerate()
        .filter(|(_, owner)| owner.as_deref() == Some(name))
        .map(|(partition, _)| partition as u32)
        .collect()
}

/// How many partitions each instance holds.
pub async fn shares(js: &async_nats::jetstream::Context) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for owner in owners(js).await.into_iter().flatten() {
        *shares.entry(owner).or_default() += 1;
    }
    shares
}

/// The last message on a partition's fence subject: its sequence, who published it, and
/// whether it is a mark (outputs stored) rather than a fence.
pub async fn last_on_fence(
    js: &async_nats::jetstream::Context,
    partition: u32,
) -> Option<(u64, String, bool)> {
    let stream = js.get_stream(OUT_STREAM).await.ok()?;
    let last = stream
        .get_last_raw_message_by_subject(&subjects::partition_fence(partition))
        .await
        .ok()?;
    let by = last.headers.get(INSTANCE_HEADER)?.as_str().to_owned();
    let body: serde_json::Value = serde_json::from_slice(&last.payload).ok()?;
    Some((last.sequence, by, body.get("through").is_some()))
}

/// Whether `name` has stored outputs of one of `partitions` last.
pub async fn outputs_from(
    js: &async_nats::jetstream::Context,
    partitions: &[u32],
    name: &str,
) -> bool {
    for &partition in partitions {
        if let Some((_, by, true)) = last_on_fence(js, partition).await
            && by == name
        {
            return true;
        }
    }
    false
}

/// VENTANA_OUT's last sequence.
pub async fn last_sequence(js: &async_nats::jetstream::Context) -> u64 {
    match js.get_stream(OUT_STREAM).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map_or(0, |info| info.state.last_sequence),
        Err(_) => 0,
    }
}

/// Reads VENTANA_OUT from the start: every output and mark of a partition was published by
/// the instance whose fence on the partition came last before it. Returns how many were
/// checked, and how many fences there were.
pub async fn assert_only_fence_holders_stored(
    js: &async_nats::jetstream::Context,
) -> (usize, usize) {
    let last = last_sequence(js).await;
    let consumer = js
        .get_stream(OUT_STREAM)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut holders: BTreeMap<u32, String> = BTreeMap::new();
    let (mut checked, mut fences) = (0, 0);
    while let Some(message) = messages.next().await {
        let message = message.unwrap();
        let sequence = message.info().unwrap().stream_sequence;
        let by = message
            .headers
            .as_ref()
            .and_then(|h| h.get(INSTANCE_HEADER))
            .map(|v| v.as_str().to_owned())
            .unwrap();
        let partition = match message.subject.strip_prefix("ventana.fence.") {
            Some(partition) => {
                let partition: u32 = partition.parse().unwrap();
                let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                if body.get("lease_revision").is_some() {
                    holders.insert(partition, by.clone());
                    fences += 1;
                }
                partition
            }
            None => subjects::token_of_output_subject(&message.subject)
                .unwrap()
                .partition(PARTITIONS),
        };
        assert_eq!(
            holders.get(&partition),
            Some(&by),
            "sequence {sequence} of partition {partition} stored from a fenced instance"
        );
        checked += 1;
        if sequence >= last {
            break;
        }
    }
    (checked, fences)
}

/// How many marks in VENTANA_OUT follow their partition's previous fence or mark with no
/// output between: each records an output the stream refused as one it had already (its
/// id stored within the duplicate window), that is, an output sent twice.
pub async fn marks_alone(js: &async_nats::jetstream::Context) -> usize {
    let messages = ventana_bus::client::read_stream(js, OUT_STREAM, None)
        .await
        .unwrap();
    // Per partition: whether an output came since its last fence or mark.
    let mut outputs_since: BTreeMap<u32, bool> = BTreeMap::new();
    let mut alone = 0;
    for message in &messages {
        match message.subject.strip_prefix("ventana.fence.") {
            Some(partition) => {
                let partition: u32 = partition.parse().unwrap();
                let body: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                let mark = body.get("lease_revision").is_none();
                if mark && outputs_since.get(&partition) == Some(&false) {
                    alone += 1;
                }
                outputs_since.insert(partition, false);
            }
            None => {
                if let Some(token) = subjects::token_of_output_subject(&message.subject) {
                    outputs_since.insert(token.partition(PARTITIONS), true);
                }
            }
        }
    }
    alone
}

/// Waits until `names` hold every partition, each its fair share (⌈16 / n⌉ at most).
pub async fn shared_fairly(js: &async_nats::jetstream::Context, names: &[&str]) {
    let share = (PARTITIONS as usize).div_ceil(names.len());
    eventually(
        &format!("the partitions shared among {names:?}"),
        Duration::from_secs(60),
        || async {
            let shares = shares(js).await;
            shares.values().sum::<usize>() == PARTITIONS as usize
                && shares.len() == names.len()
                && names.iter().all(|name| {
                    shares
                        .get(*name)
                        .is_some_and(|owned| (1..=share).contains(owned))
                })
        },
    )
    .await;
}

/// Input events instance `name` has yet to be delivered (its consumer's pending count).
pub async fn pending_for(js: &async_nats::jetstream::Context, name: &str) -> Option<u64> {
    let stream = js.get_stream(IN_STREAM).await.ok()?;
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&format!(
            "{CONSUMER}-{name}"
        ))
        .await
        .ok()?;
    Some(consumer.info().await.ok()?.num_pending)
}

/// Waits until instance `name` is within a second of traffic of the log's end.
pub async fn near_the_end(js: &async_nats::jetstream::Context, name: &str) {
    eventually(
        &format!("{name} catching up with the log"),
        Duration::from_secs(60),
        || async { pending_for(js, name).await.is_some_and(|p| p < 1_000) },
    )
    .await;
}
