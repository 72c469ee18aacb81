//! What other programs (the `ventana` CLI, adapters, tests) do with ventana's streams:
//! publish input events, read a stream back.

use std::time::Duration;

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use ventana_core::{Event, Timestamp};
use ventana_wire::event_to_json;
use ventana_wire::subjects::{MSG_ID, input_subject};

/// Publishes events to their conversations' subjects with `Nats-Msg-Id` = event id,
/// pipelining up to 1 000 and awaiting every ack. Returns how many were new (not dropped as
/// duplicates by the server).
pub async fn publish_events(
    js: &jetstream::Context,
    events: &[Event],
    partitions: u32,
) -> anyhow::Result<usize> {
    let mut fresh = 0;
    for window in events.chunks(1000) {
        let mut acks = Vec::with_capacity(window.len());
        for event in window {
            let mut headers = HeaderMap::new();
            headers.insert(MSG_ID, event.id.as_str());
            let mut logged = event.clone();
            logged.logged_at = None; // the log's own timestamp decides
            acks.push(
                js.publish_with_headers(
                    input_subject(&event.conversation, partitions),
                    headers,
                    event_to_json(&logged).into(),
                )
                .await
                .with_context(|| format!("publishing {}", event.id))?,
            );
        }
        for ack in acks {
            if !ack
                .await
                .context("the server did not store an event")?
                .duplicate
            {
                fresh += 1;
            }
        }
    }
    Ok(fresh)
}

/// One message of a stream, as stored.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sequence: u64,
    pub published: Timestamp,
    pub subject: String,
    pub payload: bytes::Bytes,
    /// Sent as `Content-Type: application/protobuf`.
    pub protobuf: bool,
}

/// Whether a message's headers say its payload is protobuf (JSON otherwise).
pub fn is_protobuf(headers: Option<&async_nats::HeaderMap>) -> bool {
    headers
        .and_then(|h| h.get("Content-Type"))
        .is_some_and(|v| v.as_str() == "application/protobuf")
}

/// Reads an input event from its payload, JSON or protobuf.
pub fn decode_event(payload: &[u8], protobuf: bool) -> Result<Event, ventana_wire::WireError> {
    if protobuf {
        ventana_wire::proto::decode_event(payload)
    } else {
        let text = std::str::from_utf8(payload)
            .map_err(|e| ventana_wire::WireError::Undecodable(e.to_string()))?;
        ventana_wire::parse_event(text)
    }
}

/// Every message of `stream` (matching `filter`, e.g. one conversation's subject) at the
/// moment of the call, in order.
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<String>,
) -> anyhow::Result<Vec<Stored>> {
    let stream = js
        .get_stream(stream)
        .await
        .with_context(|| format!("no stream {stream}"))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: filter.unwrap_or_default(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .context("cannot read the stream")?;
    let mut info = consumer;
    let pending = info.info().await?.num_pending;
    let mut found = Vec::with_capacity(pending as usize);
    if pending == 0 {
        return Ok(found);
    }
    let mut messages = info.messages().await?;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .context("reading the stream timed out")?
    {
        let message = message?;
        let meta = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
        found.push(Stored {
            sequence: meta.stream_sequence,
            published: Timestamp::from_unix_nanos(meta.published.unix_timestamp_nanos() as i64),
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            protobuf: is_protobuf(message.headers.as_ref()),
        });
        if meta.pending == 0 {
            break;
        }
    }
    Ok(found)
}

/// The input log as replayable events: each with its JetStream timestamp as `logged_at`.
/// Messages that are not valid events are skipped (they are in the DLQ).
pub fn logged_events(stored: &[Stored]) -> Vec<Event> {
    stored
        .iter()
        .filter_map(|message| {
            let mut event = decode_event(&message.payload, message.protobuf).ok()?;
            if ventana_wire::subjects::token_of_input_subject(&message.subject)
                != Some(event.conversation.token())
            {
                return None;
            }
            event.logged_at = Some(message.published);
            Some(event)
        })
        .collect()
}
