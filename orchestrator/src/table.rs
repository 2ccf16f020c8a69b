//! Plain-text tables for terminals and logs: aligned columns, no colours required.

/// Render rows under a header with columns padded to the widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
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
    let mut out = line(header.to_vec());
    out.push('\n');
    // The last column is free text; its rule only underlines the header.
    let last = widths.len().saturating_sub(1);
    let rules: Vec<String> = widths
        .iter()
        .enumerate()
        .map(|(i, w)| "-".repeat(if i == last { header[i].chars().count() } else { *w }))
        .collect();
    out.push_str(&line(rules.iter().map(String::as_str).collect()));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_line_up() {
        let text = super::render(&["device", "channel"], &[vec!["ru1".into(), "console".into()], vec!["core-appliance".into(), "ssh".into()]]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "device          channel");
        assert_eq!(lines[2], "ru1             console");
        assert_eq!(lines[3], "core-appliance  ssh");
    }
}
