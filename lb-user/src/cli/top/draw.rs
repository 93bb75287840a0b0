//! Puts a `Screen` on the terminal: the header on top, the table, the footer on the last
//! line. Nothing is decided here; `screen` made every string.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Text};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::screen::{visible_columns, Screen, COLUMN_SPACING, TITLES};

/// An error this long is cut; the first lines name what failed.
const MAX_ERROR_LINES: u16 = 3;

pub fn draw(frame: &mut Frame, screen: &Screen) {
    let header: Vec<Line> = screen.header.iter().map(|l| Line::raw(l.as_str())).collect();
    let header_height = u16::try_from(header.len()).unwrap_or(u16::MAX);
    let width = frame.area().width.max(1);
    let error_height = screen.error.as_ref().map_or(0, |e| {
        let chars = u16::try_from(e.chars().count()).unwrap_or(u16::MAX);
        chars.div_ceil(width).clamp(1, MAX_ERROR_LINES)
    });
    let [top, error, middle, bottom] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(error_height),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(Text::from(header)), top);
    if let Some(e) = &screen.error {
        let style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
        frame.render_widget(Paragraph::new(e.as_str()).style(style).wrap(Wrap { trim: true }), error);
    }
    frame.render_widget(table(screen, &visible_columns(&screen.widths, middle.width)), middle);
    if let Some(note) = &screen.empty {
        // Below the titles, as wide as the terminal (a cell would cut it to one column).
        let below = Rect { y: middle.y.saturating_add(1), height: middle.height.saturating_sub(1), ..middle };
        frame.render_widget(Paragraph::new(note.as_str()), below);
    }
    let footer = Line::styled(screen.footer.as_str(), Style::new().add_modifier(Modifier::REVERSED));
    frame.render_widget(Paragraph::new(footer), bottom);
}

/// The table with the `columns` that fit.
fn table<'a>(screen: &'a Screen, columns: &[usize]) -> Table<'a> {
    let titles = columns.iter().map(|&i| {
        let style = if i == screen.sorted_column {
            Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        Cell::from(TITLES[i]).style(style)
    });
    let rows = screen.rows.iter().map(|r| Row::new(columns.iter().map(|&i| Cell::from(r[i].as_str()))));
    let widths: Vec<Constraint> = columns.iter().map(|&i| Constraint::Length(screen.widths[i])).collect();
    Table::new(rows, widths).header(Row::new(titles)).column_spacing(COLUMN_SPACING)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn lines(screen: &Screen, width: u16, height: u16) -> Vec<String> {
        let mut term = Terminal::new(TestBackend::new(width, height)).unwrap();
        term.draw(|f| draw(f, screen)).unwrap();
        let buf = term.backend().buffer();
        (0..height)
            .map(|y| (0..width).map(|x| buf[(x, y)].symbol()).collect::<String>().trim_end().to_string())
            .collect()
    }

    fn screen() -> Screen {
        Screen {
            header: vec!["lb top  path xdp".into(), "total/s  new flows 4".into()],
            error: Some("error: maps gone".into()),
            sorted_column: 7,
            widths: TITLES.iter().map(|t| t.len() as u16 + 6).collect(),
            rows: vec![TITLES.iter().map(|t| t.to_lowercase()).collect()],
            empty: None,
            footer: "q quit".into(),
        }
    }

    #[test]
    fn header_error_table_and_footer_each_have_their_place() {
        let l = lines(&screen(), 200, 8);
        assert_eq!(l[0], "lb top  path xdp");
        assert_eq!(l[1], "total/s  new flows 4");
        assert_eq!(l[2], "error: maps gone");
        assert!(l[3].starts_with("SERVICE        VIP"), "{:?}", l[3]);
        assert!(l[4].starts_with("service        vip") && l[4].ends_with("bytes"), "{:?}", l[4]);
        assert_eq!(l[7], "q quit");
    }

    #[test]
    fn a_long_error_wraps_onto_at_most_three_lines() {
        let mut s = screen();
        s.error = Some(format!("error: {}", "word ".repeat(100)));
        let l = lines(&s, 200, 12);
        assert!(l[2].starts_with("error: word") && l[3].starts_with("word") && l[4].starts_with("word"), "{l:?}");
        assert!(l[5].starts_with("SERVICE"), "the table below it: {l:?}");
    }

    #[test]
    fn a_narrow_terminal_shows_whole_columns() {
        let l = lines(&screen(), 80, 8);
        let titles: Vec<&str> = l[3].split_whitespace().collect();
        assert_eq!(titles.first(), Some(&"SERVICE"), "{l:?}");
        assert!(titles.contains(&"NEW/s") && !titles.contains(&"BYTES"), "{l:?}");
        assert!(l[4].contains("new/s"), "{l:?}");
    }

    #[test]
    fn no_rows_shows_why() {
        let mut s = screen();
        s.rows.clear();
        s.error = None;
        s.empty = Some("waiting for the first sample".into());
        let l = lines(&s, 200, 6);
        assert!(l[2].starts_with("SERVICE"), "{l:?}");
        assert_eq!(l[3], "waiting for the first sample", "whole, not cut to a column");
    }

    #[test]
    fn a_small_terminal_is_no_reason_to_panic() {
        for (w, h) in [(1, 1), (10, 2), (200, 1), (0, 0)] {
            lines(&screen(), w, h);
        }
    }
}
