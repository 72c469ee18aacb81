//! Connecting to NATS: the one set of `VENTANA_NATS_*` options every ventana process takes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// How a ventana process connects to NATS.
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

/// Connects with a name, retrying the first connection, with the configured credentials.
pub async fn connect(options: &NatsOptions, name: &str) -> anyhow::Result<async_nats::Client> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    if let (Some(user), Some(password)) = (&options.nats_user, &options.nats_password) {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &options.nats_token {
        connect = connect.token(token.clone());
    }
    if let Some(creds) = &options.nats_creds {
        connect = connect
            .credentials_file(creds)
            .await
            .with_context(|| format!("cannot read NATS credentials {}", creds.display()))?;
    }
    if let Some(ca) = &options.nats_tls_ca {
        connect = connect.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> = options
        .url
        .split(',')
        .map(|url| url.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("invalid NATS URL {:?}", options.url))?;
    connect
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", options.url))
}
