//! Plain-text tables for terminals and logs: aligned columns, no colours required.

/// Render rows under a header with columns padded to the widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    render_fitted(header, rows, None)
}

/// Like [`render`], for cells of several lines (`\n` inside a cell) and a terminal
/// `width`: the last column, the free text one, wraps at spaces to fit (never
/// narrower than [`MIN_FREE_WIDTH`]; a word longer than that stays whole). Rows
/// of several lines are set apart by a blank line so each reads as one block.
pub fn render_fitted(header: &[&str], rows: &[Vec<String>], width: Option<usize>) -> String {
    let columns = header.len();
    let last = columns.saturating_sub(1);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.lines().map(|l| l.chars().count()).max().unwrap_or(0));
        }
    }
    let indent: usize = widths[..last].iter().map(|w| w + 2).sum();
    let free = width.map(|w| w.saturating_sub(indent).max(MIN_FREE_WIDTH));

    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header);
    out.push('\n');
    // The last column is free text; its rule only underlines the header.
    let rules: Vec<String> =
        widths.iter().enumerate().map(|(i, w)| "-".repeat(if i == last { header[i].chars().count() } else { *w })).collect();
    out.push_str(&line(&rules.iter().map(String::as_str).collect::<Vec<_>>()));
    out.push('\n');

    let split: Vec<Vec<Vec<String>>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .take(columns)
                .enumerate()
                .map(|(i, cell)| {
                    let lines = cell.lines().map(str::to_string);
                    match free {
                        Some(free) if i == last => lines.flat_map(|l| wrap(&l, free)).collect(),
                        _ => lines.collect(),
                    }
                })
                .collect()
        })
        .collect();
    let blocks = split.iter().any(|row| row.iter().any(|cell| cell.len() > 1));
    for (r, row) in split.iter().enumerate() {
        if blocks && r > 0 {
            out.push('\n');
        }
        let height = row.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for l in 0..height {
            let cells: Vec<&str> = row.iter().map(|cell| cell.get(l).map_or("", String::as_str)).collect();
            out.push_str(&line(&cells));
            out.push('\n');
        }
    }
    out
}

/// The free column never gets narrower than this, however wide the others are.
pub const MIN_FREE_WIDTH: usize = 24;

/// Break `text` at spaces into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let needed = if current.is_empty() { word.chars().count() } else { current.chars().count() + 1 + word.chars().count() };
        if needed > width && !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    lines.push(current);
    lines
}

/// `text` cut to `width` characters, with `…` marking the cut.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let text =
            super::render(&["device", "channel"], &[vec!["ru1".into(), "console".into()], vec!["core-appliance".into(), "ssh".into()]]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "device          channel");
        assert_eq!(lines[2], "ru1             console");
        assert_eq!(lines[3], "core-appliance  ssh");
    }

    #[test]
    fn multi_line_cells_stack_and_the_last_column_wraps_to_the_width() {
        let rows = vec![
            vec!["4.2.9".into(), "TC_A\nports".into(), "needs ssh, declared open_tcp_ports, params ports".into()],
            vec!["4.3.2.6".into(), "TC_B".into(), "ssh".into()],
        ];
        let text = super::render_fitted(&["clause", "test", "needs"], &rows, Some(40));
        assert_eq!(
            text,
            "clause   test   needs\n\
             -------  -----  -----\n\
             4.2.9    TC_A   needs ssh, declared\n\
             \x20        ports  open_tcp_ports, params\n\
             \x20               ports\n\
             \n\
             4.3.2.6  TC_B   ssh\n"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 40), "{text}");
        // Without a width nothing wraps.
        assert!(
            super::render_fitted(&["clause", "test", "needs"], &rows, None).contains("needs ssh, declared open_tcp_ports, params ports")
        );
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(super::truncate("abcdef", 4), "abc…");
        assert_eq!(super::truncate("abc", 4), "abc");
    }
}
