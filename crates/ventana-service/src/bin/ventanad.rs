//! `ventanad`: the ventana service. Configuration by flags or `VENTANA_*` variables.

use clap::Parser;

/// ventana's live service: folds VENTANA_IN into per-conversation states (sled), publishes
/// outputs to VENTANA_OUT, and answers ventana.api.v1.* requests.
#[derive(Debug, Parser)]
#[command(name = "ventanad", version, about)]
struct Cli {
    #[command(flatten)]
    config: ventana_service::Config,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "VENTANA_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if cli.log_json {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .json()
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    ventana_service::run(cli.config, ventana_service::shutdown_signal()).await
}
