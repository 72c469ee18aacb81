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

/// The connection options of `options` (name, credentials, TLS) and its server list.
async fn prepare(
    options: &NatsOptions,
    name: &str,
) -> anyhow::Result<(async_nats::ConnectOptions, Vec<async_nats::ServerAddr>)> {
    let mut connect = async_nats::ConnectOptions::new()
        .name(name)
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
    Ok((connect, servers))
}

/// Connects a service with a name and the configured credentials, retrying the first
/// connection until NATS is there (a service may start before its server).
pub async fn connect(options: &NatsOptions, name: &str) -> anyhow::Result<async_nats::Client> {
    let (connect, servers) = prepare(options, name).await?;
    connect
        .retry_on_initial_connect()
        .connect(servers)
        .await
        .with_context(|| format!("cannot connect to NATS at {}", options.url))
}

/// Connects a command-line tool: one attempt, and when it fails one line that says which
/// URL, why (refused, timed out, refused credentials) and what to start.
pub async fn connect_once(options: &NatsOptions, name: &str) -> anyhow::Result<async_nats::Client> {
    use async_nats::ConnectErrorKind as Kind;
    let (connect, servers) = prepare(options, name).await?;
    let error = match connect.connect(servers).await {
        Ok(client) => return Ok(client),
        Err(error) => error,
    };
    let io_kind = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    let why = match (error.kind(), io_kind) {
        (_, Some(std::io::ErrorKind::ConnectionRefused)) => {
            "connection refused (nothing listens there)".to_owned()
        }
        (Kind::TimedOut, _) | (_, Some(std::io::ErrorKind::TimedOut)) => "timed out".to_owned(),
        (Kind::Authentication | Kind::AuthorizationViolation, _) => {
            "the server refused the credentials (--nats-user/--nats-password, --nats-token, --nats-creds)".to_owned()
        }
        (kind, _) => kind.to_string(),
    };
    anyhow::bail!(
        "cannot reach NATS at {}: {why}. Start ventana with `ventana dev` (it runs its own \
         nats-server), or point --nats (VENTANA_NATS_URL) at a running one",
        options.url
    )
}
