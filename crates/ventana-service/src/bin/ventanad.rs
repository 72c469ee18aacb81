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

/// mimalloc: the fold allocates many small, short-lived values (states decoded from sled,
/// outputs rendered); it folds a third faster than with the system allocator (README,
/// "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ventana_bus::log_to_stderr("info", cli.log_json);
    // Huge pages cost ventanad 14–21 % of its CPU in the pipeline bench, and 50–90 MiB of
    // peak RSS (README, "Performance").
    if let Err(error) = ventana_bus::without_huge_pages() {
        tracing::warn!(%error, "cannot turn transparent huge pages off");
    }
    ventana_service::run(cli.config, ventana_bus::shutdown_signal()).await
}
