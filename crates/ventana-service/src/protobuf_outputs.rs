//! Protobuf outputs (with `--protobuf-outputs`): every output of VENTANA_OUT, in order, as an
//! `OutputEvent` (`proto/ventana/v1/ventana.proto`) on `ventana.pb.out.<type>.<token>` in
//! the stream VENTANA_OUT_PROTOBUF, with `Content-Type: application/protobuf`.
//!
//! The copies are derived from VENTANA_OUT, and VENTANA_OUT_PROTOBUF is its own checkpoint:
//! each copy carries `Ventana-Out-Sequence`, the sequence of the output it copies, and a
//! (re)start goes on after the last copy stored. Copies go out pipelined, each expecting the
//! stream's sequence before it (`Nats-Expected-Last-Sequence`), so the server stores a prefix
//! of them, in order; after any failure the copier starts over from the last copy stored.
//! Nothing is copied twice, skipped or reordered (no duplicate window is involved).

use std::time::Duration;

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, context::PublishAckFuture};
use futures::StreamExt;
use std::sync::Arc;
use tokio::sync::watch;
use tracing::{info, warn};
use ventana_wire::subjects::{
    OUT_PROTOBUF_STREAM, OUT_PROTOBUF_SUBJECTS, OUT_SEQUENCE_HEADER, OUT_STREAM, OUT_SUBJECTS,
    protobuf_output_subject,
};

use crate::Shared;

/// Copies published before their acks are awaited.
const COPIES_IN_FLIGHT: usize = 512;

/// Where copying goes on: the VENTANA_OUT sequence the last copy copies, and
/// VENTANA_OUT_PROTOBUF's last sequence.
#[derive(Debug, Default, PartialEq, Eq)]
struct Resume {
    copied: u64,
    stored: u64,
}

/// Copies outputs until `shutdown`, starting over from the last copy after any failure.
pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        match copy(&shared, &js, &mut shutdown).await {
            Ok(()) => return Ok(()),
            Err(error) => warn!(
                error = format!("{error:#}"),
                "copying outputs as protobuf failed; going on from the last copy stored"
            ),
        }
        if crate::pause_or_stop(&mut shutdown, Duration::from_millis(500)).await {
            return Ok(());
        }
    }
}

async fn resume(js: &jetstream::Context) -> anyhow::Result<Resume> {
    let mut copies = js.get_stream(OUT_PROTOBUF_STREAM).await?;
    let stored = copies.info().await?.state.last_sequence;
    let last = match copies
        .get_last_raw_message_by_subject(OUT_PROTOBUF_SUBJECTS)
        .await
    {
        Ok(last) => last,
        Err(error) if error.kind() == LastRawMessageErrorKind::NoMessageFound => {
            return Ok(Resume { copied: 0, stored });
        }
        Err(error) => return Err(error.into()),
    };
    let copied = last
        .headers
        .get(OUT_SEQUENCE_HEADER)
        .and_then(|v| v.as_str().parse().ok())
        .with_context(|| {
            format!(
                "the last message of {OUT_PROTOBUF_STREAM} (sequence {}) has no {OUT_SEQUENCE_HEADER}: only ventanad may publish on {OUT_PROTOBUF_SUBJECTS}",
                last.sequence
            )
        })?;
    Ok(Resume { copied, stored })
}

/// Copies from after the last copy stored until `shutdown` (Ok) or a failure (Err).
async fn copy(
    shared: &Shared,
    js: &jetstream::Context,
    shutdown: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Resume { copied, mut stored } = resume(js).await?;
    info!(after = copied, "copying outputs as protobuf");
    let consumer = js
        .get_stream(OUT_STREAM)
        .await?
        .create_consumer(pull::OrderedConfig {
            filter_subject: OUT_SUBJECTS.to_owned(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: copied + 1,
            },
            ..Default::default()
        })
        .await?;
    let mut outputs = consumer.messages().await?.ready_chunks(COPIES_IN_FLIGHT);
    loop {
        let batch = tokio::select! {
            batch = outputs.next() => batch.context("VENTANA_OUT's consumer ended")?,
            _ = shutdown.changed() => return Ok(()),
        };
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(batch.len());
        for message in batch {
            let message = message?;
            let sequence = message.info().map_err(anyhow::Error::msg)?.stream_sequence;
            let Some((subject, payload)) = transcode(&message.payload) else {
                warn!(
                    sequence,
                    subject = %message.subject,
                    "not an output of ventanad on VENTANA_OUT: not copied"
                );
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert(OUT_SEQUENCE_HEADER, sequence.to_string().as_str());
            headers.insert("Content-Type", "application/protobuf");
            headers.insert("Nats-Expected-Last-Sequence", stored.to_string().as_str());
            acks.push(
                js.publish_with_headers(subject, headers, payload.into())
                    .await?,
            );
            stored += 1;
        }
        let copied = acks.len();
        for ack in acks {
            ack.await?;
        }
        shared.metrics.protobuf_outputs.inc_by(copied as u64);
    }
}

/// An output's protobuf copy: its subject and bytes (None when the payload is not an
/// output).
fn transcode(payload: &[u8]) -> Option<(String, Vec<u8>)> {
    let output = ventana_wire::parse_output(std::str::from_utf8(payload).ok()?).ok()?;
    let subject = protobuf_output_subject(output.body.type_name(), output.conversation.token());
    Some((subject, ventana_wire::proto::encode_output(&output)))
}
