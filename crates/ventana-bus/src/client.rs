//! What programs (ventanad, the `ventana` CLI, adapters, tests) do with ventana's streams:
//! publish input events, read a stream back.

use std::time::Duration;

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use ventana_core::{Event, Timestamp};
use ventana_wire::event_to_json;
use ventana_wire::subjects::{MSG_ID, input_subject};

/// Publishes events to their conversations' subjects with `Nats-Msg-Id` = event id,
/// pipelining up to 1 000 and awaiting every ack. Returns how many were new (not dropped as
/// duplicates by the server). Refuses, before publishing anything, an event whose ids could
/// not be a header or that ventanad would refuse ([`Event::check_ids`]).
pub async fn publish_events(
    js: &jetstream::Context,
    events: &[Event],
    partitions: u32,
) -> anyhow::Result<usize> {
    for (index, event) in events.iter().enumerate() {
        event
            .check_ids()
            .with_context(|| format!("event {} of {}", index + 1, events.len()))?;
    }
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

/// Whether the message at `sequence` of `stream` has a header block no NATS client can
/// read (a line without a colon, say, published by a client that does not check header
/// values). Delivered to a consumer, such a message makes the client drop its connection,
/// again at every redelivery; read through the stream's API (JSON, headers in base64) it can
/// be looked at. False when the message is readable, absent, or cannot be fetched now.
pub async fn unreadable(js: &jetstream::Context, stream: &str, sequence: u64) -> bool {
    let reply: Result<serde_json::Value, _> = js
        .request(
            format!("STREAM.MSG.GET.{stream}"),
            &serde_json::json!({ "seq": sequence }),
        )
        .await;
    let Some(headers) = reply
        .ok()
        .as_ref()
        .and_then(|r| r.pointer("/message/hdrs"))
        .and_then(serde_json::Value::as_str)
        .map(|h| data_encoding::BASE64.decode(h.as_bytes()))
    else {
        return false;
    };
    !headers.is_ok_and(|block| header_block_readable(&block))
}

/// Whether a header block is what NATS clients read: UTF-8, `NATS/1.0` first, then
/// `name: value` lines (a line starting with a blank continues the one before).
fn header_block_readable(block: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(block) else {
        return false;
    };
    let mut lines = text.lines();
    lines
        .next()
        .is_some_and(|first| first.starts_with("NATS/1.0"))
        && lines.all(|line| {
            line.is_empty() || line.starts_with(char::is_whitespace) || line.contains(':')
        })
}

/// Largest input message accepted; larger ones go to the DLQ as `oversize`.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// One message of a stream, as stored.
#[derive(Clone, Debug)]
pub struct Stored {
    pub sequence: u64,
    pub published: Timestamp,
    pub subject: String,
    pub payload: bytes::Bytes,
    /// Sent as `Content-Type: application/protobuf`.
    pub protobuf: bool,
    /// An output's outbox position (`Ventana-Position`): outputs of one partition are
    /// stored in its order, and in its order all outputs are the log's.
    pub position: Option<u64>,
}

impl Stored {
    /// A message as JetStream delivered it.
    pub fn of(message: &jetstream::Message) -> anyhow::Result<Self> {
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("message without JetStream info: {e}"))?;
        Ok(Self::with_info(message, &info))
    }

    fn with_info(message: &jetstream::Message, info: &jetstream::message::Info<'_>) -> Self {
        let headers = message
            .headers
            .as_ref()
            .map(Headers::of)
            .unwrap_or_default();
        Self {
            sequence: info.stream_sequence,
            published: Timestamp::from_unix_nanos(info.published.unix_timestamp_nanos() as i64),
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            protobuf: headers.protobuf,
            position: headers.position,
        }
    }
}

/// What ventana reads of a stored message's headers, read in one pass over them (looking
/// a name up in an async-nats `HeaderMap` copies the name into a new buffer first, and
/// this runs for every message read).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Headers {
    /// Whether the payload is protobuf (JSON otherwise): a `Content-Type` (any case of the
    /// name) of `application/protobuf`, `application/x-protobuf`,
    /// `application/vnd.google.protobuf` or `application/x-google-protobuf`, with any
    /// parameters (`; proto=ventana.v1.InputEvent`) and in any case. Should a message carry
    /// the name in several cases, any of them naming protobuf makes it protobuf.
    protobuf: bool,
    /// `Ventana-Position`, an output's outbox position, when it is a number.
    position: Option<u64>,
}

