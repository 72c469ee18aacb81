//! `ventana explain`: one conversation's history for people — every event with the state
//! before and after, the window and when it closes, every decision with its rule, reason
//! and suggestion; as a terminal table or a self-contained HTML page with an SVG timeline.

use std::fs::File;
use std::io::{self, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use anyhow::Context;
use ventana_bus::NatsOptions;
use ventana_bus::client::Start;

use crate::grid::{self, short_time};
use crate::log::{LiveLog, file_events, file_policy};
use crate::table::describe_view;
use crate::timeline::{Actor, Outcome, Ruling, Timeline};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// CHANNEL/ACCOUNT/CHANNEL_ID/CONTACT_ID or its token.
    #[arg(value_name = "KEY|TOKEN")]
    pub conversation: String,
    /// Explain this outbound message first: its decision, the rule, and the state it met.
    #[arg(long, value_name = "ID")]
    pub message: Option<String>,
    /// Read the events from this JSONL file instead of the live log.
    #[arg(long, value_name = "FILE.jsonl")]
    pub input: Option<PathBuf>,
    /// The policy to fold with. Default: for the live log, the one ventanad published (the
    /// policy it decides with); for --input, the defaults. The output says which.
    #[arg(long, env = "VENTANA_POLICY", value_name = "FILE.toml")]
    pub policy: Option<PathBuf>,
    /// Also write a self-contained HTML page with an SVG timeline to this file.
    #[arg(long, value_name = "FILE.html")]
    pub html: Option<PathBuf>,
    /// Colours: auto (when stdout is a terminal), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    #[command(flatten)]
    pub nats: NatsOptions,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Styles for the terminal, or none.
#[derive(Clone, Copy, Debug)]
struct Palette {
    on: bool,
}

impl Palette {
    fn paint(&self, style: Style, text: &str) -> String {
        if self.on {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_owned()
        }
    }

    fn actor(&self, actor: Actor) -> Style {
        match actor {
            Actor::Customer => AnsiColor::Cyan.on_default(),
            Actor::Business => Style::new(),
            Actor::Platform => AnsiColor::Magenta.on_default(),
            Actor::Operator => AnsiColor::Blue.on_default(),
            Actor::Deadline => AnsiColor::Yellow.on_default(),
        }
    }

    fn decision(&self, ruling: &Ruling) -> Style {
        Self::outcome(ruling.outcome)
    }

    fn outcome(outcome: Outcome) -> Style {
        match outcome {
            Outcome::Delivered => AnsiColor::Green.on_default(),
            Outcome::Held => AnsiColor::Yellow.on_default(),
            Outcome::NotDelivered => AnsiColor::Red.on_default().bold(),
        }
    }
}

fn decision_text(decision: &Ruling) -> String {
    let mut text = format!(
        "{} {}: {} [{}]",
        decision.message_id,
        decision.outcome.as_str(),
        decision.how,
        decision.rule
    );
    if let Some(suggestion) = decision.suggestion.as_deref().filter(|s| *s != "none") {
        text.push_str(&format!(" suggestion: {suggestion}"));
    }
    text
}

/// `open (standard until ...)` when nothing changed, else `before -> after (window until ...)`.
fn describe_change(before: ventana_core::View, after: ventana_core::View) -> String {
    if before == after {
        describe_view(after)
    } else {
        format!("{} -> {}", before.state.as_str(), describe_view(after))
    }
}

/// Writes the timeline as a table (TIME, WHO, EVENT, STATE), each row's decisions and notes
/// below it, in 120 columns.
fn print_table(timeline: &Timeline, palette: Palette, out: &mut impl Write) -> io::Result<()> {
    // Note styles: plain notes, then each outcome's colour.
    const NOTE: usize = 0;
    let outcome_style = |outcome: Outcome| match outcome {
        Outcome::Delivered => 1,
        Outcome::Held => 2,
        Outcome::NotDelivered => 3,
    };
    let styles = [
        Style::new(),
        Palette::outcome(Outcome::Delivered),
        Palette::outcome(Outcome::Held),
        Palette::outcome(Outcome::NotDelivered),
    ];
    let rows: Vec<grid::Row> = timeline
        .rows
        .iter()
        .map(|row| {
            let mut notes = Vec::new();
            let mut note_styles = Vec::new();
            if row.duplicate {
                notes.push("duplicate, ignored (R14)".to_owned());
                note_styles.push(NOTE);
            }
            for decision in &row.decisions {
                note_styles.push(outcome_style(decision.outcome));
                notes.push(decision_text(decision));
            }
            for note in &row.notes {
                note_styles.push(NOTE);
                notes.push(note.clone());
            }
            grid::Row {
                cells: vec![
                    short_time(row.at),
                    row.actor.as_str().to_owned(),
                    row.what.clone(),
                    describe_change(row.before, row.after),
                ],
                notes,
                note_styles,
            }
        })
        .collect();
    let paint_cell: grid::Paint<'_> = &|column, text| {
        if column == 1 {
            let actor = Actor::ALL.into_iter().find(|actor| actor.as_str() == text);
            actor.map_or_else(
                || text.to_owned(),
                |a| palette.paint(palette.actor(a), text),
            )
        } else {
            text.to_owned()
        }
    };
    let paint_note: grid::Paint<'_> = &|style, text| palette.paint(styles[style], text);
    let header = ["TIME", "WHO", "EVENT", "STATE (BEFORE -> AFTER)"];
    grid::print(out, &header, &[19, 9, 36], &rows, paint_cell, paint_note)
}

