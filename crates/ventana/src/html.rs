//! `ventana explain --html`: one self-contained page (no scripts, no external resources)
//! with an SVG timeline — windows as bands, messages as marks, failures highlighted — and
//! the table of events below it.

use std::fmt::Write;

use ventana_core::{Timestamp, View, Window};

use crate::grid::short_time;
use crate::table::describe_view;
use crate::timeline::{Actor, Row, Timeline};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
/// Each kind of window has a row of its own: the standard window, the human-agent
/// extension, the private-reply allowance (and the unrestricted custom channels).
const BAND_TOP: f64 = 16.0;
const BAND_HEIGHT: f64 = 20.0;
const BAND_GAP: f64 = 4.0;
const HEIGHT: f64 = 300.0;
/// Marks closer than this in one lane are stacked, so none hides another.
const MARK_ROOM: f64 = 15.0;

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
#legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 8px 0 0; max-width: 1100px; font-size: 12px; color: #4a5560; }
#legend .key { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
#legend svg { width: 16px; height: 16px; border: none; background: none; }
.swatch { display: inline-block; width: 22px; height: 12px; border: 1px solid; }
.swatch.window-standard { background: #cdebd3; border-color: #5aa469; }
.swatch.window-human_agent { background: #fde8c4; border-color: #d9912b; }
.swatch.window-private_reply { background: #e6dcf5; border-color: #8a63c9; }
.time { white-space: nowrap; }
#verdict { border-left: 4px solid currentColor; padding: 4px 12px; margin: 0 0 16px; max-width: 1100px; }
#verdict h2 { font-size: 16px; margin: 4px 0; }
#verdict p { margin: 2px 0; color: #1d232a; font-weight: normal; }
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

/// The row of a kind of window: (top, label).
fn band_row(window: &str) -> (f64, &'static str) {
    let (index, label) = match window {
        "human_agent" => (1.0, "human agent"),
        "private_reply" => (2.0, "private reply"),
        "unrestricted" => (0.0, "unrestricted"),
        _ => (0.0, "standard"),
    };
    (BAND_TOP + index * (BAND_HEIGHT + BAND_GAP), label)
}

fn lane_y(actor: Actor) -> f64 {
    match actor {
        Actor::Customer => 130.0,
        Actor::Business => 172.0,
        Actor::Platform | Actor::Operator => 214.0,
        Actor::Deadline => 250.0,
    }
}

/// Tick steps of the time axis, in seconds: round minutes, hours and days.
const STEPS: &[i64] = &[
    60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 21_600, 43_200, 86_400, 172_800, 604_800,
];

/// Ticks at round instants (UTC), at most 8 over `from..to` (nanoseconds), each labelled to
/// the minute (`03-02 10:30`), or to the day for steps of days.
fn ticks(from: i64, to: i64) -> Vec<(Timestamp, String)> {
    const NANOS: i64 = 1_000_000_000;
    let span = ((to - from) / NANOS).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|step| span / step <= 8)
        .unwrap_or(604_800);
    let first = (from / NANOS).div_euclid(step) * step + step;
    (0..)
        .map(|n| first + n * step)
        .take_while(|seconds| *seconds * NANOS <= to)
        .map(|seconds| {
            let at = Timestamp::from_unix_seconds(seconds);
            let text = short_time(at);
            let label = if step >= 86_400 {
                text[..10].to_owned()
            } else {
                text[5..16].to_owned()
            };
            (at, label)
        })
        .collect()
}

/// `text` with every `YYYY-MM-DD HH:MM:SS` joined by a no-break space, so an instant is
/// never broken over two lines.
fn unbroken_instants(text: &str) -> String {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range)
            .is_some_and(|b| b.iter().all(u8::is_ascii_digit))
    };
    let mut out = String::with_capacity(text.len());
    for (index, c) in text.char_indices() {
        let instant_space = c == ' '
            && index >= 10
            && digits(index - 10..index - 6)
            && bytes[index - 6] == b'-'
            && digits(index + 1..index + 3)
            && bytes.get(index + 3) == Some(&b':');
        out.push(if instant_space { '\u{a0}' } else { c });
    }
    out
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
    // Axis: ticks at round instants (UTC).
    out.push_str(r#"<g class="axis">"#);
    for (at, label) in ticks(scale.from, scale.to) {
        let x = scale.x(at);
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{BAND_TOP}" x2="{x:.1}" y2="268"/><text x="{x:.1}" y="286" data-at="{at}">{}</text>"#,
            escape(&label)
        );
    }
    out.push_str("</g>");
    let mut lanes: Vec<(&str, f64)> = ["standard", "human_agent", "private_reply"]
        .iter()
        .map(|window| {
            let (top, label) = band_row(window);
            (label, top + BAND_HEIGHT / 2.0 + 4.0)
        })
        .collect();
    lanes.extend([
        ("customer", lane_y(Actor::Customer) + 4.0),
        ("business", lane_y(Actor::Business) + 4.0),
        ("platform", lane_y(Actor::Platform) + 4.0),
        ("deadlines", lane_y(Actor::Deadline) + 4.0),
    ]);
    for (label, y) in lanes {
        let _ = write!(out, r#"<text class="lane" x="8" y="{y}">{label}</text>"#);
    }
    out.push_str(r#"<g class="bands">"#);
    for (window, from, until) in bands(rows, end) {
        let class = window_class(window).unwrap_or("none");
        let (x1, x2) = (scale.x(from), scale.x(until));
        let (top, label) = band_row(class);
        let _ = write!(
            out,
            r#"<rect class="band window-{class}" data-window="{class}" data-from="{from}" data-until="{until}" x="{x1:.1}" y="{top}" width="{:.1}" height="{BAND_HEIGHT}"><title>{label} window from {} until {}</title></rect>"#,
            (x2 - x1).max(1.0),
            short_time(from),
            short_time(until)
        );
    }
    out.push_str("</g><g class=\"marks\">");
    // Failures are drawn last, over anything near them; marks close in one lane are
    // stacked (level 0, above, below, ...) so none hides another.
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by_key(|row| row.decisions.iter().any(|d| d.failed()));
    let mut placed: Vec<(f64, f64, usize)> = Vec::new();
    for row in order {
        let x = scale.x(row.at);
        let lane = lane_y(row.actor);
        let level = (0..)
            .find(|level| {
                !placed.iter().any(|(other_lane, other, taken)| {
                    *other_lane == lane && (other - x).abs() < MARK_ROOM && taken == level
                })
            })
            .unwrap_or(0);
        placed.push((lane, x, level));
        let offset = match level {
            0 => 0.0,
            n if n % 2 == 1 => -18.0 * n.div_ceil(2) as f64,
            n => 18.0 * (n / 2) as f64,
        };
        let y = lane + offset;
        let title = escape(&format!(
            "{} — {}{}",
            short_time(row.at),
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
            let _ = write!(notes, "<div>{}</div>", escape(&unbroken_instants(note)));
        }
        let duplicate = if row.duplicate {
            " (duplicate, ignored: R14)"
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<tr class="{class}"><td><span class="time">{}</span></td><td>{}</td><td>{}{duplicate}</td><td>{}</td><td>{}</td><td>{notes}</td></tr>"#,
            unbroken_instants(&short_time(row.at)),
            row.actor.as_str(),
            escape(&unbroken_instants(&row.what)),
            escape(&unbroken_instants(&describe_view(row.before))),
            escape(&unbroken_instants(&describe_view(row.after))),
        );
    }
    out.push_str("</tbody></table>");
}

/// What the marks and bands mean.
fn legend(out: &mut String) {
    out.push_str(r#"<div id="legend">"#);
    for (key, swatch, text) in [
        (
            "standard",
            r#"<span class="swatch window-standard"></span>"#,
            "standard window",
        ),
        (
            "human_agent",
            r#"<span class="swatch window-human_agent"></span>"#,
            "human-agent extension",
        ),
        (
            "private_reply",
            r#"<span class="swatch window-private_reply"></span>"#,
            "private-reply allowance",
        ),
        (
            "customer",
            r#"<svg viewBox="0 0 16 16"><circle class="mark customer" cx="8" cy="8" r="6"/></svg>"#,
            "customer message or comment",
        ),
        (
            "delivered",
            r#"<svg viewBox="0 0 16 16"><rect class="mark business delivered" x="2" y="2" width="12" height="12"/></svg>"#,
            "business message, delivered",
        ),
        (
            "held",
            r#"<svg viewBox="0 0 16 16"><rect class="mark business held" x="2" y="2" width="12" height="12"/></svg>"#,
            "held until the customer writes",
        ),
        (
            "failed",
            r#"<svg viewBox="0 0 16 16"><path class="mark business failed" d="M3,3 l10,10 m0,-10 l-10,10"/></svg>"#,
            "not delivered",
        ),
        (
            "platform",
            r#"<svg viewBox="0 0 16 16"><polygon class="mark platform" points="8,2 14,8 8,14 2,8"/></svg>"#,
            "platform status, operator",
        ),
        (
            "deadline",
            r#"<svg viewBox="0 0 16 16"><line class="mark deadline" x1="8" y1="1" x2="8" y2="15"/></svg>"#,
            "deadline passed",
        ),
    ] {
        let _ = write!(
            out,
            r#"<span class="key" data-key="{key}">{swatch}{text}</span>"#
        );
    }
    out.push_str("</div>");
}

/// The decision of `message_id` at the top of the page, as the terminal puts it.
fn verdict(timeline: &Timeline, message_id: &str, out: &mut String) {
    for (row, decision) in timeline.decisions_of(message_id) {
        let _ = write!(
            out,
            r#"<section id="verdict" class="verdict-{}"><h2>message {} {} at {}: {} [{}]</h2>"#,
            decision.outcome.class(),
            escape(message_id),
            decision.outcome.as_str(),
            unbroken_instants(&short_time(row.at)),
            escape(&decision.how),
            decision.rule
        );
        if let Some(detail) = &decision.detail {
            let _ = write!(out, "<p>why: {}</p>", escape(detail));
        }
        if let Some(suggestion) = &decision.suggestion {
            let _ = write!(out, "<p>suggestion: {}</p>", escape(suggestion));
        }
        let _ = write!(
            out,
            "<p>state then: {}</p></section>",
            escape(&unbroken_instants(&describe_view(row.before)))
        );
    }
}

/// The whole page; with `message`, that message's decision first.
pub fn page(timeline: &Timeline, message: Option<&str>) -> String {
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
    if let Some(message) = message {
        verdict(timeline, message, &mut out);
    }
    svg(timeline, &mut out);
    legend(&mut out);
    table(timeline, &mut out);
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    #[test]
    fn ticks_fall_on_round_instants_the_span_asks_for() {
        let at = |text: &str| Timestamp::parse_rfc3339(text).unwrap().unix_nanos();
        // Ten minutes: every minute or two, labelled to the minute.
        let short = ticks(at("2026-03-02T10:00:20Z"), at("2026-03-02T10:10:20Z"));
        assert!(short.len() >= 4, "{short:?}");
        assert!(short.iter().all(|(t, _)| t.unix_nanos() % MINUTE == 0));
        assert_eq!(short[0].1, "03-02 10:02");
        // A week: whole days, labelled by date.
        let week = ticks(at("2026-03-02T10:00:00Z"), at("2026-03-09T10:00:00Z"));
        assert!(
            week.iter()
                .all(|(t, _)| t.unix_nanos() % (1_440 * MINUTE) == 0)
        );
        assert_eq!(week[0].1, "2026-03-03");
        assert!((4..=8).contains(&week.len()), "{week:?}");
    }

    #[test]
    fn instants_are_never_broken() {
        assert_eq!(
            unbroken_instants("open (standard until 2026-03-03 10:00:00)"),
            "open (standard until 2026-03-03\u{a0}10:00:00)"
        );
        assert_eq!(unbroken_instants("a b"), "a b");
    }
}
