//! Declaring ventana's streams and ventanad's durable consumer, idempotently.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull};
use ventana_bus::streams::declare_streams;
use ventana_wire::subjects::{CONSUMER, IN_STREAM, consumer_name};

use crate::config::Config;

/// Creates or updates VENTANA_IN, VENTANA_OUT and VENTANA_DLQ, and (re)creates the durable
/// consumer so that it starts right after `checkpoint`, the last sequence sled holds.
///
/// The store, not the consumer, is the source of truth: after a crash, messages delivered
/// but not acked would otherwise only come back after the ack wait, behind newer ones, and
/// be skipped as already applied. Starting the consumer at `checkpoint + 1` makes the order
/// of application the order of the log, whatever happened before.
///
/// A request that times out (instances starting together on a fresh cluster all declare
/// at once while the streams' replicas are being placed) is made again, for up to a
/// minute; any other refusal stops ventanad at once.
pub async fn declare(
    js: &jetstream::Context,
    config: &Config,
    checkpoint: u64,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let mut attempts = 0;
    loop {
        let declared = match declare_streams(js, &config.streams()).await {
            Ok(()) => consumer_after(js, &config.instance, checkpoint, config.replicas).await,
            Err(error) => Err(error),
        };
        match declared {
            Err(error) if attempts < 30 && format!("{error:#}").contains("timed out") => {
                attempts += 1;
                tracing::warn!(
                    error = format!("{error:#}"),
                    "declaring the streams timed out; trying again"
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            declared => return declared,
        }
    }
}

/// (Re)creates the durable consumer to deliver from `checkpoint + 1` on.
pub async fn consumer_after(
    js: &jetstream::Context,
    instance: &str,
    checkpoint: u64,
    replicas: usize,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = js
        .get_stream(IN_STREAM)
        .await
        .context("cannot open VENTANA_IN")?;
    let name = consumer_name(instance);
    // Absent on a first start; any other failure shows when creating it. The one consumer
    // of versions before instances goes too: this instance folds in its place.
    let _ = stream.delete_consumer(&name).await;
    let _ = stream.delete_consumer(CONSUMER).await;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            deliver_policy: if checkpoint == 0 {
                jetstream::consumer::DeliverPolicy::All
            } else {
                jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: checkpoint + 1,
                }
            },
            ack_policy: jetstream::consumer::AckPolicy::All,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: 100_000,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .context("cannot declare the ventanad consumer")
}
