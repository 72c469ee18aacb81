//! Generated traffic made live: published to `VENTANA_IN` as a channel adapter would, each
//! event stamped with the wall clock as it goes out, at a target rate or as fast as the
//! server acknowledges.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use ventana_bus::client::publish_events;
use ventana_bus::now;
use ventana_core::Event;

use crate::stamp_live;

/// How much was published, and how fast.
#[derive(Clone, Copy, Debug)]
pub struct Published {
    pub events: u64,
    /// Not dropped by JetStream as duplicates (the simulated webhook retries are).
    pub fresh: u64,
    pub elapsed: Duration,
}

impl Published {
    pub fn per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Publishes `events` (a simulated timeline, see [`crate::simulate`]) at `rate` events/s
/// (`None`: as fast as acks come back), stamped live with ids prefixed by `run`.
/// `progress` is called after every batch with the totals so far.
pub async fn publish(
    js: &jetstream::Context,
    events: impl IntoIterator<Item = Event>,
    rate: Option<u32>,
    run: &str,
    partitions: u32,
    mut progress: impl FnMut(&Published),
) -> anyhow::Result<Published> {
    let batch = rate.map_or(1_000, |r| (r / 10).max(1) as usize);
    let mut pace = rate.map(|r| {
        let mut interval =
            tokio::time::interval(Duration::from_secs_f64(batch as f64 / f64::from(r.max(1))));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    let started = Instant::now();
    let mut totals = Published {
        events: 0,
        fresh: 0,
        elapsed: Duration::ZERO,
    };
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        if let Some(pace) = &mut pace {
            pace.tick().await;
        }
        let at = now();
        let chunk: Vec<Event> = events
            .by_ref()
            .take(batch)
            .map(|e| stamp_live(e, at, run))
            .collect();
        totals.fresh += publish_events(js, &chunk, partitions).await? as u64;
        totals.events += chunk.len() as u64;
        totals.elapsed = started.elapsed();
        progress(&totals);
    }
    Ok(totals)
}
