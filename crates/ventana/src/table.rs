//! `--format table`: a timeline a person can read — time, conversation, event, state after,
//! and what was decided or asked for.

use std::io::{self, Write};

use ventana_core::{Event, EventBody, MessageKind, Origin, Outbound, Sender, View};
use ventana_notifier::{Fold, Output, OutputBody};

use crate::grid::{self, short_time};

#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<[String; 5]>,
}

fn describe_event(event: &Event) -> String {
    let what = match &event.body {
        EventBody::CustomerMessage => "customer message".to_owned(),
        EventBody::CustomerComment { comment_id } => format!("customer comment {comment_id}"),
        EventBody::OutboundMessage(out) => {
            let sender_kind = sender_and_kind(out);
            let echo = if out.origin == Origin::Echo {
                " (echo)"
            } else {
                ""
            };
            let tag = out
                .tag
                .map_or(String::new(), |t| format!(" tag={}", t.as_str()));
            format!("{sender_kind}{tag}{echo}")
        }
        EventBody::DeliveryStatus(s) => match &s.error {
            Some(e) => format!(
                "status {} of {} (error {})",
                s.status.as_str(),
                s.message_id,
                e.code
            ),
            None => format!("status {} of {}", s.status.as_str(), s.message_id),
        },
        EventBody::ConversationClosed { .. } => "closed by operator".to_owned(),
        EventBody::ConversationReopened { .. } => "reopened by operator".to_owned(),
        EventBody::Tick { .. } => "tick".to_owned(),
    };
    format!("{what} [{}]", event.id)
}

/// `agent message`, `automation template`, ...
pub(crate) fn sender_and_kind(out: &Outbound) -> String {
    let kind = match out.kind {
        MessageKind::Message => "message",
        MessageKind::Template => "template",
        MessageKind::PrivateReply => "private reply",
        MessageKind::CommentReply => "comment reply",
    };
    let sender = match out.sender {
        Sender::Agent => "agent",
        Sender::Automation => "automation",
    };
    format!("{sender} {kind}")
}

/// `open (standard until 2026-03-03 10:00:00)`.
pub(crate) fn describe_view(view: View) -> String {
    match view.window_ends_at {
        Some(end) => format!(
            "{} ({} until {})",
            view.state.as_str(),
            view.window.as_str(),
            short_time(end)
        ),
        None => view.state.as_str().to_owned(),
    }
}

fn describe_output(output: &Output) -> Option<String> {
    Some(match &output.body {
        OutputBody::StateChanged { .. } => return None,
        OutputBody::OutboundAccepted {
            messaging_type,
            tag,
            ..
        } => match tag {
            Some(tag) => format!("delivered: {} {}", messaging_type.as_str(), tag.as_str()),
            None => format!("delivered: {}", messaging_type.as_str()),
        },
        OutputBody::OutboundHeld { until, .. } => format!("held until {}", short_time(*until)),
        OutputBody::DeliveryFailed {
            reason,
            detail,
            suggestion,
            ..
        } => format!(
            "NOT DELIVERED: {} — {detail} (suggestion: {})",
            reason.as_str(),
            suggestion.as_str()
        ),
        OutputBody::AutoReply { trigger, .. } => {
            format!("auto-reply requested: {}", trigger.as_str())
        }
        OutputBody::WindowClosing {
            closes_at,
            customer_waiting,
        } => format!(
            "warning: window closes at {}{}",
            short_time(*closes_at),
            if *customer_waiting {
                ", customer waiting"
            } else {
                ""
            }
        ),
    })
}

/// The view the last `state_changed` among `outputs` announces.
pub(crate) fn last_view(outputs: &[&Output]) -> Option<View> {
    outputs.iter().rev().find_map(|o| match &o.body {
        OutputBody::StateChanged {
            to,
            window,
            window_ends_at,
            session,
            ..
        } => Some(View {
            state: *to,
            window: *window,
            window_ends_at: *window_ends_at,
            session: *session,
        }),
        _ => None,
    })
}

