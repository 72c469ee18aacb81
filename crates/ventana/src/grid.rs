//! Tables for the terminal that fit 120 columns: each column as wide as its widest cell up
//! to a cap, cells wrapped at word boundaries within their column, and each row's notes
//! (decisions, warnings) on lines of their own below it, wrapped with a hanging indent.

use std::io::{self, Write};

use ventana_core::Timestamp;

/// The width every line fits in.
pub(crate) const WIDTH: usize = 120;

/// An instant for people: `2026-03-02 10:00:00`, UTC, to the second.
pub(crate) fn short_time(at: Timestamp) -> String {
    let text = at.to_string();
    // RFC 3339 from `Timestamp`: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
    match (text.get(..10), text.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time}"),
        _ => text,
    }
}

/// Paints a piece of text (ANSI colours, or nothing): applied after wrapping, so escape
/// codes never count as width.
pub(crate) type Paint<'a> = &'a dyn Fn(usize, &str) -> String;

/// One row: a cell per column, and notes printed below it.
#[derive(Debug, Default)]
pub(crate) struct Row {
    pub cells: Vec<String>,
    pub notes: Vec<String>,
    /// Which paint each note gets (an index the `Paint` of notes understands).
    pub note_styles: Vec<usize>,
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_owned();
        loop {
            let used = line.chars().count();
            let needed = word.chars().count() + usize::from(used > 0);
            if used + needed <= width {
                if used > 0 {
                    line.push(' ');
                }
                line.push_str(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut line));
                continue;
            }
            // A word longer than a line: cut it.
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            lines.push(head);
            if word.is_empty() {
                break;
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// Writes `header` and `rows`. `caps` limits each column but the last, which gets what is
/// left of [`WIDTH`]. `paint_cell(column, text)` colours cells, `paint_note(style, text)`
/// notes.
pub(crate) fn print(
    out: &mut impl Write,
    header: &[&str],
    caps: &[usize],
    rows: &[Row],
    paint_cell: Paint<'_>,
    paint_note: Paint<'_>,
) -> io::Result<()> {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(&row.cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for (width, cap) in widths.iter_mut().zip(caps) {
        *width = (*width).min(*cap);
    }
    let before_last: usize = widths[..columns - 1].iter().map(|w| w + 2).sum();
    widths[columns - 1] = widths[columns - 1].min(WIDTH.saturating_sub(before_last).max(16));
    let line = |out: &mut dyn Write, cells: Vec<Vec<String>>, painted: bool| -> io::Result<()> {
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        for index in 0..height {
            let mut text = String::new();
            for (column, lines) in cells.iter().enumerate() {
                let cell = lines.get(index).map_or("", String::as_str);
                let pad = widths[column] - cell.chars().count().min(widths[column]);
                text.push_str(&if painted {
                    paint_cell(column, cell)
                } else {
                    cell.to_owned()
                });
                if column + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    };
    line(
        out,
        header.iter().map(|h| vec![(*h).to_owned()]).collect(),
        false,
    )?;
    let indent = widths[0] + 2;
    for row in rows {
        let cells = row
            .cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| wrap(cell, *width))
            .collect();
        line(out, cells, true)?;
        for (index, note) in row.notes.iter().enumerate() {
            let style = row.note_styles.get(index).copied().unwrap_or(0);
            for (n, text) in wrap(note, WIDTH - indent - 2).iter().enumerate() {
                let lead = if n == 0 { "→ " } else { "  " };
                writeln!(
                    out,
                    "{}{lead}{}",
                    " ".repeat(indent),
                    paint_note(style, text)
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_wrap_and_long_ones_are_cut() {
        assert_eq!(wrap("a bb ccc", 8), ["a bb ccc"]);
        assert_eq!(wrap("aaaa bbbb cccc", 9), ["aaaa bbbb", "cccc"]);
        assert_eq!(wrap(&"x".repeat(20), 8), ["xxxxxxxx", "xxxxxxxx", "xxxx"]);
        assert_eq!(wrap("", 8), [""]);
    }

    #[test]
    fn instants_are_shown_to_the_second() {
        let at = Timestamp::parse_rfc3339("2026-03-02T10:00:00.123456789Z").unwrap();
        assert_eq!(short_time(at), "2026-03-02 10:00:00");
    }

    #[test]
    fn every_line_fits() {
        let rows = vec![Row {
            cells: vec![
                "2026-03-02 10:00:00".into(),
                "a very long event description ".repeat(4),
                "a state ".repeat(20),
            ],
            notes: vec!["NOT DELIVERED: ".to_owned() + &"because ".repeat(40)],
            note_styles: vec![0],
        }];
        let mut out = Vec::new();
        let plain: Paint<'_> = &|_, text| text.to_owned();
        print(
            &mut out,
            &["TIME", "EVENT", "STATE"],
            &[19, 40],
            &rows,
            plain,
            plain,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().count() > 5, "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
    }
}
