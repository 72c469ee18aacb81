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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match ventana_meta::run(cli.config, ventana_service::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ventana-meta: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