impl Headers {
    fn of(headers: &async_nats::HeaderMap) -> Self {
        let mut read = Self::default();
        for (name, values) in headers.iter() {
            let name: &str = name.as_ref();
            let Some(value) = values.first() else {
                continue;
            };
            if name.eq_ignore_ascii_case("Content-Type") {
                read.protobuf |= protobuf_media_type(value.as_str());
            } else if name == ventana_wire::subjects::POSITION_HEADER {
                read.position = value.as_str().parse().ok();
            }
        }
        read
    }
}

/// Whether a `Content-Type` value names protobuf.
pub fn protobuf_media_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    [
        "application/protobuf",
        "application/x-protobuf",
        "application/vnd.google.protobuf",
        "application/x-google-protobuf",
    ]
    .iter()
    .any(|known| media.eq_ignore_ascii_case(known))
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

/// Where reading a stream starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Start {
    /// The oldest message kept.
    #[default]
    First,
    /// This stream sequence (or the next one kept).
    Sequence(u64),
    /// The first message stored at or after this instant.
    Time(Timestamp),
}

/// How many messages [`read_log`] hands over at a time (at most).
pub const READ_BATCH: usize = 1000;

/// How many messages [`read_log`] asks the server for at a time.
const PULL_BATCH: usize = 10_000;

/// Reads `stream` (the messages matching `filter`, e.g. one conversation's subjects) from
/// `start` up to its last message at the moment of the call, in order, sending them to
/// `sink` in batches of up to [`READ_BATCH`]. Returns how many were read. A message whose
/// header block no client can read ([`unreadable`]; ventanad copied it to the DLQ) is
/// stepped over; any other loss is an error.
pub async fn read_log(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<String>,
    start: Start,
    sink: tokio::sync::mpsc::Sender<Vec<Stored>>,
) -> anyhow::Result<u64> {
    let mut handle = js
        .get_stream(stream)
        .await
        .with_context(|| format!("no stream {stream}"))?;
    let last = handle.info().await?.state.last_sequence;
    let mut read = 0;
    let mut from = start;
    let mut behind = 0;
    loop {
        let failure =
            match read_segment(js, &handle, filter.clone(), from, last, &sink, &mut read).await {
                Ok(()) => return Ok(read),
                Err(failure) => failure,
            };
        let Some(next) = failure.next else {
            return Err(failure.error);
        };
        if failure.behind && behind < 20 {
            behind += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
            from = Start::Sequence(next);
            continue;
        }
        match first_unreadable(js, stream, filter.as_deref(), next, last).await {
            Some(sequence) if sequence >= last => return Ok(read),
            Some(sequence) => from = Start::Sequence(sequence + 1),
            None => return Err(failure.error),
        }
    }
}

/// Why a part of a read ended early: the error, and the stream sequence after the last
/// message read (when known).
struct Interrupted {
    error: anyhow::Error,
    next: Option<u64>,
    /// The reading consumer ran on a replica behind the stream's leader (one just back on a
    /// cluster): read again from `next`.
    behind: bool,
}

impl Interrupted {
    fn behind(stream: &str, next: Option<u64>) -> Self {
        Self {
            error: anyhow::anyhow!("the replica reading {stream} is behind the stream's leader"),
            next,
            behind: true,
        }
    }
}

/// A read whose consumer has nothing more to deliver from `next` on: complete, unless the
/// stream's leader holds a message of `filter` from `next` up to `last` (the consumer ran
/// on a replica still behind it).
async fn read_to_the_end(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<&str>,
    next: Option<u64>,
    last: u64,
) -> Result<(), Interrupted> {
    let Some(from) = next.filter(|n| *n <= last) else {
        return Ok(());
    };
    let reply: Result<serde_json::Value, _> = js
        .request(
            format!("STREAM.MSG.GET.{stream}"),
            &serde_json::json!({ "seq": from, "next_by_subj": filter.unwrap_or(">") }),
        )
        .await;
    let more = reply
        .ok()
        .and_then(|r| {
            r.pointer("/message/seq")
                .and_then(serde_json::Value::as_u64)
        })
        .is_some_and(|sequence| sequence <= last);
    if more {
        Err(Interrupted::behind(stream, next))
    } else {
        Ok(())
    }
}

