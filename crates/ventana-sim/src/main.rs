//! `ventana-sim`: realistic traffic for ventana, published live or written as JSONL.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use ventana_bus::NatsOptions;
use ventana_sim::{Mix, simulate, stamp_live};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Clock {
    /// The generated timeline (from 2026-03-02T10:00:00Z, `logged_at` set): for files to
    /// replay, whatever the date.
    Simulated,
    /// The wall clock as each event goes out.
    Real,
}

#[derive(Debug, Parser)]
#[command(
    name = "ventana-sim",
    version,
    about = "Realistic traffic for ventana: customers, agents and automation on WhatsApp, Messenger and Instagram, comments and private replies, late and duplicate webhooks, platform failures",
    after_help = "Examples:\n  ventana-sim --events 100000 --max                 publish to the local NATS as fast as it acks\n  ventana-sim --rate 50 --events 0                   a steady live feed until Ctrl-C\n  ventana-sim --output traffic.jsonl --events 1000000  a file for `ventana replay --input`"
)]
struct Cli {
    /// Events to generate (0: endless, live only).
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Conversations the traffic is spread over.
    #[arg(long, default_value_t = 1_000)]
    conversations: u32,
    /// Seed: the same seed makes the same traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated days the traffic spreads over.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Percent of events delivered twice, a little later (Meta retrying a webhook).
    #[arg(long, default_value_t = 2)]
    duplicates: u32,
    /// Also generate `custom:sms` conversations (no window).
    #[arg(long)]
    custom_channel: bool,
    /// Events per second.
    #[arg(long, default_value_t = 100, conflicts_with = "max", value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// As fast as possible (publishing: as fast as JetStream acks).
    #[arg(long)]
    max: bool,
    /// Write JSONL to this file (`-`: stdout) instead of publishing to NATS.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Timestamps: `simulated` (files only; the default there) or `real` (the default, and
    /// the only choice, when publishing: ventanad decides at the time the log stores).
    #[arg(long, value_enum)]
    clock: Option<Clock>,
    /// Prefix of every id in real time, so runs never collide (default: sim-<unix seconds>).
    #[arg(long)]
    run: Option<String>,
    /// Input partitions (as configured in ventanad).
    #[arg(long, env = "VENTANA_PARTITIONS", default_value_t = ventana_wire::subjects::DEFAULT_PARTITIONS)]
    partitions: u32,
    #[command(flatten)]
    nats: NatsOptions,
}

impl Cli {
    fn mix(&self, round: u64) -> Mix {
        Mix {
            seed: self.seed.wrapping_add(round),
            events: if self.events == 0 {
                100_000
            } else {
                self.events
            },
            conversations: self.conversations,
            days: self.days,
            duplicate_percent: self.duplicates,
            custom_channel: self.custom_channel,
        }
    }

    fn rate(&self) -> Option<u32> {
        (!self.max).then_some(self.rate)
    }

    fn run_id(&self) -> String {
        self.run
            .clone()
            .unwrap_or_else(|| format!("sim-{}", ventana_bus::now().unix_nanos() / 1_000_000_000))
    }
}

/// Writes the traffic as JSONL; real time paces it like a live feed.
async fn write(cli: &Cli, path: &PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(cli.events > 0, "a file needs a number of --events");
    let mut out: Box<dyn Write> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )
    };
    let mut out = std::io::BufWriter::new(&mut out);
    let started = Instant::now();
    let events = simulate(&cli.mix(0));
    let count = events.len();
    if cli.clock == Some(Clock::Real) {
        let run = cli.run_id();
        let rate = cli.rate();
        let mut pace = rate
            .map(|r| tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / f64::from(r))));
        for event in events {
            if let Some(pace) = &mut pace {
                pace.tick().await;
            }
            let event = stamp_live(event, ventana_bus::now(), &run);
            writeln!(out, "{}", ventana_wire::event_to_json(&event))?;
        }
    } else {
        for event in &events {
            writeln!(out, "{}", ventana_wire::event_to_json(event))?;
        }
    }
    out.flush()?;
    eprintln!(
        "ventana-sim: wrote {count} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Publishes the traffic to VENTANA_IN (declared by ventanad), endless with `--events 0`.
async fn publish(cli: &Cli) -> anyhow::Result<()> {
    anyhow::ensure!(
        cli.clock != Some(Clock::Simulated),
        "publishing is real time (ventanad decides at the time the log stores an event); write simulated traffic with --output and replay it"
    );
    let client = ventana_bus::connect(&cli.nats, "ventana-sim").await?;
    let js = async_nats::jetstream::new(client);
    js.get_stream(ventana_wire::subjects::IN_STREAM)
        .await
        .context("no VENTANA_IN stream: start ventanad (or `ventana dev`) first")?;
    let run = cli.run_id();
    eprintln!(
        "ventana-sim: publishing {} as {run} ({})",
        if cli.events == 0 {
            "until Ctrl-C".to_owned()
        } else {
            format!(
                "{} events over {} conversations",
                cli.events, cli.conversations
            )
        },
        cli.rate()
            .map_or("as fast as acks come".to_owned(), |r| format!(
                "{r} events/s"
            ))
    );
    let mut last_report = Instant::now();
    let mut report = |p: &ventana_sim::live::Published| {
        if last_report.elapsed().as_secs() >= 5 {
            last_report = Instant::now();
            eprintln!(
                "  {} events ({} new), {:.0} events/s",
                p.events,
                p.fresh,
                p.per_second()
            );
        }
    };
    let mut round = 0;
    loop {
        let published = ventana_sim::live::publish(
            &js,
            simulate(&cli.mix(round)),
            cli.rate(),
            &format!("{run}.{round}"),
            cli.partitions,
            &mut report,
        )
        .await?;
        println!(
            "published {} events ({} new, {} duplicates dropped by JetStream) in {:.2} s: {:.0} events/s",
            published.events,
            published.fresh,
            published.events - published.fresh,
            published.elapsed.as_secs_f64(),
            published.per_second()
        );
        if cli.events != 0 {
            return Ok(());
        }
        round += 1;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    ventana_bus::log_to_stderr("warn", false);
    let cli = Cli::parse();
    let result = match &cli.output {
        Some(path) => write(&cli, path).await,
        None => tokio::select! {
            result = publish(&cli) => result,
            _ = ventana_bus::shutdown_signal() => Ok(()),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ventana-sim: {error:#}");
            std::process::ExitCode::from(1)
        }
    }
}
