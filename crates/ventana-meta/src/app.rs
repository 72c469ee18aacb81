//! What every request handler shares: the [`App`], and the keys of the
//! `VENTANA_META_SENT` bucket. Handlers (`webhook`, `gateway`) and the server that routes to
//! them depend on this module, not on each other.

use async_nats::jetstream::{self, kv};

use crate::config::Config;
use crate::metrics::Metrics;

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub config: Config,
    /// Who may send through `/v1/messages`.
    pub clients: crate::auth::Clients,
    /// Graph API tokens of single channels.
    pub channel_tokens: crate::tokens::ChannelTokens,
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub sent: kv::Store,
    /// The stable contact of each WhatsApp customer.
    pub contacts: crate::contacts::Contacts,
    pub graph: reqwest::Client,
    pub metrics: Metrics,
}

/// A key of the bucket: `<space>.<id in base32>` (KV keys allow few characters; Meta's ids
/// have `+`, `/` and `=`, callers' ids anything).
pub(crate) fn bucket_key(space: &str, id: &str) -> String {
    format!(
        "{space}.{}",
        data_encoding::BASE32_NOPAD.encode(id.as_bytes())
    )
}

/// Where the ventana id of the message the platform knows as `platform_id` is kept.
pub(crate) fn sent_key(platform_id: &str) -> String {
    bucket_key("platform", platform_id)
}