/// Reads from `start` to `last` with one consumer: the fast way.
async fn read_segment(
    js: &jetstream::Context,
    stream: &jetstream::stream::Stream,
    filter: Option<String>,
    start: Start,
    last: u64,
    sink: &tokio::sync::mpsc::Sender<Vec<Stored>>,
    read: &mut u64,
) -> Result<(), Interrupted> {
    let mut next = match start {
        Start::First => Some(1),
        Start::Sequence(sequence) => Some(sequence.max(1)),
        Start::Time(_) => None,
    };
    let fail = |error: anyhow::Error, next: Option<u64>| Interrupted {
        error,
        next,
        behind: false,
    };
    let name = stream.cached_info().config.name.clone();
    let deliver_policy = match start {
        Start::First => DeliverPolicy::All,
        Start::Sequence(sequence) => DeliverPolicy::ByStartSequence {
            start_sequence: sequence.max(1),
        },
        Start::Time(at) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(at.unix_nanos().into())
                .map_err(|e| fail(anyhow::anyhow!("instant out of range: {e}"), None))?,
        },
    };
    // An ephemeral pull consumer without acks, pulling large batches: the cheapest way for
    // the server to hand over a log. Its consumer sequence has no holes, so a message lost on
    // the way (a slow-consumer drop) is detected rather than skipped. No idle heartbeats:
    // async-nats re-arms their timer for every message delivered; a stalled read is caught
    // by the timeout on each chunk below.
    let mut consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.clone().unwrap_or_default(),
            deliver_policy,
            ack_policy: AckPolicy::None,
            memory_storage: true,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .map_err(|e| {
            fail(
                anyhow::Error::new(e).context("cannot read the stream"),
                None,
            )
        })?;
    let pending = consumer
        .info()
        .await
        .map_err(|e| fail(e.into(), None))?
        .num_pending;
    if pending == 0 {
        return read_to_the_end(js, &name, filter.as_deref(), next, last).await;
    }
    let mut chunks = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await
        .map_err(|e| fail(e.into(), next))?
        .ready_chunks(READ_BATCH);
    let mut consumed = 0;
    loop {
        let chunk = match tokio::time::timeout(Duration::from_secs(10), chunks.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Err(fail(anyhow::anyhow!("the stream ended early"), next)),
            Err(_) => return Err(fail(anyhow::anyhow!("reading the stream timed out"), next)),
        };
        let mut batch = Vec::with_capacity(chunk.len());
        let mut done = false;
        for message in chunk {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    *read += batch.len() as u64;
                    let _ = sink.send(batch).await;
                    return Err(fail(error.into(), next));
                }
            };
            let info = match message.info() {
                Ok(info) => info,
                Err(error) => return Err(fail(anyhow::anyhow!("{error}"), next)),
            };
            if info.consumer_sequence != consumed + batch.len() as u64 + 1 {
                let error = anyhow::anyhow!(
                    "messages were lost while reading {} (consumer sequence {} after {}); read again",
                    stream.cached_info().config.name,
                    info.consumer_sequence,
                    consumed + batch.len() as u64
                );
                *read += batch.len() as u64;
                let _ = sink.send(batch).await;
                return Err(fail(error, next));
            }
            done = info.pending == 0 || info.stream_sequence >= last;
            next = Some(info.stream_sequence + 1);
            batch.push(Stored::with_info(&message, &info));
            if done {
                break;
            }
        }
        consumed += batch.len() as u64;
        *read += batch.len() as u64;
        sink.send(batch)
            .await
            .map_err(|_| fail(anyhow::anyhow!("the reader of the stream stopped"), None))?;
        if done {
            return read_to_the_end(js, &name, filter.as_deref(), next, last).await;
        }
    }
}

/// The first message from `next` to `last` that is [`unreadable`], if no readable message
/// of `filter` comes before it (that one would have been lost, not stepped over). Looks at
/// most 10 000 messages ahead.
async fn first_unreadable(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<&str>,
    next: u64,
    last: u64,
) -> Option<u64> {
    use async_nats::jetstream::stream::RawMessageErrorKind;
    let handle = js.get_stream(stream).await.ok()?;
    for sequence in next..=last.min(next.saturating_add(10_000)) {
        match handle.get_raw_message(sequence).await {
            Ok(message) if filter.is_none_or(|f| subject_matches(f, &message.subject)) => {
                return None;
            }
            Ok(_) => {}
            Err(error) if error.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(_) => return unreadable(js, stream, sequence).await.then_some(sequence),
        }
    }
    None
}

