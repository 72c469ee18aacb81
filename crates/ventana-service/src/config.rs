//! ventanad's one typed configuration: flags, or `VENTANA_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use ventana_bus::NatsOptions;
use ventana_bus::parse_duration;
use ventana_bus::streams::StreamSettings;
use ventana_core::Policy;

/// A count of 1 or more.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// The host name, as an instance name (`ventanad` when there is none to read).
pub fn default_instance() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| {
            name.trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "ventanad".to_owned())
}

/// An instance name: it becomes a consumer name and a header.
pub fn parse_instance(text: &str) -> Result<String, String> {
    let valid = (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(text.to_owned())
    } else {
        Err("an instance name is 1 to 64 letters, digits, `-` or `_`".to_owned())
    }
}

/// ventanad's configuration.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub nats: NatsOptions,
    /// This instance's name (letters, digits, `-`, `_`; at most 64): every instance
    /// started against the same NATS folds the whole log into its own store and answers
    /// the API; the input partitions are shared out among the live instances, each
    /// partition's outputs and ticks published by its owner, and the others take a dead
    /// owner's partitions over within seconds. The host name when not given.
    #[arg(long, env = "VENTANA_INSTANCE", default_value_t = default_instance(), value_parser = parse_instance)]
    pub instance: String,
    /// Where the sled store lives.
    #[arg(long, env = "VENTANA_DATA", default_value = "./ventana-data")]
    pub data: PathBuf,
    /// The policy file (TOML); the defaults apply without one.
    #[arg(long, env = "VENTANA_POLICY")]
    pub policy: Option<PathBuf>,
    /// sled's page cache, in MiB: bounds memory, whatever the number of conversations.
    #[arg(long, env = "VENTANA_CACHE_MB", default_value_t = 256)]
    pub cache_mb: u64,
    /// Conversation states kept decoded in memory, the most recently folded, in front of
    /// sled (about 1 KiB each on ordinary traffic; 0 turns the cache off).
    #[arg(long, env = "VENTANA_STATES_CACHED", default_value_t = 100_000)]
    pub states_cached: usize,
    /// Input partitions (the `<partition>` of `ventana.in.<partition>.<conv>`).
    #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
    pub partitions: u32,
    /// Stream replicas for VENTANA_IN / VENTANA_OUT / VENTANA_DLQ (1 on a single node).
    #[arg(long, env = "VENTANA_REPLICAS", default_value_t = 1, value_parser = at_least_one())]
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
    #[arg(long, env = "VENTANA_BATCH", default_value_t = 1000, value_parser = at_least_one())]
    pub batch: usize,
    /// How long `send` waits for its decision.
    #[arg(long, env = "VENTANA_SEND_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub send_timeout: Duration,
    /// Also publish every output as protobuf (`OutputEvent`) on `ventana.pb.out.<type>.<token>`,
    /// in the stream VENTANA_OUT_PROTOBUF, for subscribers that read protobuf.
    #[arg(long, env = "VENTANA_PROTOBUF_OUTPUTS")]
    pub protobuf_outputs: bool,
    /// Address of the HTTP endpoint with /healthz and /metrics.
    #[arg(long, env = "VENTANA_HTTP", default_value = "127.0.0.1:9464")]
    pub http: SocketAddr,
}

impl Config {
    /// How the streams are declared.
    pub fn streams(&self) -> StreamSettings {
        StreamSettings {
            in_duplicate_window: self.in_duplicate_window,
            out_duplicate_window: self.out_duplicate_window,
            replicas: self.replicas,
            partitions: self.partitions,
            protobuf_outputs: self.protobuf_outputs,
        }
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
