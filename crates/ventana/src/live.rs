//! Commands against the live system: import, export, tail, state, check.

use std::io::Write;

use anyhow::Context;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use serde_json::Value;
use ventana_bus::NatsOptions;
use ventana_bus::client::Start;
use ventana_core::{Event, Timestamp};
use ventana_notifier::OutputBody;
use ventana_wire::subjects::{self, OUT_STREAM};

use crate::grid::short_time;
use crate::log::{LiveLog, Selection, Since, file_events};
use crate::table::{describe_view, last_view};

/// `import --shift-to-now`: the file's timeline moved to start at `start`, its gaps divided
/// by `speed`: each event's new time, and how long after the start it is due.
pub fn shift_to(events: &mut [Event], start: Timestamp, speed: f64) -> Vec<std::time::Duration> {
    let Some(first) = events.iter().map(|e| e.occurred_at).min() else {
        return Vec::new();
    };
    let after = |at: Timestamp| {
        let gap = at.unix_nanos().saturating_sub(first.unix_nanos()) as f64 / speed;
        std::time::Duration::from_nanos(gap as u64)
    };
    let moved = |at: Timestamp| {
        Timestamp::from_unix_nanos(
            start
                .unix_nanos()
                .saturating_add(after(at).as_nanos() as i64),
        )
    };
    let mut due = Vec::with_capacity(events.len());
    for event in events {
        due.push(after(event.occurred_at));
        event.occurred_at = moved(event.occurred_at);
        event.logged_at = None;
        // A tick names its deadline in its id: both move.
        if let ventana_core::EventBody::Tick { at } = &mut event.body {
            *at = moved(*at);
            event.id = ventana_core::tick_id(event.conversation.token(), *at);
        }
    }
    due
}

/// Events older than an hour are decided by the live service at the time they are logged,
/// long after their windows closed: say so, and how to play them on today's timeline.
pub fn age_warning(events: &[Event], now: Timestamp) -> Option<String> {
    const HOUR_NANOS: i64 = 3_600 * 1_000_000_000;
    let newest = events.iter().map(|e| e.occurred_at).max()?;
    let age = now.unix_nanos().saturating_sub(newest.unix_nanos());
    (age > HOUR_NANOS).then(|| {
        format!(
            "warning: the newest event happened at {}, {} hours ago. ventanad decides each \
             message when it is logged (now), so windows that closed since refuse the messages \
             of this file. To play it on today's timeline, import it with --shift-to-now \
             (each event published when its moment comes, the first one now; --speed N \
             divides the gaps, e.g. 720 for `ventana dev`'s 2-minute windows).",
            short_time(newest),
            age / HOUR_NANOS
        )
    })
}

/// Publishes `events` on today's timeline (see [`shift_to`]), each when it is due, so
/// ventanad decides every message at the moment it would have been sent. The number of new
/// events.
async fn play(
    js: &jetstream::Context,
    events: &mut [Event],
    partitions: u32,
    speed: f64,
) -> anyhow::Result<usize> {
    let started = tokio::time::Instant::now();
    let due = shift_to(events, ventana_bus::now(), speed);
    if let Some(last) = due.iter().max() {
        eprintln!(
            "playing {} events over {:.0} s (the file's gaps{}); Ctrl-C stops",
            events.len(),
            last.as_secs_f64(),
            if speed == 1.0 {
                String::new()
            } else {
                format!(" divided by {speed}")
            }
        );
    }
    let mut fresh = 0;
    for (event, due) in events.iter().zip(due) {
        tokio::time::sleep_until(started + due).await;
        fresh += ventana_bus::client::publish_events(js, std::slice::from_ref(event), partitions)
            .await?;
        eprintln!(
            "{}  {}  {}",
            short_time(event.occurred_at),
            event.body.type_name(),
            event.id
        );
    }
    Ok(fresh)
}

/// `ventana import`: every event of a JSONL file to its subject, awaiting acks.
pub async fn import(
    nats: &NatsOptions,
    input: &std::path::Path,
    partitions: u32,
    shift_to_now: Option<f64>,
) -> anyhow::Result<bool> {
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let mut events: Vec<Event> = Vec::new();
    let mut invalid = 0;
    for logged in file_events(std::io::BufReader::new(file)) {
        let logged = logged?;
        match logged.event {
            Ok(event) => events.push(event),
            Err(error) => {
                invalid += 1;
                eprintln!("{}: {error}", logged.position);
            }
        }
    }
    let client = ventana_bus::connect_once(nats, "ventana-import").await?;
    let js = jetstream::new(client);
    let fresh = match shift_to_now {
        Some(speed) => play(&js, &mut events, partitions, speed).await?,
        None => {
            if let Some(warning) = age_warning(&events, ventana_bus::now()) {
                eprintln!("{warning}");
            }
            ventana_bus::client::publish_events(&js, &events, partitions).await?
        }
    };
    eprintln!(
        "published {} events ({fresh} new, {} already in the log){}",
        events.len(),
        events.len() - fresh,
        if invalid > 0 {
            format!("; {invalid} invalid lines skipped")
        } else {
            String::new()
        }
    );
    Ok(invalid == 0)
}

