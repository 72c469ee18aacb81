//! `ventana erase`: a contact's data out of the log and the projection (privacy requests).

use std::path::PathBuf;

use anyhow::Context;
use async_nats::jetstream;
use ventana_bus::NatsOptions;
use ventana_core::ConversationToken;
use ventana_wire::subjects::{IN_STREAM, OUT_STREAM};

use crate::args::ConversationRef;
use crate::log::{LiveLog, input_filter, output_filter};

#[derive(Debug, clap::Args)]
pub struct EraseArgs {
    /// CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID or its token.
    #[arg(value_name = "KEY|TOKEN")]
    pub conversation: String,
    /// ventanad's projection (ventanad stopped: sled locks its directory).
    #[arg(long, env = "VENTANA_DATA", value_name = "DIR")]
    pub data: PathBuf,
    /// Erase; without it, only report what would be erased.
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub nats: NatsOptions,
}

/// How many messages of `stream` match `filter`.
async fn count(js: &jetstream::Context, stream: &str, filter: String) -> anyhow::Result<u64> {
    let stream = js.get_stream(stream).await?;
    let mut consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: filter,
            ..Default::default()
        })
        .await?;
    Ok(consumer.info().await?.num_pending)
}

/// Purges the messages of `stream` matching `filter`; how many were removed.
async fn purge(js: &jetstream::Context, stream: &str, filter: String) -> anyhow::Result<u64> {
    let stream = js.get_stream(stream).await?;
    Ok(stream
        .purge()
        .filter(filter)
        .await
        .with_context(|| {
            format!(
                "purging {stream:?}",
                stream = stream.cached_info().config.name
            )
        })?
        .purged)
}

pub fn run(args: EraseArgs) -> anyhow::Result<()> {
    let conversation = crate::args::conversation(&args.conversation)?;
    let token: ConversationToken = conversation.token();
    let store = crate::rebuild::open_existing(&args.data, 16)?;
    let found = store.find(token)?;
    let log = LiveLog::connect(&args.nats, "ventana-erase")?;
    let js = log.js();
    let name = match &conversation {
        ConversationRef::Key(key) => format!("{key} ({token})"),
        ConversationRef::Token(token) => token.to_string(),
    };
    let (events, outputs) = if args.yes {
        log.block_on(async {
            // The log first: a crash in between leaves a state that a rebuild would drop,
            // never events that would bring it back.
            let events = purge(js, IN_STREAM, input_filter(token)).await?;
            let outputs = purge(js, OUT_STREAM, output_filter(token)).await?;
            anyhow::Ok((events, outputs))
        })?
    } else {
        log.block_on(async {
            anyhow::Ok((
                count(js, IN_STREAM, input_filter(token)).await?,
                count(js, OUT_STREAM, output_filter(token)).await?,
            ))
        })?
    };
    if args.yes {
        store.erase(&found)?;
    }
    crate::outln!(
        "{} {name}: {events} events from {IN_STREAM}, {outputs} outputs from {OUT_STREAM}, {} ({} events folded), {} timers, {} unpublished outputs from {}{}",
        if args.yes { "erased" } else { "would erase" },
        if found.state { "its state" } else { "no state" },
        found.events,
        found.timers,
        found.outbox,
        args.data.display(),
        if args.yes {
            ""
        } else {
            " (nothing removed: add --yes)"
        }
    )?;
    Ok(())
}
