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

/// Turns transparent huge pages off for this process. mimalloc asks the kernel for them, and
/// each first touch of one zeroes 2 MiB: with sled's and each batch's short-lived buffers,
/// 14–21 % of ventanad's CPU samples in the pipeline bench were that zeroing, and its peak
/// RSS was 50–90 MiB higher (README, "Performance").
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_thp_disable(true) {
        tracing::warn!(%error, "cannot turn transparent huge pages off");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ventana_bus::log_to_stderr("info", cli.log_json);
    without_huge_pages();
    ventana_service::run(cli.config, ventana_bus::shutdown_signal()).await
}