/// Writes why `message_id` was decided as it was.
fn print_message(
    timeline: &Timeline,
    message_id: &str,
    palette: Palette,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let decided = timeline.decisions_of(message_id);
    anyhow::ensure!(
        !decided.is_empty(),
        "message {message_id} was not decided in this conversation's log"
    );
    for (row, decision) in decided {
        writeln!(
            out,
            "{} {} at {}: {} [{}]",
            palette.paint(Style::new().bold(), &format!("message {message_id}")),
            palette.paint(palette.decision(decision), decision.outcome.as_str()),
            short_time(row.at),
            decision.how,
            decision.rule
        )?;
        if let Some(detail) = &decision.detail {
            for (n, line) in grid::wrap(detail, grid::WIDTH - 7).iter().enumerate() {
                writeln!(out, "  {} {line}", if n == 0 { "why:" } else { "    " })?;
            }
        }
        if let Some(suggestion) = &decision.suggestion {
            writeln!(out, "  suggestion: {suggestion}")?;
        }
        writeln!(out, "  state then: {}", describe_view(row.before))?;
    }
    writeln!(out)?;
    Ok(())
}

pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let token = crate::args::conversation(&args.conversation)?.token();
    let (timeline, policy_said) = match &args.input {
        Some(path) => {
            let (policy, said) = file_policy(args.policy.as_deref())?;
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            let timeline = Timeline::build(file_events(BufReader::new(file)), token, &policy)?;
            (timeline, said)
        }
        None => {
            let log = LiveLog::connect(&args.nats, "ventana-explain")?;
            let (policy, said) = log.policy(args.policy.as_deref())?;
            let input = log.input_events(Some(token), Start::First);
            (Timeline::build(input, token, &policy)?, said)
        }
    };
    anyhow::ensure!(
        timeline.key.is_some(),
        "no events of conversation {} in the log",
        args.conversation
    );
    let palette = Palette {
        on: match args.color {
            ColorChoice::Auto => io::stdout().is_terminal(),
            ColorChoice::Always => true,
            ColorChoice::Never => false,
        },
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    if let Some(key) = &timeline.key {
        writeln!(
            out,
            "{}",
            palette.paint(Style::new().bold(), &format!("{key} ({token})"))
        )?;
    }
    writeln!(out, "{policy_said}")?;
    if let Some(message_id) = &args.message {
        print_message(&timeline, message_id, palette, &mut out)?;
    }
    print_table(&timeline, palette, &mut out)?;
    for invalid in &timeline.invalid {
        writeln!(out, "not an event (in the DLQ): {invalid}")?;
    }
    out.flush()?;
    if let Some(path) = &args.html {
        std::fs::write(path, crate::html::page(&timeline, args.message.as_deref()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
