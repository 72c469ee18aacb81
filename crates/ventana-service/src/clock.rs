//! The one place that reads the clock: when a conversation's deadline passes, the instance
//! owning the conversation's partition logs a `tick` for it to VENTANA_IN (id
//! `tick:<token>:<instant>`, so a repeat is dropped), and the tick is folded like any other
//! event. The log alone determines every state.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use tokio::sync::watch;
use tracing::warn;
use ventana_core::{ConversationToken, Event, EventBody, Timestamp, tick_id};
use ventana_wire::event_to_json;
use ventana_wire::subjects::{MSG_ID, input_subject_of};

use crate::Shared;

pub use ventana_bus::now;

pub async fn run(
    shared: Arc<Shared>,
    js: jetstream::Context,
    partitions: u32,
    mut holding: crate::lease::Holding,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    // Deadlines already logged and not yet folded away.
    let mut logged: HashSet<(ConversationToken, Timestamp)> = HashSet::new();
    loop {
        // Only the owner of a partition logs its ticks (another would log the same ids,
        // dropped as duplicates, for nothing).
        let owned = holding.borrow_and_update().clone();
        if owned.is_empty() {
            tokio::select! {
                _ = holding.changed() => continue,
                _ = shutdown.changed() => return Ok(()),
            }
        }
        let store = shared.store.clone();
        let at = now();
        let due = tokio::task::spawn_blocking(move || {
            let due = store.due(at, 10_000)?;
            due.into_iter()
                .filter(|(_, token)| owned.contains_key(&token.partition(partitions)))
                .map(|(deadline, token)| Ok((deadline, token, store.load(token)?)))
                .collect::<Result<Vec<_>, ventana_store::StoreError>>()
        })
        .await??;
        logged.retain(|entry| due.iter().any(|(at, token, _)| (*token, *at) == *entry));
        let mut acks = Vec::new();
        for (deadline, token, conversation) in due {
            let Some(conversation) = conversation else {
                continue;
            };
            if !logged.insert((token, deadline)) {
                continue;
            }
            let event = Event {
                id: tick_id(token, deadline),
                occurred_at: deadline,
                logged_at: None,
                conversation: conversation.key().clone(),
                body: EventBody::Tick { at: deadline },
            };
            let mut headers = HeaderMap::new();
            headers.insert(MSG_ID, event.id.as_str());
            match js
                .publish_with_headers(
                    input_subject_of(token, partitions),
                    headers,
                    event_to_json(&event).into(),
                )
                .await
            {
                Ok(ack) => acks.push((token, deadline, ack)),
                Err(error) => {
                    warn!(%error, "cannot log a tick; retrying");
                    logged.remove(&(token, deadline));
                }
            }
        }
        for (token, deadline, ack) in acks {
            match ack.await {
                Ok(_) => {
                    shared.metrics.ticks_logged.inc();
                }
                Err(error) => {
                    warn!(%error, "a tick was not stored; retrying");
                    logged.remove(&(token, deadline));
                }
            }
        }
        tokio::select! {
            _ = shared.clock_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
