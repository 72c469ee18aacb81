//! Connecting to NATS and declaring the streams and the consumer, idempotently.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull, stream};
use ventana_wire::subjects::{
    CONSUMER, DLQ_STREAM, DLQ_SUBJECTS, IN_STREAM, IN_SUBJECTS, OUT_STREAM, OUT_SUBJECTS,
};

use crate::config::{Config, NatsOptions};

/// Connects with a name, retrying the first connection, with the configured credentials.
pub async fn connect(options: &NatsOptions, name: &str) -> anyhow::Result<async_nats::Client> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    if let (Some(user), Some(password)) = (&options.nats_user, &options.nats_password) {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &options.nats_token {
        connect = connect.token(token.clone());
    }
    if let Some(creds) = &options.nats_creds {
        connect = connect
            .credentials_file(creds)
            .await
            .with_context(|| format!("cannot read NATS credentials {}", creds.display()))?;
    }
    if let Some(ca) = &options.nats_tls_ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = options
        .url
        .split(',')
        .map(|url| url.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid NATS URL {:?}", options.url))?;
    connect
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", options.url))
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

/// Creates or updates VENTANA_IN, VENTANA_OUT and VENTANA_DLQ, and (re)creates the durable
/// consumer so that it starts right after `checkpoint`, the last sequence sled holds.
///
/// The store, not the consumer, is the source of truth: after a crash, messages delivered
/// but not acked would otherwise only come back after the ack wait, behind newer ones, and
/// be skipped as already applied. Starting the consumer at `checkpoint + 1` makes the order
/// of application the order of the log, whatever happened before.
pub async fn declare(
    js: &jetstream::Context,
    config: &Config,
    checkpoint: u64,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let replicas = config.replicas.max(1);
    for (name, subjects, window) in [
        (IN_STREAM, IN_SUBJECTS, config.in_duplicate_window),
        (OUT_STREAM, OUT_SUBJECTS, config.out_duplicate_window),
        (DLQ_STREAM, DLQ_SUBJECTS, config.in_duplicate_window),
    ] {
        js.create_or_update_stream(stream_config(name, subjects, window, replicas))
            .await
            .with_context(|| format!("cannot declare stream {name}"))?;
    }
    consumer_after(js, checkpoint, replicas).await
}

/// (Re)creates the durable consumer to deliver from `checkpoint + 1` on.
pub async fn consumer_after(
    js: &jetstream::Context,
    checkpoint: u64,
    replicas: usize,
) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
    let stream = js
        .get_stream(IN_STREAM)
        .await
        .context("cannot open VENTANA_IN")?;
    // Absent on a first start; any other failure shows when creating it.
    let _ = stream.delete_consumer(CONSUMER).await;
    stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
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
