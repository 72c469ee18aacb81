//! `ventana`: the command line of the ventana conversation-window service.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::{Parser, Subcommand, ValueEnum};
use ventana::load_policy;
use ventana::log::LiveLog;
use ventana::replay::{Format, ReplayOptions, replay, replay_log};
use ventana_bus::NatsOptions;
use ventana_bus::client::Start;
use ventana_core::{ConversationToken, Timestamp};
use ventana_core::{MessageKind, Sender, Tag};
use ventana_notifier::OutputBody;

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
    /// acks: a generic adapter, and the way back for `ventana export`. Importing the same file
    /// again adds nothing: the server drops ids it has seen within its duplicate window, and
    /// ventana ignores event ids it has folded within 7 days (R14).
    #[command(alias = "publish")]
    Import {
        /// The events: one JSON object per line.
        #[arg(value_name = "FILE.jsonl")]
        input: PathBuf,
        /// Input partitions (as configured in ventanad).
        #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
        partitions: u32,
        /// Play the file on today's timeline: the first event now, each next one published
        /// when its moment comes (the file's gaps kept, or divided by --speed). ventanad
        /// decides each message when it is logged, so an old file imported at once meets
        /// closed windows.
        #[arg(long)]
        shift_to_now: bool,
        /// With --shift-to-now: divide the gaps by this (720 plays a day in 2 minutes, the
        /// window of `ventana dev`'s demo policy).
        #[arg(long, default_value_t = 1.0, requires = "shift_to_now", value_parser = parse_speed)]
        speed: f64,
        #[command(flatten)]
        nats: NatsOptions,
    },
    /// Write the live input log (or one conversation's part of it) as JSONL, each event with
    /// its `logged_at`, so `ventana replay --input` of the file prints the live outputs.
    Export {
        #[command(flatten)]
        select: ventana::log::Selection,
        /// Write to this file instead of stdout.
        #[arg(long, short, value_name = "FILE.jsonl")]
        output: Option<PathBuf>,
        #[command(flatten)]
        nats: NatsOptions,
    },
    /// Explain one conversation: every event with the state before and after, the window and
    /// when it closes, and every decision with its rule, reason and suggestion.
    Explain(ventana::explain::ExplainArgs),
    /// Build a fresh sled projection (what ventanad keeps in --data) from VENTANA_IN. Run it
    /// with ventanad stopped: the new projection replaces DIR, the old one is kept beside it.
    Rebuild(ventana::rebuild::RebuildArgs),
    /// Compare ventanad's projection in --data (service stopped) with a replay of the log up
    /// to its checkpoint; lists every conversation that differs (exit 1 if any).
    Verify(ventana::rebuild::VerifyArgs),
    /// Replay the log under another policy and report which decisions would have changed.
    WhatIf(ventana::whatif::WhatIfArgs),
    /// Erase a contact (privacy request): its events from VENTANA_IN, its outputs from
    /// VENTANA_OUT, its state, timers and outbox rows from the projection (ventanad stopped).
    /// Without --yes, only reports what would be removed.
    Erase(ventana::erase::EraseArgs),
    /// Report what runs: the ventanad instances that answer (requests, errors), the
    /// partition count, ventanad's consumer (folded through, waiting), the policy it
    /// published, and every stream (messages, replicas, leader, replicas not current).
    /// Exit status 1 when no ventanad answers.
    Status(ventana::status::StatusArgs),
    /// Print outputs as ventanad publishes them (until Ctrl-C).
    Tail {
        /// Start with the oldest output kept, not the next one.
        #[arg(long)]
        from_start: bool,
        /// Only outputs of this type (state_changed, outbound_accepted, delivery_failed, ...).
        #[arg(long = "type", value_name = "TYPE", value_parser = PossibleValuesParser::new(OutputBody::TYPES))]
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
    ///
    /// Prints ventanad's decision as JSON. Exit status: 0 it would be delivered, 3 it would
    /// not (`delivery_failed`), 4 it would be held until the customer writes
    /// (`outbound_held`), 2 ventanad refused the question, 1 no answer.
    Check {
        /// CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID, or the conversation's token.
        conversation: String,
        /// Who sends: a human agent or automation.
        #[arg(long, default_value = "agent", value_parser = PossibleValuesParser::new(Sender::ALL.iter().map(|s| s.as_str())))]
        sender: String,
        /// What is sent.
        #[arg(long, default_value = "message", value_parser = PossibleValuesParser::new(MessageKind::ALL.iter().map(|k| k.as_str())))]
        kind: String,
        /// A Messenger message tag.
        #[arg(long, value_parser = PossibleValuesParser::new(Tag::ALL.iter().map(|t| t.as_str())))]
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
    #[arg(
        long,
        value_name = "FILE.jsonl",
        required_unless_present_any = ["from_stream", "file"],
        conflicts_with_all = ["from_stream", "file"]
    )]
    input: Option<PathBuf>,
    /// The log, as with --input (`ventana replay FILE.jsonl` works too).
    #[arg(value_name = "FILE.jsonl", conflicts_with = "from_stream")]
    file: Option<PathBuf>,
    /// Fold the live log (VENTANA_IN) instead of a file.
    #[arg(long)]
    from_stream: bool,
    /// With --from-stream: only this conversation (CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID or its
    /// token); only its subject is read.
    #[arg(long, value_name = "KEY|TOKEN", requires = "from_stream", value_parser = ventana::log::parse_conversation)]
    conversation: Option<ConversationToken>,
    /// With --from-stream: print only the outputs of events from this stream sequence or
    /// RFC 3339 instant on (everything before is still folded, so states are right).
    #[arg(long, value_name = "INSTANT|SEQ", requires = "from_stream", value_parser = ventana::log::Since::parse)]
    since: Option<ventana::log::Since>,
    /// Print only the snapshots as of this RFC 3339 instant (time travel): events decided
    /// after it are not folded, every deadline at or before it fires.
    #[arg(long, value_name = "INSTANT", value_parser = ventana::parse_instant, conflicts_with_all = ["until", "snapshots", "format"])]
    at: Option<Timestamp>,
    /// A policy file (TOML, see README "Configuration"). Default: with --from-stream the one
    /// ventanad published (the policy it decides with, said on stderr), else the defaults.
    #[arg(long, value_name = "FILE.toml", env = "VENTANA_POLICY")]
    policy: Option<PathBuf>,
    /// Fold only events decided at or before this RFC 3339 instant, then fire every deadline
    /// at or before it (e.g. to see which windows have closed by then).
    #[arg(long, value_name = "INSTANT", value_parser = ventana::parse_instant)]
    until: Option<Timestamp>,
    /// After the outputs, print one `{"type":"snapshot",...}` line per conversation, sorted
    /// by conversation, as of --until or else of the conversation's last event.
    #[arg(long)]
    snapshots: bool,
    /// `json`: the outputs as JSON lines (the contract). `table`: a timeline for people.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,
    #[command(flatten)]
    nats: NatsOptions,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Json,
    Table,
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    // The live log is folded with ventanad's policy unless --policy says otherwise.
    let live = if args.from_stream {
        let log = LiveLog::connect(&args.nats, "ventana-replay")?;
        let (policy, said) = log.policy(args.policy.as_deref())?;
        eprintln!("{said}");
        Some((log, policy))
    } else {
        None
    };
    let policy = match &live {
        Some((_, policy)) => policy.clone(),
        None => load_policy(args.policy.as_deref())?,
    };
    let options = ReplayOptions {
        policy,
        until: args.until.or(args.at),
        since: args.since,
        snapshots_only: args.at.is_some(),
        snapshots: args.snapshots,
        format: match args.format {
            FormatArg::Json => Format::Json,
            FormatArg::Table => Format::Table,
        },
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let summary = match args.input.as_ref().or(args.file.as_ref()) {
        Some(input) => {
            let file =
                File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
            replay(BufReader::new(file), &options, &mut out, &mut err)
                .with_context(|| format!("while replaying {}", input.display()))?
        }
        None => {
            let (log, _) = live.as_ref().expect("--from-stream connected");
            // Everything is folded (states need their history); --since only filters what
            // is printed.
            replay_log(
                log.input_events(args.conversation, Start::First),
                &options,
                &mut out,
                &mut err,
            )
            .context("while replaying VENTANA_IN")?
        }
    };
    Ok(if summary.invalid > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `verify`: exit 1 when the projection differs from the log.
fn exit_verified(same: bool) -> ExitCode {
    if same {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn parse_speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed >= 1.0 => Ok(speed),
        _ => Err("a number of at least 1".to_owned()),
    }
}

/// `check`: 0 if the message would be delivered now, 3 if it would not, 4 if it would be
/// held until the customer writes, 2 if ventanad refused the question.
fn check_exit(reply: &serde_json::Value) -> ExitCode {
    if reply.get("error").is_some() {
        return ExitCode::from(2);
    }
    match reply.get("type").and_then(serde_json::Value::as_str) {
        Some("delivery_failed") => ExitCode::from(3),
        Some("outbound_held") => ExitCode::from(4),
        _ => ExitCode::SUCCESS,
    }
}

/// Whether `error` comes from writing to a reader that went away (`ventana ... | head`).
fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn run_live(command: Command) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        match command {
            Command::Dev(args) => ventana::dev::dev(args).await.map(|()| ExitCode::SUCCESS),
            Command::Import {
                input,
                partitions,
                shift_to_now,
                speed,
                nats,
            } => ventana::live::import(&nats, &input, partitions, shift_to_now.then_some(speed))
                .await
                .map(exit),
            Command::Status(args) => ventana::status::status(&args).await.map(exit_verified),
            Command::Tail {
                from_start,
                output_type,
                json,
                nats,
            } => ventana::live::tail(&nats, from_start, output_type.as_deref(), json)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::State { conversation, nats } => {
                let (field, value) = ventana::args::conversation_arg(&conversation)?;
                let reply = ventana::live::request(
                    &nats,
                    ventana::live::STATE,
                    serde_json::json!({ field: value }),
                )
                .await?;
                Ok(exit(reply.get("error").is_none()))
            }
            Command::Check {
                conversation,
                sender,
                kind,
                tag,
                comment_id,
                nats,
            } => {
                let (field, value) = ventana::args::conversation_arg(&conversation)?;
                let mut body = serde_json::json!({ field: value, "sender": sender, "kind": kind });
                if let Some(tag) = tag {
                    body["tag"] = tag.into();
                }
                if let Some(comment_id) = comment_id {
                    body["comment_id"] = comment_id.into();
                }
                let reply = ventana::live::request(&nats, ventana::live::CHECK, body).await?;
                Ok(check_exit(&reply))
            }
            _ => unreachable!("blocking commands run in main"),
        }
    })
}

