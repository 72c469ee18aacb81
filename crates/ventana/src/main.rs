//! `ventana`: the command line of the ventana conversation-window service.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use ventana::replay::{Format, ReplayOptions, replay};
use ventana_core::{Policy, Timestamp};
use ventana_service::config::NatsOptions;

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
    /// Start a private nats-server, ventanad and a demo feed, and print what to try next.
    Dev(ventana::dev::DevArgs),
    /// Publish every event of a JSONL file to VENTANA_IN (Nats-Msg-Id = event id), awaiting
    /// acks: a generic adapter. Re-publishing the same file adds nothing.
    Publish {
        /// The events: one JSON object per line.
        #[arg(long, value_name = "FILE.jsonl")]
        input: PathBuf,
        /// Input partitions (as configured in ventanad).
        #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
        partitions: u32,
        #[command(flatten)]
        nats: NatsOptions,
    },
    /// Print outputs as ventanad publishes them (until Ctrl-C).
    Tail {
        /// Start with the oldest output kept, not the next one.
        #[arg(long)]
        from_start: bool,
        /// Only outputs of this type (state_changed, outbound_accepted, delivery_failed, ...).
        #[arg(long = "type", value_name = "TYPE")]
        output_type: Option<String>,
        /// Print the JSON of each output instead of a line for people.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        nats: NatsOptions,
    },
    /// Print a conversation's state now: state, window and its end, what may be sent.
    State {
        /// CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID, or the conversation's token.
        conversation: String,
        #[command(flatten)]
        nats: NatsOptions,
    },
    /// Ask whether a message would be delivered now, without sending or logging anything.
    Check {
        /// CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID, or the conversation's token.
        conversation: String,
        /// Who sends: agent (a human) or automation.
        #[arg(long, default_value = "agent")]
        sender: String,
        /// message, template, private_reply or comment_reply.
        #[arg(long, default_value = "message")]
        kind: String,
        /// human_agent, account_update, confirmed_event_update or post_purchase_update.
        #[arg(long)]
        tag: Option<String>,
        /// The comment a private or public reply answers.
        #[arg(long)]
        comment_id: Option<String>,
        #[command(flatten)]
        nats: NatsOptions,
    },
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

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn run_live(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match command {
            Command::Replay(_) => unreachable!("offline"),
            Command::Dev(args) => ventana::dev::dev(args).await.map(|()| ExitCode::SUCCESS),
            Command::Publish {
                input,
                partitions,
                nats,
            } => ventana::live::publish(&nats, &input, partitions)
                .await
                .map(exit),
            Command::Tail {
                from_start,
                output_type,
                json,
                nats,
            } => ventana::live::tail(&nats, from_start, output_type.as_deref(), json)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::State { conversation, nats } => {
                let (field, value) = ventana::live::conversation_arg(&conversation)?;
                ventana::live::request(
                    &nats,
                    ventana::live::STATE,
                    serde_json::json!({ field: value }),
                )
                .await
                .map(exit)
            }
            Command::Check {
                conversation,
                sender,
                kind,
                tag,
                comment_id,
                nats,
            } => {
                let (field, value) = ventana::live::conversation_arg(&conversation)?;
                let mut body = serde_json::json!({ field: value, "sender": sender, "kind": kind });
                if let Some(tag) = tag {
                    body["tag"] = tag.into();
                }
                if let Some(comment_id) = comment_id {
                    body["comment_id"] = comment_id.into();
                }
                ventana::live::request(&nats, ventana::live::CHECK, body)
                    .await
                    .map(exit)
            }
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Dev(_)) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        command => run_live(command),
    };
    result.unwrap_or_else(|error| {
        eprintln!("ventana: {error:#}");
        ExitCode::from(1)
    })
}
