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
use ventana_core::{
    Acceptance, Channel, Conversation, ConversationKey, ConversationToken, Event, EventBody,
    Origin, Policy, Rule, Timestamp, View,
};
use ventana_notifier::{Output, OutputBody, Source, fold_event};

use crate::live::ConversationArg;
use crate::log::{LiveLog, Logged, Position, events, file_events, valid};
use crate::table::{describe_view, last_view, sender_and_kind};

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
    /// The policy the log was decided under; the defaults apply without one.
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

/// Who a row is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    Customer,
    Business,
    Platform,
    Operator,
    /// A deadline passed (a window closed, an alarm rang).
    Deadline,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Customer => "customer",
            Actor::Business => "business",
            Actor::Platform => "platform",
            Actor::Operator => "operator",
            Actor::Deadline => "deadline",
        }
    }
}

/// What became of one outbound message, as `explain` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Held,
    NotDelivered,
}

impl Outcome {
    /// `delivered`, `held`, `not delivered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Held => "held",
            Self::NotDelivered => "not delivered",
        }
    }

    /// The CSS class of the page (`verdict-delivered`, `verdict-held`, `verdict-failed`).
    pub fn class(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Held => "held",
            Self::NotDelivered => "failed",
        }
    }
}

/// What was decided about one outbound message, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruling {
    pub message_id: String,
    pub outcome: Outcome,
    /// e.g. `response`, `message_tag human_agent`, or the failure reason.
    pub how: String,
    /// The rule that decided it.
    pub rule: Rule,
    pub detail: Option<String>,
    pub suggestion: Option<String>,
}

impl Ruling {
    pub fn delivered(&self) -> bool {
        self.outcome == Outcome::Delivered
    }

    pub fn failed(&self) -> bool {
        self.outcome == Outcome::NotDelivered
    }

    fn of(output: &Output, channel: &Channel) -> Option<Self> {
        let decided = output.body.decision()?;
        let message_id = decided.message_id().to_owned();
        Some(match &output.body {
            OutputBody::OutboundAccepted {
                messaging_type,
                tag,
                comment_id,
                window_ends_at,
                ..
            } => Ruling {
                message_id,
                outcome: Outcome::Delivered,
                how: match tag {
                    Some(tag) => format!("{} {}", messaging_type.as_str(), tag.as_str()),
                    None => messaging_type.as_str().to_owned(),
                },
                rule: Acceptance {
                    messaging_type: *messaging_type,
                    tag: *tag,
                    comment_id: comment_id.clone(),
                    window_ends_at: *window_ends_at,
                }
                .rule(channel),
                detail: None,
                suggestion: None,
            },
            OutputBody::OutboundHeld { until, .. } => Ruling {
                message_id,
                outcome: Outcome::Held,
                how: format!("until {until}"),
                rule: Rule::R11,
                detail: Some(format!(
                    "{}: the private reply has been used; the message waits until the customer writes a direct message, at the latest until {until}.",
                    Rule::R11
                )),
                suggestion: None,
            },
            OutputBody::DeliveryFailed {
                source,
                reason,
                detail,
                suggestion,
                ..
            } => Ruling {
                message_id,
                outcome: Outcome::NotDelivered,
                how: reason.as_str().to_owned(),
                rule: match source {
                    Source::Platform => Rule::R13,
                    Source::Policy => reason.rule(),
                },
                detail: Some(detail.clone()),
                suggestion: Some(suggestion.as_str().to_owned()),
            },
            _ => return None,
        })
    }
}

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub at: Timestamp,
    /// Where the event is in the log (`None` for a deadline).
    pub position: Option<Position>,
    pub actor: Actor,
    pub what: String,
    pub event_id: Option<String>,
    pub duplicate: bool,
    pub before: View,
    pub after: View,
    pub decisions: Vec<Ruling>,
    /// Auto-reply requests and warnings.
    pub notes: Vec<String>,
}

/// One conversation's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    pub key: Option<ConversationKey>,
    pub token: Option<ConversationToken>,
    pub rows: Vec<Row>,
    /// Log entries of this conversation that are not valid events.
    pub invalid: Vec<String>,
}

