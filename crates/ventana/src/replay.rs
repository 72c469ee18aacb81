//! `ventana replay`: fold a JSONL log offline and print what the service would publish.

use std::io::{self, BufRead, Write};

use crate::log::{Logged, Since, file_events};

use ventana_core::{Applied, Event, Policy, Timestamp};
use ventana_notifier::{Fold, Output};
use ventana_wire::{WireError, output_to_json, snapshot_to_json};

use crate::table::Table;

/// How outputs are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the contract).
    #[default]
    Json,
    /// A human-readable timeline: time, conversation, event, state, decision.
    Table,
}

#[derive(Clone, Debug, Default)]
pub struct ReplayOptions {
    pub policy: Policy,
    /// Fold only events decided at or before this instant, then fire every deadline up to it.
    pub until: Option<Timestamp>,
    /// Print only the outputs of events from this point on (everything is still folded).
    pub since: Option<Since>,
    /// Print no outputs, only the snapshots (`--at`).
    pub snapshots_only: bool,
    pub snapshots: bool,
    pub format: Format,
}

/// What a replay found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub events: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub outputs: u64,
}

/// Folds every line of `input`, printing outputs to `out` and invalid lines to `err` as
/// `line N: reason`. The same input always prints the same bytes.
pub fn replay(
    input: impl BufRead,
    options: &ReplayOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<ReplaySummary> {
    replay_log(file_events(input), options, out, err)
}

/// Folds a log (a file's lines or the stream's messages), printing outputs to `out` and
/// invalid entries to `err` as `line N: reason` / `sequence N: reason`.
pub fn replay_log(
    log: impl Iterator<Item = anyhow::Result<Logged>>,
    options: &ReplayOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<ReplaySummary> {
    let mut fold = Fold::new(options.policy.clone());
    let mut summary = ReplaySummary::default();
    let mut outputs: Vec<Output> = Vec::new();
    let mut table = (options.format == Format::Table).then(Table::default);
    for logged in log {
        let Logged { position, event } = logged?;
        let event: Event = match event {
            Ok(event) => event,
            Err(error) => {
                summary.invalid += 1;
                writeln!(err, "{position}: {error}")?;
                continue;
            }
        };
        if options
            .until
            .is_some_and(|until| event.decision_time() > until)
        {
            continue;
        }
        outputs.clear();
        let applied = fold.apply(&event, &mut outputs);
        match applied {
            Ok(Applied::New) => summary.events += 1,
            Ok(Applied::Duplicate) => summary.duplicates += 1,
            Err(invalid) => {
                summary.invalid += 1;
                writeln!(err, "{position}: {}", WireError::from(invalid))?;
                continue;
            }
        }
        let shown = !options.snapshots_only
            && options
                .since
                .is_none_or(|since| since.includes(position, event.decision_time()));
        if !shown {
            continue;
        }
        summary.outputs += outputs.len() as u64;
        match table.as_mut() {
            Some(table) => table.event(&event, applied == Ok(Applied::Duplicate), &outputs, &fold),
            None => print_json(&outputs, out)?,
        }
    }
    if let Some(until) = options.until {
        outputs.clear();
        fold.advance_all(until, &mut outputs);
        if !options.snapshots_only {
            summary.outputs += outputs.len() as u64;
            match table.as_mut() {
                Some(table) => table.deadlines(&outputs, &fold),
                None => print_json(&outputs, out)?,
            }
        }
    }
    if let Some(table) = table {
        table.print(out)?;
    }
    if options.snapshots || options.snapshots_only {
        for snapshot in fold.snapshots() {
            writeln!(out, "{}", snapshot_to_json(&snapshot))?;
        }
    }
    out.flush()?;
    Ok(summary)
}

fn print_json(outputs: &[Output], out: &mut impl Write) -> io::Result<()> {
    for output in outputs {
        writeln!(out, "{}", output_to_json(output))?;
    }
    Ok(())
}