/// mimalloc: the fold allocates many small, short-lived values (states decoded from sled,
/// outputs rendered); it folds a third faster than with the system allocator (README,
/// "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // replay, rebuild and verify fold whole logs; huge pages only cost them the kernel's
    // zeroing, so a kernel without the setting is not worth a word. `dev` starts nats-server,
    // which would inherit the setting, and ventanad, which sets it itself.
    if matches!(cli.command, Command::Dev(_)) {
        ventana_bus::log_to_stderr("warn", false);
    } else {
        let _ = ventana_bus::without_huge_pages();
    }
    let result = match cli.command {
        Command::Replay(args) => run_replay(args),
        Command::Export {
            select,
            output,
            nats,
        } => ventana::live::export(&nats, &select, output.as_deref()).map(|()| ExitCode::SUCCESS),
        Command::Explain(args) => ventana::explain::run(args),
        Command::Rebuild(args) => ventana::rebuild::rebuild(args).map(|()| ExitCode::SUCCESS),
        Command::Verify(args) => ventana::rebuild::verify(args).map(exit_verified),
        Command::WhatIf(args) => ventana::whatif::run(args).map(|()| ExitCode::SUCCESS),
        Command::Erase(args) => ventana::erase::run(args).map(|()| ExitCode::SUCCESS),
        command => run_live(command),
    };
    result.unwrap_or_else(|error| {
        // The reader went away (`ventana state KEY | head -1`): the end, quietly, as for
        // any Unix tool.
        if broken_pipe(&error) {
            return ExitCode::SUCCESS;
        }
        eprintln!("ventana: {error:#}");
        ExitCode::from(1)
    })
}