/// `ventana tail`: outputs as they are published (JSON lines, or one line per output).
pub async fn tail(
    nats: &NatsOptions,
    from_start: bool,
    output_type: Option<&str>,
    as_json: bool,
) -> anyhow::Result<()> {
    let client = ventana_bus::connect_once(nats, "ventana-tail").await?;
    let js = jetstream::new(client);
    let stream = js
        .get_stream(OUT_STREAM)
        .await
        .context("no VENTANA_OUT stream: is ventanad running?")?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: format!("ventana.out.{}.>", output_type.unwrap_or("*")),
            deliver_policy: if from_start {
                DeliverPolicy::All
            } else {
                DeliverPolicy::New
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = std::io::stdout().lock();
    while let Some(message) = messages.next().await {
        let message = message?;
        let text = String::from_utf8_lossy(&message.payload);
        let line = if as_json {
            text.into_owned()
        } else {
            human(&text)
        };
        match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => {}
            // The reader went away (`ventana tail | head`): that is the end, not an error.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// One line for people: time, conversation, what happened.
fn human(text: &str) -> String {
    let Ok(output) = ventana_wire::parse_output(text) else {
        return text.to_owned();
    };
    let what = match &output.body {
        OutputBody::StateChanged { from, .. } => {
            let view = last_view(&[&output]).expect("a state change announces a view");
            format!("{} -> {}", from.as_str(), describe_view(view))
        }
        OutputBody::OutboundAccepted {
            message_id,
            messaging_type,
            ..
        } => format!("{message_id} delivered: {}", messaging_type.as_str()),
        OutputBody::OutboundHeld { message_id, until } => {
            format!("{message_id} held until {}", short_time(*until))
        }
        OutputBody::DeliveryFailed {
            message_id,
            reason,
            detail,
            ..
        } => format!("{message_id} NOT DELIVERED: {} — {detail}", reason.as_str()),
        OutputBody::AutoReply { trigger, .. } => {
            format!("auto-reply requested: {}", trigger.as_str())
        }
        OutputBody::WindowClosing { closes_at, .. } => {
            format!("warning: the window closes at {}", short_time(*closes_at))
        }
    };
    format!(
        "{}  {:<16}  {}  {what}",
        short_time(output.occurred_at),
        output.body.type_name(),
        output.conversation
    )
}

/// Sends one request to the API, prints the JSON reply and returns it.
pub async fn request(nats: &NatsOptions, subject: &str, body: Value) -> anyhow::Result<Value> {
    let client = ventana_bus::connect_once(nats, "ventana-cli").await?;
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.request(subject.to_owned(), body.to_string().into()),
    )
    .await
    .context("no answer within 10 s: is ventanad running?")?
    .map_err(|e| anyhow::anyhow!("no answer from ventanad ({e}): is it running?"))?;
    let value: Value = serde_json::from_slice(&reply.payload)
        .context("ventanad answered something that is not JSON")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    out.flush()?;
    Ok(value)
}

pub const STATE: &str = subjects::API_STATE;
pub const CHECK: &str = subjects::API_CHECK;

/// `ventana export`: the input log (or a selection of it) as JSONL with `logged_at`.
/// Messages that are not events (they are in the DLQ) are reported on stderr and left out.
pub fn export(
    nats: &NatsOptions,
    select: &Selection,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let log = LiveLog::connect(nats, "ventana-export")?;
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let start = select.since.map_or(Start::First, Since::start);
    let (mut exported, mut skipped) = (0u64, 0u64);
    for logged in log.input_events(select.conversation, start) {
        let logged = logged?;
        match logged.event {
            Ok(event) => {
                writeln!(out, "{}", ventana_wire::event_to_json(&event))?;
                exported += 1;
            }
            Err(error) => {
                skipped += 1;
                eprintln!("{}: {error} (in the DLQ; not exported)", logged.position);
            }
        }
    }
    out.flush()?;
    eprintln!(
        "exported {exported} events{}",
        if skipped > 0 {
            format!(", {skipped} invalid messages left out")
        } else {
            String::new()
        }
    );
    Ok(())
}
