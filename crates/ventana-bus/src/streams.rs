//! ventana's three streams, declared idempotently: `VENTANA_IN` (the input log),
//! `VENTANA_OUT` (outputs) and `VENTANA_DLQ` (bad input with its reason).

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use ventana_wire::subjects::{
    DLQ_STREAM, DLQ_SUBJECTS, IN_STREAM, IN_SUBJECTS, OUT_STREAM, OUT_SUBJECTS,
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
}

impl Default for StreamSettings {
    /// ventanad's defaults: 10 minutes, 2 hours, one replica.
    fn default() -> Self {
        Self {
            in_duplicate_window: Duration::from_secs(600),
            out_duplicate_window: Duration::from_secs(7200),
            replicas: 1,
        }
    }
}

fn stream_config(
    name: &str,
    subjects: &str,
    duplicate_window: Duration,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subjects.to_owned()],
        storage: stream::StorageType::File,
        num_replicas: replicas,
        duplicate_window,
        ..Default::default()
    }
}

/// Creates or updates VENTANA_IN, VENTANA_OUT and VENTANA_DLQ.
pub async fn declare_streams(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> anyhow::Result<()> {
    let replicas = settings.replicas.max(1);
    for (name, subjects, window) in [
        (IN_STREAM, IN_SUBJECTS, settings.in_duplicate_window),
        (OUT_STREAM, OUT_SUBJECTS, settings.out_duplicate_window),
        (DLQ_STREAM, DLQ_SUBJECTS, settings.in_duplicate_window),
    ] {
        js.create_or_update_stream(stream_config(name, subjects, window, replicas))
            .await
            .with_context(|| format!("cannot declare stream {name}"))?;
    }
    Ok(())
}