/// Whether `subject` matches the NATS subject `filter` (`*` one token, `>` the rest).
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in filter.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (wanted, Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

/// Every message of `stream` (matching `filter`, e.g. one conversation's subject) at the
/// moment of the call, in order.
pub async fn read_stream(
    js: &jetstream::Context,
    stream: &str,
    filter: Option<String>,
) -> anyhow::Result<Vec<Stored>> {
    let (sink, mut batches) = tokio::sync::mpsc::channel(16);
    let collect = async {
        let mut found = Vec::new();
        while let Some(batch) = batches.recv().await {
            found.extend(batch);
        }
        found
    };
    let (read, found) = tokio::join!(read_log(js, stream, filter, Start::First, sink), collect);
    read?;
    Ok(found)
}

/// An input message as the event the service folded: its JetStream timestamp is its
/// `logged_at`. Fails as the service does (it copied the message to the DLQ). With the
/// stream's partition count, an event on another partition than its token's fails too.
pub fn logged_event(
    message: &Stored,
    partitions: Option<u32>,
) -> Result<Event, ventana_wire::WireError> {
    if message.payload.len() > MAX_EVENT_BYTES {
        return Err(ventana_wire::WireError::Oversize {
            size: message.payload.len(),
            limit: MAX_EVENT_BYTES,
        });
    }
    let mut event = decode_event(&message.payload, message.protobuf)?;
    if ventana_wire::subjects::token_of_input_subject(&message.subject)
        != Some(event.conversation.token())
    {
        return Err(ventana_wire::WireError::InvalidField {
            field: "conversation",
            problem: format!("does not match the subject {}", message.subject),
        });
    }
    if let (Some(count), Some((partition, token))) = (
        partitions,
        ventana_wire::subjects::parts_of_input_subject(&message.subject),
    ) {
        let expected = token.partition(count);
        if partition != expected {
            return Err(ventana_wire::WireError::InvalidField {
                field: "subject",
                problem: format!(
                    "partition {partition}, but the conversation's partition is {expected} of {count} (token mod partitions)"
                ),
            });
        }
    }
    event.logged_at = Some(message.published);
    Ok(event)
}

/// The input log as replayable events: each with its JetStream timestamp as `logged_at`.
/// Messages that are not valid events are skipped (they are in the DLQ).
pub fn logged_events(stored: &[Stored]) -> Vec<Event> {
    stored
        .iter()
        .filter_map(|m| logged_event(m, None).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::subject_matches;

    #[test]
    fn headers_are_read_whatever_the_case_of_content_type() {
        use super::Headers;
        for name in [
            "Content-Type",
            "content-type",
            "CONTENT-TYPE",
            "Content-type",
        ] {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(name, "application/x-protobuf; proto=ventana.v1.InputEvent");
            headers.insert("Nats-Msg-Id", "e1");
            headers.insert(ventana_wire::subjects::POSITION_HEADER, "42");
            assert_eq!(
                Headers::of(&headers),
                Headers {
                    protobuf: true,
                    position: Some(42)
                },
                "{name}"
            );
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Content-Type", "application/json");
        headers.insert(ventana_wire::subjects::POSITION_HEADER, "not a number");
        assert_eq!(Headers::of(&headers), Headers::default());
        assert_eq!(
            Headers::of(&async_nats::HeaderMap::new()),
            Headers::default()
        );
    }

    #[test]
    fn protobuf_is_recognised_by_its_common_content_types() {
        for value in [
            "application/protobuf",
            "application/x-protobuf",
            "Application/X-Protobuf; proto=ventana.v1.InputEvent",
            "application/vnd.google.protobuf",
            " application/x-google-protobuf ;charset=binary",
        ] {
            assert!(super::protobuf_media_type(value), "{value}");
        }
        for value in [
            "application/json",
            "text/plain",
            "",
            "application/protobufx",
        ] {
            assert!(!super::protobuf_media_type(value), "{value}");
        }
    }

    #[test]
    fn header_blocks_are_read_as_nats_clients_read_them() {
        assert!(super::header_block_readable(
            b"NATS/1.0\r\nNats-Msg-Id: a\r\nX: 1\r\n\r\n"
        ));
        assert!(!super::header_block_readable(
            b"NATS/1.0\r\nNats-Msg-Id: a\nb\r\n\r\n"
        ));
        assert!(!super::header_block_readable(b"HTTP/1.1\r\n\r\n"));
        assert!(!super::header_block_readable(b"NATS/1.0\r\nX: \xff\r\n"));
    }

    #[test]
    fn filters_match_as_nats_matches_them() {
        assert!(subject_matches("ventana.in.*.tok", "ventana.in.3.tok"));
        assert!(!subject_matches("ventana.in.*.tok", "ventana.in.3.other"));
        assert!(!subject_matches("ventana.in.*.tok", "ventana.in.3.tok.x"));
        assert!(subject_matches(
            "ventana.out.>",
            "ventana.out.state_changed.tok"
        ));
        assert!(!subject_matches("ventana.out.>", "ventana.out"));
        assert!(!subject_matches("ventana.in.*", "ventana.in"));
    }
}