fn describe_event(event: &Event) -> (Actor, String) {
    match &event.body {
        EventBody::CustomerMessage => (Actor::Customer, "customer message".to_owned()),
        EventBody::CustomerComment { comment_id } => {
            (Actor::Customer, format!("customer comment {comment_id}"))
        }
        EventBody::OutboundMessage(out) => {
            let tag = out
                .tag
                .map_or(String::new(), |t| format!(" (tag {})", t.as_str()));
            let echo = if out.origin == Origin::Echo {
                ", sent outside ventana (echo)"
            } else {
                ""
            };
            (
                Actor::Business,
                format!("{} {}{tag}{echo}", sender_and_kind(out), event.id),
            )
        }
        EventBody::DeliveryStatus(status) => (
            Actor::Platform,
            match &status.error {
                Some(error) => format!(
                    "{} {} (error {}{})",
                    status.message_id,
                    status.status.as_str(),
                    error.code,
                    error
                        .title
                        .as_deref()
                        .map_or(String::new(), |t| format!(": {t}"))
                ),
                None => format!("{} {}", status.message_id, status.status.as_str()),
            },
        ),
        EventBody::ConversationClosed { .. } => (Actor::Operator, "conversation closed".to_owned()),
        EventBody::ConversationReopened { .. } => {
            (Actor::Operator, "conversation reopened".to_owned())
        }
        EventBody::Tick { .. } => (Actor::Deadline, "tick".to_owned()),
    }
}

fn note(output: &Output) -> Option<String> {
    match &output.body {
        OutputBody::AutoReply { trigger, reply_by } => Some(format!(
            "auto-reply requested ({}), reply by {}",
            trigger.as_str(),
            reply_by.map_or("-".to_owned(), |t| t.to_string())
        )),
        OutputBody::WindowClosing {
            closes_at,
            customer_waiting,
        } => Some(format!(
            "warning: the window closes at {closes_at}{}",
            if *customer_waiting {
                " and the customer is waiting"
            } else {
                ""
            }
        )),
        _ => None,
    }
}

/// What a deadline row says happened.
fn describe_deadline(before: View, after: View, outputs: &[&Output]) -> String {
    if before.window != after.window || before.window_ends_at != after.window_ends_at {
        if let Some(end) = before
            .window_ends_at
            .filter(|_| before.window.as_str() != "none")
        {
            return format!("the {} window closed at {end}", before.window.as_str());
        }
        return "the window changed".to_owned();
    }
    let mut what = Vec::new();
    for output in outputs {
        match &output.body {
            OutputBody::DeliveryFailed { .. } => what.push("a held message's hold expired"),
            OutputBody::WindowClosing { .. } => what.push("the window is about to close"),
            OutputBody::AutoReply { trigger, .. } if trigger.as_str() == "agent_delayed" => {
                what.push("the customer has waited the agent delay")
            }
            _ => {}
        }
    }
    if what.is_empty() {
        "a deadline passed".to_owned()
    } else {
        what.join("; ")
    }
}

impl Timeline {
    /// Folds the events of `token` in `log` (other conversations' events are skipped).
    pub fn build(
        log: impl Iterator<Item = anyhow::Result<Logged>>,
        token: ConversationToken,
        policy: &Policy,
    ) -> anyhow::Result<Self> {
        let mut timeline = Timeline {
            token: Some(token),
            ..Timeline::default()
        };
        let mut conversation: Option<Conversation> = None;
        let mut outputs = Vec::new();
        for logged in log {
            let Logged { position, event } = logged?;
            let event = match valid(event, policy) {
                Ok(event) if event.conversation.token() == token => event,
                Ok(_) => continue,
                Err(error) => {
                    // Only the stream is read by subject: a bad line of a file may belong to
                    // any conversation.
                    if matches!(position, Position::Sequence(_)) {
                        timeline.invalid.push(format!("{position}: {error}"));
                    }
                    continue;
                }
            };
            let conversation =
                conversation.get_or_insert_with(|| Conversation::new(event.conversation.clone()));
            timeline.key = Some(event.conversation.clone());
            let mut view = conversation.view();
            outputs.clear();
            let applied = fold_event(conversation, &event, policy, &mut outputs);
            // Deadlines that passed before the event: one row per deadline.
            let mut start = 0;
            while start < outputs.len() && outputs[start].caused_by != event.id {
                let cause = &outputs[start].caused_by;
                let end = outputs[start..]
                    .iter()
                    .position(|o| &o.caused_by != cause)
                    .map_or(outputs.len(), |n| start + n);
                let group: Vec<&Output> = outputs[start..end].iter().collect();
                let after = last_view(&group).unwrap_or(view);
                timeline.rows.push(Row {
                    at: group[0].occurred_at,
                    position: None,
                    actor: Actor::Deadline,
                    what: describe_deadline(view, after, &group),
                    event_id: None,
                    duplicate: false,
                    before: view,
                    after,
                    decisions: group
                        .iter()
                        .filter_map(|o| Ruling::of(o, &event.conversation.channel))
                        .collect(),
                    notes: group.iter().filter_map(|o| note(o)).collect(),
                });
                view = after;
                start = end;
            }
            if matches!(event.body, EventBody::Tick { .. }) {
                continue; // a logged tick shows as the deadlines it fired
            }
            let own: Vec<&Output> = outputs[start..].iter().collect();
            let (actor, what) = describe_event(&event);
            timeline.rows.push(Row {
                at: event.decision_time(),
                position: Some(position),
                actor,
                what,
                event_id: Some(event.id.clone()),
                duplicate: applied == ventana_core::Applied::Duplicate,
                before: view,
                after: conversation.view(),
                decisions: own
                    .iter()
                    .filter_map(|o| Ruling::of(o, &event.conversation.channel))
                    .collect(),
                notes: own.iter().filter_map(|o| note(o)).collect(),
            });
        }
        Ok(timeline)
    }