fn state_after(outputs: &[&Output]) -> Option<String> {
    last_view(outputs).map(describe_view)
}

impl Table {
    fn push_group(
        &mut self,
        time: String,
        conversation: String,
        event: String,
        state: String,
        outputs: &[&Output],
    ) {
        let decisions: Vec<String> = outputs.iter().filter_map(|o| describe_output(o)).collect();
        self.rows
            .push([time, conversation, event, state, decisions.join("; ")]);
    }

    /// Rows for the deadlines that fired before `event`, then one for the event itself.
    pub(crate) fn event(
        &mut self,
        event: &Event,
        duplicate: bool,
        outputs: &[Output],
        fold: &Fold,
    ) {
        self.deadlines_where(outputs, |o| o.caused_by != event.id);
        let own: Vec<&Output> = outputs.iter().filter(|o| o.caused_by == event.id).collect();
        let state = fold
            .conversation(&event.conversation)
            .map(|c| describe_view(c.view()))
            .unwrap_or_default();
        self.push_group(
            short_time(event.decision_time()),
            event.conversation.to_string(),
            describe_event(event),
            state_after(&own).unwrap_or(state),
            &own,
        );
        if duplicate {
            let row = self.rows.last_mut().expect("just pushed");
            row[4].insert_str(0, "duplicate, ignored (R14); ");
        }
    }

    /// Rows for deadlines fired by `--until`.
    pub(crate) fn deadlines(&mut self, outputs: &[Output], _fold: &Fold) {
        self.deadlines_where(outputs, |_| true);
    }

    fn deadlines_where(&mut self, outputs: &[Output], keep: impl Fn(&Output) -> bool) {
        let kept: Vec<&Output> = outputs.iter().filter(|o| keep(o)).collect();
        let same_cause = |a: &&Output, b: &&Output| {
            a.caused_by == b.caused_by && a.conversation == b.conversation
        };
        for group in kept.chunk_by(same_cause) {
            let first = group[0];
            self.push_group(
                short_time(first.occurred_at),
                first.conversation.to_string(),
                "deadline passed".to_owned(),
                state_after(group).unwrap_or_default(),
                group,
            );
        }
    }

    /// Prints the rows in 120 columns: the conversation as a heading when there is one,
    /// as `#N` (with a legend) when there are several; what was decided below each row.
    pub(crate) fn print(&self, out: &mut impl Write) -> io::Result<()> {
        let mut conversations: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !conversations.contains(&row[1].as_str()) {
                conversations.push(&row[1]);
            }
        }
        let several = conversations.len() > 1;
        for (n, conversation) in conversations.iter().enumerate() {
            if several {
                writeln!(out, "#{}  {conversation}", n + 1)?;
            } else {
                writeln!(out, "{conversation}")?;
            }
        }
        writeln!(out)?;
        let rows: Vec<grid::Row> = self
            .rows
            .iter()
            .map(|row| {
                let mut cells = vec![row[0].clone()];
                if several {
                    let n = conversations.iter().position(|c| *c == row[1]).unwrap_or(0);
                    cells.push(format!("#{}", n + 1));
                }
                cells.extend([row[2].clone(), row[3].clone()]);
                let notes: Vec<String> = row[4]
                    .split("; ")
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                grid::Row {
                    note_styles: vec![0; notes.len()],
                    cells,
                    notes,
                }
            })
            .collect();
        let plain: grid::Paint<'_> = &|_, text| text.to_owned();
        if several {
            grid::print(
                out,
                &["TIME", "CONV", "EVENT", "STATE AFTER"],
                &[19, 4, 32],
                &rows,
                plain,
                plain,
            )
        } else {
            grid::print(
                out,
                &["TIME", "EVENT", "STATE AFTER"],
                &[19, 40],
                &rows,
                plain,
                plain,
            )
        }
    }
}
