//! ventana's streams, declared idempotently: `VENTANA_IN` (the input log), `VENTANA_OUT`
//! (outputs), `VENTANA_DLQ` (bad input with its reason) and, when asked for,
//! `VENTANA_OUT_PROTOBUF` (the outputs' protobuf copies).

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use ventana_wire::subjects::{
    DLQ_STREAM, DLQ_SUBJECTS, FENCE_SUBJECTS, IN_STREAM, IN_SUBJECTS, OUT_PROTOBUF_STREAM,
    OUT_PROTOBUF_SUBJECTS, OUT_STREAM, OUT_SUBJECTS,
};

/// How the streams are declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    /// How long VENTANA_IN (and the DLQ) drop a re-published id.
    pub in_duplicate_window: Duration,
    /// How long VENTANA_OUT drops a re-published output id.
    pub out_duplicate_window: Duration,
    /// Replicas of each stream (1 on a single node).
    pub replicas: usize,
    /// Input partitions: recorded in `VENTANA_IN` when it is created, and fixed from then on
    /// (events are placed by it: `ventana.in.<token mod partitions>.<token>`).
    pub partitions: u32,
    /// Whether `VENTANA_OUT_PROTOBUF` (the outputs' protobuf copies) is declared too.
    pub protobuf_outputs: bool,
}

/// The key of `VENTANA_IN`'s metadata that records its partition count.
pub const PARTITIONS_METADATA: &str = "ventana_partitions";

impl Default for StreamSettings {
    /// ventanad's defaults: 10 minutes, 2 hours, one replica, 16 partitions.
    fn default() -> Self {
        Self {
            in_duplicate_window: Duration::from_secs(600),
            out_duplicate_window: Duration::from_secs(7200),
            replicas: 1,
            partitions: ventana_wire::subjects::DEFAULT_PARTITIONS,
            protobuf_outputs: false,
        }
    }
}

fn stream_config(
    name: &str,
    subjects: &[&str],
    duplicate_window: Duration,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window,
        ..Default::default()
    }
}

/// The key-value bucket `config.bucket`, created with `config` when it does not exist yet
/// (an existing bucket is used as it is).
pub async fn key_value_bucket(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> anyhow::Result<jetstream::kv::Store> {
    if let Ok(store) = js.get_key_value(config.bucket.as_str()).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    js.create_key_value(config)
        .await
        .with_context(|| format!("cannot create the key-value bucket {name}"))
}

/// The partition count `VENTANA_IN` records, if the stream exists and records one.
pub async fn input_partitions(js: &jetstream::Context) -> anyhow::Result<Option<u32>> {
    let Ok(mut stream) = js.get_stream(IN_STREAM).await else {
        return Ok(None);
    };
    let info = stream
        .info()
        .await
        .with_context(|| format!("cannot read {IN_STREAM}'s configuration"))?;
    match info.config.metadata.get(PARTITIONS_METADATA) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).with_context(|| {
            format!("{IN_STREAM} records {PARTITIONS_METADATA} = {text:?}, not a count")
        }),
    }
}

/// Creates or updates VENTANA_IN, VENTANA_OUT and VENTANA_DLQ. `VENTANA_IN` records its
/// partition count; declaring it with another count is refused (its events would be on the
/// wrong partitions).
pub async fn declare_streams(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1024).contains(&settings.partitions),
        "partitions must be 1 to 1024, not {}",
        settings.partitions
    );
    if let Some(recorded) = input_partitions(js).await? {
        anyhow::ensure!(
            recorded == settings.partitions,
            "{IN_STREAM} was created with {recorded} partitions; it cannot be declared with {} \
             (its events are placed by the count): pass --partitions {recorded} \
             (VENTANA_PARTITIONS) to every ventana process",
            settings.partitions
        );
    }
    let replicas = settings.replicas.max(1);
    for (name, subjects, window) in [
        (IN_STREAM, &[IN_SUBJECTS][..], settings.in_duplicate_window),
        // The fences share the outputs' stream: a batch of a partition's outputs can then
        // expect the partition's fence to be its publisher's (`subjects::partition_fence`).
        (
            OUT_STREAM,
            &[OUT_SUBJECTS, FENCE_SUBJECTS][..],
            settings.out_duplicate_window,
        ),
        (
            DLQ_STREAM,
            &[DLQ_SUBJECTS][..],
            settings.in_duplicate_window,
        ),
    ] {
        let mut config = stream_config(name, subjects, window, replicas);
        if name == OUT_STREAM {
            // Outputs go as atomic batches, each ending with its partition's mark.
            config.allow_atomic_publish = true;
        }
        if name == IN_STREAM {
            config.metadata.insert(
                PARTITIONS_METADATA.to_owned(),
                settings.partitions.to_string(),
            );
        }
        js.create_or_update_stream(config)
            .await
            .with_context(|| format!("cannot declare stream {name}"))?;
    }
    if settings.protobuf_outputs {
        js.create_or_update_stream(stream_config(
            OUT_PROTOBUF_STREAM,
            &[OUT_PROTOBUF_SUBJECTS],
            settings.out_duplicate_window,
            replicas,
        ))
        .await
        .with_context(|| format!("cannot declare stream {OUT_PROTOBUF_STREAM}"))?;
    }
    Ok(())
}
