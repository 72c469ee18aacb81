//! `ventana replay`: fold a JSONL log offline and print what the service would publish.

use std::io::{self, BufRead, Write};

use ventana_core::{Applied, Event, Policy, Timestamp};
use ventana_notifier::{Fold, Output};
use ventana_wire::{WireError, output_to_json, parse_event, snapshot_to_json};

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
) -> io::Result<ReplaySummary> {
    let mut fold = Fold::new(options.policy.clone());
    let mut summary = ReplaySummary::default();
    let mut outputs: Vec<Output> = Vec::new();
    let mut table = (options.format == Format::Table).then(Table::default);
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let number = index + 1;
        let event: Event = match parse_event(&line) {
            Ok(event) => event,
            Err(error) => {
                summary.invalid += 1;
                writeln!(err, "line {number}: {error}")?;
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
            Ok(Applied::Applied) => summary.events += 1,
            Ok(Applied::Duplicate) => summary.duplicates += 1,
            Err(invalid) => {
                summary.invalid += 1;
                writeln!(err, "line {number}: {}", WireError::from(invalid))?;
                continue;
            }
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
        summary.outputs += outputs.len() as u64;
        match table.as_mut() {
            Some(table) => table.deadlines(&outputs, &fold),
            None => print_json(&outputs, out)?,
        }
    }
    if let Some(table) = table {
        table.print(out)?;
    }
    if options.snapshots {
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
