//! ventanad's one typed configuration: flags, or `VENTANA_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ventana_core::Policy;

/// Parses durations such as `2m`, `500ms`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    ventana_wire::parse_span(text).map(|span| Duration::from_nanos(span.nanos().max(0) as u64))
}

/// How ventanad connects to NATS.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct NatsOptions {
    /// NATS server URL(s), comma-separated.
    #[arg(
        long = "nats",
        env = "VENTANA_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// User name (with --nats-password).
    #[arg(long, env = "VENTANA_NATS_USER")]
    pub nats_user: Option<String>,
    /// Password (with --nats-user).
    #[arg(long, env = "VENTANA_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// Authentication token.
    #[arg(long, env = "VENTANA_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    #[arg(long, env = "VENTANA_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// A CA certificate to verify the server's TLS certificate with (enables TLS).
    #[arg(long, env = "VENTANA_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
}

/// ventanad's configuration.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsOptions,
    /// Where the sled store lives.
    #[arg(long, env = "VENTANA_DATA", default_value = "./ventana-data")]
    pub data: PathBuf,
    /// The policy file (TOML); the defaults apply without one.
    #[arg(long, env = "VENTANA_POLICY")]
    pub policy: Option<PathBuf>,
    /// sled's page cache, in MiB: bounds memory, whatever the number of conversations.
    #[arg(long, env = "VENTANA_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
    /// Input partitions (the `<partition>` of `ventana.in.<partition>.<conv>`).
    #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Stream replicas for VENTANA_IN / VENTANA_OUT / VENTANA_DLQ (1 on a single node).
    #[arg(long, env = "VENTANA_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// How long VENTANA_IN drops a re-published event id: at least the longest retry an
    /// adapter may make.
    #[arg(long, env = "VENTANA_IN_DUPLICATE_WINDOW", default_value = "10m", value_parser = parse_duration)]
    pub in_duplicate_window: Duration,
    /// How long VENTANA_OUT drops a re-published output id: at least the longest outage
    /// after which ventanad restarts with unpublished outbox rows.
    #[arg(long, env = "VENTANA_OUT_DUPLICATE_WINDOW", default_value = "2h", value_parser = parse_duration)]
    pub out_duplicate_window: Duration,
    /// Most events folded per batch (one sled flush and one ack per batch).
    #[arg(long, env = "VENTANA_BATCH", default_value_t = 1000)]
    pub batch: usize,
    /// How long `send` waits for its decision.
    #[arg(long, env = "VENTANA_SEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Address of the HTTP endpoint with /healthz and /metrics.
    #[arg(long, env = "VENTANA_HTTP", default_value = "127.0.0.1:9464")]
    pub http: SocketAddr,
}

impl Config {
    /// Reads and validates the policy file.
    pub fn load_policy(&self) -> anyhow::Result<Policy> {
        load_policy(self.policy.as_deref())
    }
}

/// Reads and validates a policy file; the defaults without one.
pub fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    use anyhow::Context;
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    ventana_wire::parse_policy(&text).with_context(|| format!("policy file {}", path.display()))
}
