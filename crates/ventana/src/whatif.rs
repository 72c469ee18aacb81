//! `ventana what-if`: the log replayed under two policies, decisions compared.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use ventana_bus::NatsOptions;
use ventana_bus::client::Start;
use ventana_core::Event;
use ventana_notifier::{Fold, Output, OutputBody};

use crate::log::{LiveLog, Logged, Selection};

#[derive(Debug, clap::Args)]
pub struct WhatIfArgs {
    /// The policy to try (TOML).
    #[arg(long, value_name = "OTHER.toml")]
    pub policy: PathBuf,
    /// The policy the log was decided under. Default: the one ventanad published (the
    /// policy it decides with), else the defaults.
    #[arg(long, env = "VENTANA_POLICY", value_name = "FILE.toml")]
    pub current: Option<PathBuf>,
    #[command(flatten)]
    pub select: Selection,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats: NatsOptions,
}

/// What became of an outbound message.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Accepted, with its messaging type (and tag).
    Delivered(String),
    Held,
    /// Not delivered, with the reason.
    Failed(String),
}

impl Outcome {
    fn of(output: &Output) -> Option<(&str, Outcome)> {
        Some(match &output.body {
            OutputBody::OutboundAccepted {
                message_id,
                messaging_type,
                tag,
                ..
            } => (
                message_id,
                Outcome::Delivered(match tag {
                    Some(tag) => format!("{} {}", messaging_type.as_str(), tag.as_str()),
                    None => messaging_type.as_str().to_owned(),
                }),
            ),
            OutputBody::OutboundHeld { message_id, .. } => (message_id, Outcome::Held),
            OutputBody::DeliveryFailed {
                message_id, reason, ..
            } => (message_id, Outcome::Failed(reason.as_str().to_owned())),
            _ => return None,
        })
    }

    fn delivered(&self) -> bool {
        matches!(self, Outcome::Delivered(_))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Delivered(how) => write!(f, "delivered ({how})"),
            Outcome::Held => f.write_str("held"),
            Outcome::Failed(reason) => write!(f, "not delivered ({reason})"),
        }
    }
}

/// The comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Outbound messages decided (in the selected range).
    pub decided: u64,
    pub delivered_now: u64,
    pub delivered_then: u64,
    /// (channel, current outcome, other outcome) → messages.
    pub flipped: BTreeMap<(String, Outcome, Outcome), u64>,
}

/// Folds `log` under both policies; compares the final outcome of every outbound message
/// decided in the range `since` selects.
pub fn compare(
    log: impl Iterator<Item = anyhow::Result<Logged>>,
    mut current: Fold,
    mut other: Fold,
    select: &Selection,
) -> anyhow::Result<Report> {
    // message id → (channel, current outcome, other outcome)
    let mut outcomes: BTreeMap<String, (String, Option<Outcome>, Option<Outcome>)> =
        BTreeMap::new();
    let mut outputs = Vec::new();
    for logged in log {
        let Logged { position, event } = logged?;
        let Ok(event): Result<Event, _> = event else {
            continue;
        };
        let counted = select
            .since
            .is_none_or(|since| since.includes(position, event.decision_time()));
        for (fold, current_side) in [(&mut current, true), (&mut other, false)] {
            outputs.clear();
            if fold.apply(&event, &mut outputs).is_err() {
                continue;
            }
            if !counted {
                continue;
            }
            for (message_id, outcome) in outputs.iter().filter_map(Outcome::of) {
                let entry = outcomes
                    .entry(message_id.to_owned())
                    .or_insert_with(|| (event.conversation.channel.to_string(), None, None));
                if current_side {
                    entry.1 = Some(outcome);
                } else {
                    entry.2 = Some(outcome);
                }
            }
        }
    }
    let mut report = Report::default();
    for (channel, now, then) in outcomes.into_values() {
        let (Some(now), Some(then)) = (now, then) else {
            continue;
        };
        report.decided += 1;
        report.delivered_now += u64::from(now.delivered());
        report.delivered_then += u64::from(then.delivered());
        if now != then {
            *report.flipped.entry((channel, now, then)).or_default() += 1;
        }
    }
    Ok(report)
}

pub fn run(args: WhatIfArgs) -> anyhow::Result<()> {
    let other = crate::load_policy(Some(&args.policy))?;
    let log = LiveLog::connect(&args.nats, "ventana-what-if")?;
    let (current, said) = log.policy(args.current.as_deref())?;
    eprintln!("current {said}");
    // Everything is folded (a decision depends on the history); --since selects what counts.
    let report = compare(
        log.input_events(args.select.conversation, Start::First),
        Fold::new(current),
        Fold::new(other),
        &args.select,
    )?;
    if args.json {
        let flipped: Vec<serde_json::Value> = report
            .flipped
            .iter()
            .map(|((channel, now, then), count)| {
                serde_json::json!({"channel": channel, "current": now.to_string(), "other": then.to_string(), "messages": count})
            })
            .collect();
        crate::outln!(
            "{}",
            serde_json::json!({
                "policy": args.policy.display().to_string(),
                "decided": report.decided,
                "delivered": {"current": report.delivered_now, "other": report.delivered_then},
                "flipped": flipped,
            })
        )?;
        return Ok(());
    }
    let change = report.delivered_then as i64 - report.delivered_now as i64;
    crate::outln!(
        "{} outbound messages decided; under {} {} would have been delivered ({} now): {}.",
        report.decided,
        args.policy.display(),
        report.delivered_then,
        report.delivered_now,
        match change {
            0 => "no change in deliveries".to_owned(),
            n if n > 0 => format!("{n} more delivered"),
            n => format!("{} fewer delivered", -n),
        }
    )?;
    if !report.flipped.is_empty() {
        crate::outln!("\nchanged decisions (messages, channel, now -> with the other policy):")?;
        for ((channel, now, then), count) in &report.flipped {
            crate::outln!("{count:>9}  {channel:<12} {now} -> {then}")?;
        }
    }
    Ok(())
}
