//! `ventana-meta`: the Meta adapter (webhooks in, send gateway out).

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "ventana-meta",
    version,
    about = "Meta webhooks (WhatsApp, Messenger, Instagram) into ventana's log, and sends decided by ventana out through the Graph API"
)]
struct Cli {
    #[command(flatten)]
    config: ventana_meta::Config,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ventana_bus::log_to_stderr("info", false);
    let cli = Cli::parse();
    match ventana_meta::run(cli.config, ventana_bus::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ventana-meta: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
