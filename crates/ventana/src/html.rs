//! `ventana explain --html`: one self-contained page (no scripts, no external resources)
//! with an SVG timeline — windows as bands, messages as marks, failures highlighted — and
//! the table of events below it.

use std::fmt::Write;

use ventana_core::{Timestamp, View, Window};

use crate::table::describe_view;
use crate::timeline::{Actor, Row, Timeline};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const BAND_TOP: f64 = 30.0;
const BAND_HEIGHT: f64 = 36.0;
const HEIGHT: f64 = 280.0;

const STYLE: &str = r#"
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d232a; }
h1 { font-size: 20px; margin: 0 0 4px; }
.summary { color: #4a5560; margin: 0 0 16px; }
svg { width: 100%; max-width: 1100px; height: auto; border: 1px solid #d8dee4; background: #fbfcfd; }
.lane { font-size: 12px; fill: #4a5560; }
.axis line { stroke: #c5ccd3; }
.axis text { font-size: 11px; fill: #4a5560; text-anchor: middle; }
.band { stroke-width: 1; }
.window-standard { fill: #cdebd3; stroke: #5aa469; }
.window-human_agent { fill: #fde8c4; stroke: #d9912b; }
.window-private_reply { fill: #e6dcf5; stroke: #8a63c9; }
.window-unrestricted { fill: #e3e7eb; stroke: #9aa5b1; }
.mark { stroke: #1d232a; stroke-width: 1; }
.mark.customer { fill: #2b7bb9; }
.mark.business.delivered { fill: #3c9d4e; }
.mark.business.held { fill: #e2a72e; }
.mark.business.undecided { fill: #ffffff; }
.mark.failed { fill: #d62828; stroke: #d62828; stroke-width: 4; }
.mark.platform, .mark.operator { fill: #8a63c9; }
.mark.deadline { stroke: #e2a72e; stroke-width: 2; }
table { border-collapse: collapse; margin-top: 20px; width: 100%; max-width: 1100px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e7eb; vertical-align: top; }
th { background: #f1f3f5; }
tr.failed td { background: #fde2e2; }
tr.deadline td { color: #7a5a12; }
.verdict-failed { color: #b00020; font-weight: 600; }
.verdict-delivered { color: #2f7d3b; }
.verdict-held { color: #7a5a12; }
.legend text { font-size: 11px; fill: #4a5560; }
"#;

/// Escapes text for HTML and SVG.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Maps instants to x coordinates.
struct Scale {
    from: i64,
    to: i64,
}

impl Scale {
    fn x(&self, at: Timestamp) -> f64 {
        let span = (self.to - self.from).max(1) as f64;
        LEFT + (at.unix_nanos() - self.from) as f64 / span * (WIDTH - LEFT - RIGHT)
    }
}

fn window_class(window: Window) -> Option<&'static str> {
    match window.as_str() {
        "none" => None,
        name => Some(name),
    }
}

/// Contiguous stretches of one window: (window, from, until).
fn bands(rows: &[Row], end: Timestamp) -> Vec<(Window, Timestamp, Timestamp)> {
    let mut bands: Vec<(Window, Timestamp, Timestamp)> = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let View {
            window,
            window_ends_at,
            ..
        } = row.after;
        if window_class(window).is_none() {
            continue;
        }
        let next = rows.get(index + 1).map_or(end, |r| r.at);
        let until = window_ends_at.map_or(next, |closes| closes.min(next));
        if until <= row.at {
            continue;
        }
        match bands.last_mut() {
            Some(last) if last.0 == window && last.2 == row.at => last.2 = until,
            _ => bands.push((window, row.at, until)),
        }
    }
    bands
}

fn lane_y(actor: Actor) -> f64 {
    match actor {
        Actor::Customer => 110.0,
        Actor::Business => 150.0,
        Actor::Platform | Actor::Operator => 190.0,
        Actor::Deadline => 230.0,
    }
}

fn svg(timeline: &Timeline, out: &mut String) {
    let rows = &timeline.rows;
    let first = rows.first().map_or(0, |r| r.at.unix_nanos());
    let last = rows
        .iter()
        .flat_map(|r| [Some(r.at), r.after.window_ends_at])
        .flatten()
        .map(Timestamp::unix_nanos)
        .max()
        .unwrap_or(first);
    let pad = ((last - first) / 50).max(60_000_000_000);
    let scale = Scale {
        from: first - pad,
        to: last + pad,
    };
    let end = Timestamp::from_unix_nanos(scale.to);
    let _ = write!(
        out,
        r#"<svg id="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="timeline of the conversation">"#
    );
    // Axis: five instants.
    out.push_str(r#"<g class="axis">"#);
    for i in 0..5 {
        let at = Timestamp::from_unix_nanos(scale.from + (scale.to - scale.from) / 5 * i);
        let x = scale.x(at);
        let label = at.to_string();
        let label = label.get(5..16).unwrap_or(&label).replace('T', " ");
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="20" x2="{x:.1}" y2="250"/><text x="{x:.1}" y="268">{}</text>"#,
            escape(&label)
        );
    }
    out.push_str("</g>");
    for (label, y) in [
        ("windows", BAND_TOP + BAND_HEIGHT / 2.0 + 4.0),
        ("customer", lane_y(Actor::Customer) + 4.0),
        ("business", lane_y(Actor::Business) + 4.0),
        ("platform", lane_y(Actor::Platform) + 4.0),
        ("deadlines", lane_y(Actor::Deadline) + 4.0),
    ] {
        let _ = write!(out, r#"<text class="lane" x="8" y="{y}">{label}</text>"#);
    }
    out.push_str(r#"<g class="bands">"#);
    for (window, from, until) in bands(rows, end) {
        let class = window_class(window).unwrap_or("none");
        let (x1, x2) = (scale.x(from), scale.x(until));
        let _ = write!(
            out,
            r#"<rect class="band window-{class}" data-window="{class}" data-from="{from}" data-until="{until}" x="{x1:.1}" y="{BAND_TOP}" width="{:.1}" height="{BAND_HEIGHT}"><title>{class} window from {from} until {until}</title></rect>"#,
            (x2 - x1).max(1.0)
        );
    }
    out.push_str("</g><g class=\"marks\">");
    for row in rows {
        let x = scale.x(row.at);
        let y = lane_y(row.actor);
        let title = escape(&format!(
            "{} — {}{}",
            row.at,
            row.what,
            row.decisions
                .iter()
                .map(|d| format!("; {} {} [{}]", d.outcome.as_str(), d.how, d.rule))
                .collect::<String>()
        ));
        let id = escape(row.event_id.as_deref().unwrap_or(""));
        let failed = row.decisions.iter().any(|d| d.failed());
        match row.actor {
            Actor::Customer => {
                let _ = write!(
                    out,
                    r#"<circle class="mark customer" data-id="{id}" cx="{x:.1}" cy="{y}" r="7"><title>{title}</title></circle>"#
                );
            }
            Actor::Business if failed => {
                let _ = write!(
                    out,
                    r#"<path class="mark business failed" data-id="{id}" d="M{:.1},{} l16,16 m0,-16 l-16,16"><title>{title}</title></path>"#,
                    x - 8.0,
                    y - 8.0
                );
            }
            Actor::Business => {
                let state = match row.decisions.first() {
                    Some(d) if d.delivered() => "delivered",
                    Some(_) => "held",
                    None => "undecided",
                };
                let _ = write!(
                    out,
                    r#"<rect class="mark business {state}" data-id="{id}" x="{:.1}" y="{}" width="12" height="12"><title>{title}</title></rect>"#,
                    x - 6.0,
                    y - 6.0
                );
            }
            Actor::Platform | Actor::Operator => {
                let class = if failed { "failed" } else { row.actor.as_str() };
                let _ = write!(
                    out,
                    r#"<polygon class="mark {class}" data-id="{id}" points="{:.1},{} {:.1},{} {:.1},{} {:.1},{}"><title>{title}</title></polygon>"#,
                    x,
                    y - 7.0,
                    x + 7.0,
                    y,
                    x,
                    y + 7.0,
                    x - 7.0,
                    y
                );
            }
            Actor::Deadline => {
                let class = if failed {
                    "deadline failed"
                } else {
                    "deadline"
                };
                let _ = write!(
                    out,
                    r#"<line class="mark {class}" x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}"><title>{title}</title></line>"#,
                    y - 9.0,
                    y + 9.0
                );
            }
        }
    }
    out.push_str("</g></svg>");
}

fn table(timeline: &Timeline, out: &mut String) {
    out.push_str(
        r#"<table id="events"><thead><tr><th>time</th><th>who</th><th>event</th><th>state before</th><th>state after</th><th>decisions and notes</th></tr></thead><tbody>"#,
    );
    for row in &timeline.rows {
        let failed = row.decisions.iter().any(|d| d.failed());
        let mut class = row.actor.as_str().to_owned();
        if failed {
            class.push_str(" failed");
        }
        let mut notes = String::new();
        for decision in &row.decisions {
            let verdict = decision.outcome.class();
            let _ = write!(
                notes,
                r#"<div class="decision" data-message="{}"><span class="verdict-{verdict}">{} {}</span>: {} [{}]"#,
                escape(&decision.message_id),
                escape(&decision.message_id),
                decision.outcome.as_str(),
                escape(&decision.how),
                decision.rule
            );
            if let Some(detail) = &decision.detail {
                let _ = write!(notes, r#"<div class="detail">{}</div>"#, escape(detail));
            }
            if let Some(suggestion) = decision.suggestion.as_deref().filter(|s| *s != "none") {
                let _ = write!(
                    notes,
                    r#"<div class="suggestion">suggestion: {}</div>"#,
                    escape(suggestion)
                );
            }
            notes.push_str("</div>");
        }
        for note in &row.notes {
            let _ = write!(notes, "<div>{}</div>", escape(note));
        }
        let duplicate = if row.duplicate {
            " (duplicate, ignored: R14)"
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<tr class="{class}"><td>{}</td><td>{}</td><td>{}{duplicate}</td><td>{}</td><td>{}</td><td>{notes}</td></tr>"#,
            row.at,
            row.actor.as_str(),
            escape(&row.what),
            escape(&describe_view(row.before)),
            escape(&describe_view(row.after)),
        );
    }
    out.push_str("</tbody></table>");
}

/// The whole page.
pub fn page(timeline: &Timeline) -> String {
    let title = timeline
        .key
        .as_ref()
        .map_or_else(|| "conversation".to_owned(), ToString::to_string);
    let decisions = timeline.rows.iter().flat_map(|r| &r.decisions);
    let delivered = decisions.clone().filter(|d| d.delivered()).count();
    let failed = decisions.filter(|d| d.failed()).count();
    let now = timeline
        .rows
        .last()
        .map_or_else(|| "none".to_owned(), |r| describe_view(r.after));
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ventana: {title}</title><style>{STYLE}</style></head><body><header><h1>{title}</h1><p class="summary">{} events; {delivered} messages delivered, <span id="failures">{failed}</span> not delivered; last state: {}.</p></header>"#,
        timeline
            .rows
            .iter()
            .filter(|r| r.position.is_some())
            .count(),
        escape(&now),
        title = escape(&title),
    );
    svg(timeline, &mut out);
    table(timeline, &mut out);
    out.push_str("</body></html>\n");
    out
}
