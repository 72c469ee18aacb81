//! `ventana`: the command line of the ventana conversation-window service.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ventana::replay::{Format, ReplayOptions, replay};
use ventana_core::{Policy, Timestamp};

/// Knows, for every customer conversation on Meta channels, what may still be sent and until
/// when.
#[derive(Debug, Parser)]
#[command(name = "ventana", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fold a log of events offline and print what ventana would publish.
    ///
    /// Events are folded in file order; before each one, every deadline at or before its
    /// decision time fires. Outputs are printed as JSON lines on stdout, then snapshots.
    /// Invalid lines are reported on stderr as `line N: reason` and skipped (exit 2). An
    /// unreadable file or an invalid policy exits 1.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// The log: one input event (JSON) per line.
    #[arg(long, value_name = "FILE.jsonl")]
    input: PathBuf,
    /// A policy file (TOML, DESIGN §5); the defaults apply without one.
    #[arg(long, value_name = "FILE.toml", env = "VENTANA_POLICY")]
    policy: Option<PathBuf>,
    /// Fold only events decided at or before this RFC 3339 instant, then fire every deadline
    /// at or before it (e.g. to see which windows have closed by then).
    #[arg(long, value_name = "INSTANT", value_parser = parse_instant)]
    until: Option<Timestamp>,
    /// After the outputs, print one `{"type":"snapshot",...}` line per conversation, sorted
    /// by conversation, as of --until or else of the conversation's last event.
    #[arg(long)]
    snapshots: bool,
    /// `json`: the outputs as JSON lines (the contract). `table`: a timeline for people.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Json,
    Table,
}

fn parse_instant(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).map_err(|e| e.to_string())
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    ventana_wire::parse_policy(&text).with_context(|| format!("policy file {}", path.display()))
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.policy.as_ref())?;
    let file =
        File::open(&args.input).with_context(|| format!("cannot read {}", args.input.display()))?;
    let options = ReplayOptions {
        policy,
        until: args.until,
        snapshots: args.snapshots,
        format: match args.format {
            FormatArg::Json => Format::Json,
            FormatArg::Table => Format::Table,
        },
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let summary = replay(BufReader::new(file), &options, &mut out, &mut err)
        .with_context(|| format!("while replaying {}", args.input.display()))?;
    Ok(if summary.invalid > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("ventana: {error:#}");
        ExitCode::from(1)
    })
}
