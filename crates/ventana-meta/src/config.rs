//! ventana-meta's configuration: flags, or `VENTANA_META_*` environment variables (NATS is
//! configured by the shared `VENTANA_NATS_*`).

use std::net::SocketAddr;
use std::time::Duration;

use ventana_bus::{NatsOptions, parse_duration};

/// Meta's Graph API, the version ventana-meta was written against.
pub const GRAPH_URL: &str = "https://graph.facebook.com/v23.0";

/// The Instagram API (Instagram Login): DMs are sent as `/{IG account id}/messages`.
pub const INSTAGRAM_GRAPH_URL: &str = "https://graph.instagram.com/v23.0";

/// The key-value bucket of the gateway's messages: `platform.<id>` → ventana message id (so
/// statuses name ventana's message and echoes of its own sends are not logged twice), and
/// `message.<id>` → what became of a send (so a retry gets the same answer).
pub const SENT_BUCKET: &str = "VENTANA_META_SENT";

/// How long the gateway remembers a sent message: statuses and echoes come within days.
pub(crate) const SENT_MEMORY: Duration = Duration::from_secs(8 * 86_400);

/// ventana-meta's configuration: flags or `VENTANA_META_*` (NATS: `VENTANA_NATS_*`, shared
/// with ventanad and the CLI).
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Where to listen for Meta's webhooks (`/webhook`), sends (`/v1/messages`), `/healthz`
    /// and `/metrics`.
    #[arg(long, env = "VENTANA_META_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The app secret: webhooks are verified with its HMAC-SHA256 (`X-Hub-Signature-256`).
    #[arg(long, env = "VENTANA_META_APP_SECRET", hide_env_values = true)]
    pub app_secret: String,
    /// The verify token configured in the app's webhook subscription.
    #[arg(long, env = "VENTANA_META_VERIFY_TOKEN", hide_env_values = true)]
    pub verify_token: String,
    /// The access token sends are made with (a system user token with the messaging
    /// permissions), for channels the channel tokens file does not name. Without any
    /// token for a channel, `/v1/messages` answers 503 and nothing is decided.
    #[arg(long, env = "VENTANA_META_GRAPH_TOKEN", hide_env_values = true)]
    pub graph_token: Option<String>,
    /// The Graph API base URL, version included (WhatsApp, Messenger).
    #[arg(long, env = "VENTANA_META_GRAPH_URL", default_value = GRAPH_URL)]
    pub graph_url: String,
    /// The Instagram API base URL, version included (Instagram DMs and comment replies).
    #[arg(long, env = "VENTANA_META_INSTAGRAM_GRAPH_URL", default_value = INSTAGRAM_GRAPH_URL)]
    pub instagram_graph_url: String,
    /// A file of access tokens per channel: `<page, phone number or Instagram account id>
    /// <token>` a line. Channels it names are sent with their own token; the others with
    /// the Graph API (or Instagram) token.
    #[arg(long, env = "VENTANA_META_CHANNEL_TOKENS")]
    pub channel_tokens: Option<std::path::PathBuf>,
    /// The Instagram user access token (default: the Graph API token).
    #[arg(long, env = "VENTANA_META_INSTAGRAM_TOKEN", hide_env_values = true)]
    pub instagram_token: Option<String>,
    /// The clients that may send through `/v1/messages`: a file with one client a line,
    /// `<name> <bearer token> <channel ids it may send from, or *>` (README, "The send
    /// gateway"). Without it, `/v1/messages` answers 503 and nothing is decided.
    #[arg(long, env = "VENTANA_META_SEND_CLIENTS")]
    pub send_clients: Option<std::path::PathBuf>,
    /// How long a Graph API call may take.
    #[arg(long, env = "VENTANA_META_GRAPH_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub graph_timeout: Duration,
    /// How long to wait for ventanad's decision on a send.
    #[arg(long, env = "VENTANA_META_DECIDE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub decide_timeout: Duration,
    /// The account name in ventana's conversation keys (CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT).
    #[arg(long, env = "VENTANA_META_ACCOUNT", default_value = "meta")]
    pub account: String,
    /// Input partitions (as configured in ventanad).
    #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Replicas of its key-value buckets when it creates them (3 on a three-node cluster).
    #[arg(long, env = "VENTANA_REPLICAS", default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=5))]
    pub replicas: usize,
    /// Largest webhook or send body accepted (bytes); larger ones get 413.
    #[arg(long, env = "VENTANA_META_MAX_BODY", default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Connections served at once; more wait until one closes.
    #[arg(long, env = "VENTANA_META_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub max_connections: usize,
    /// How long a client may take to send a request's headers.
    #[arg(long, env = "VENTANA_META_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// How long a connection may send nothing before it is closed.
    #[arg(long, env = "VENTANA_META_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How long reading a request's body and answering it may take (408 past it).
    #[arg(long, env = "VENTANA_META_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    #[command(flatten)]
    pub nats: NatsOptions,
}