    /// The rows deciding `message_id`.
    pub fn decisions_of(&self, message_id: &str) -> Vec<(&Row, &Ruling)> {
        self.rows
            .iter()
            .flat_map(|row| row.decisions.iter().map(move |d| (row, d)))
            .filter(|(_, d)| d.message_id == message_id)
            .collect()
    }
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
        match ruling.outcome {
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

/// Writes the timeline as a table: TIME, WHO, EVENT, STATE BEFORE -> AFTER, DECISION.
fn print_table(timeline: &Timeline, palette: Palette, out: &mut impl Write) -> io::Result<()> {
    const HEADER: [&str; 5] = [
        "TIME",
        "WHO",
        "EVENT",
        "STATE BEFORE -> AFTER",
        "DECISIONS AND NOTES",
    ];
    let cells: Vec<[String; 5]> = timeline
        .rows
        .iter()
        .map(|row| {
            let state = if row.before == row.after {
                describe_view(row.after)
            } else {
                format!(
                    "{} -> {}",
                    describe_view(row.before),
                    describe_view(row.after)
                )
            };
            let mut what = row.what.clone();
            if row.duplicate {
                what.push_str(" (duplicate, ignored: R14)");
            }
            [
                row.at.to_string(),
                row.actor.as_str().to_owned(),
                what,
                state,
                String::new(),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let pad = |text: &str, width: usize| {
        format!(
            "{text}{}",
            " ".repeat(width.saturating_sub(text.chars().count()) + 2)
        )
    };
    let header: String = HEADER.iter().zip(widths).map(|(h, w)| pad(h, w)).collect();
    writeln!(
        out,
        "{}",
        palette.paint(Style::new().bold(), header.trim_end())
    )?;
    for (row, cell) in timeline.rows.iter().zip(&cells) {
        let mut line = String::new();
        line.push_str(&pad(&cell[0], widths[0]));
        line.push_str(&palette.paint(palette.actor(row.actor), &pad(&cell[1], widths[1])));
        line.push_str(&pad(&cell[2], widths[2]));
        line.push_str(&pad(&cell[3], widths[3]));
        let mut notes: Vec<String> = row
            .decisions
            .iter()
            .map(|d| palette.paint(palette.decision(d), &decision_text(d)))
            .collect();
        notes.extend(row.notes.iter().cloned());
        line.push_str(&notes.join("; "));
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
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
            row.at,
            decision.how,
            decision.rule
        )?;
        if let Some(detail) = &decision.detail {
            writeln!(out, "  why: {detail}")?;
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
    let policy = crate::load_policy(args.policy.as_deref())?;
    let token = ConversationArg::parse(&args.conversation)?.token();
    let timeline = match &args.input {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            Timeline::build(file_events(BufReader::new(file)), token, &policy)?
        }
        None => {
            let log = LiveLog::connect(&args.nats, "ventana-explain")?;
            Timeline::build(events(log.input(Some(token), Start::First)), token, &policy)?
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
    if let Some(message_id) = &args.message {
        print_message(&timeline, message_id, palette, &mut out)?;
    }
    print_table(&timeline, palette, &mut out)?;
    for invalid in &timeline.invalid {
        writeln!(out, "not an event (in the DLQ): {invalid}")?;
    }
    out.flush()?;
    if let Some(path) = &args.html {
        std::fs::write(path, crate::html::page(&timeline))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
