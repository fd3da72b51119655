//! One renderer for the lab's report tables: columns with a header and an
//! alignment, each as wide as its widest cell, separated by blanks; no line
//! ends in blanks. A row may end in text that spans the columns after its
//! cells (a failure, a note) without widening them.

/// How a column's cells (and its header) line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

pub(crate) use Align::{Left, Right};

/// A padded text table.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    headers: Vec<String>,
    aligns: Vec<Align>,
    show_header: bool,
    indent: String,
    gap: usize,
    rows: Vec<Row>,
}

#[derive(Debug, Clone)]
struct Row {
    cells: Vec<String>,
    /// Text after the cells, over the columns they leave.
    rest: Option<String>,
}

impl Table {
    /// A table of these columns (header, alignment), with a header line.
    pub(crate) fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            headers: columns.iter().map(|(h, _)| h.to_string()).collect(),
            aligns: columns.iter().map(|&(_, a)| a).collect(),
            show_header: true,
            indent: String::new(),
            gap: 1,
            rows: Vec::new(),
        }
    }

    /// A table without a header line: aligned lists.
    pub(crate) fn headless(aligns: &[Align]) -> Table {
        Table {
            show_header: false,
            ..Table::new(&aligns.iter().map(|&a| ("", a)).collect::<Vec<_>>())
        }
    }

    /// Every line starts with `indent`.
    pub(crate) fn indent(mut self, indent: &str) -> Table {
        self.indent = indent.to_string();
        self
    }

    /// Blanks between columns (1 by default).
    pub(crate) fn gap(mut self, gap: usize) -> Table {
        self.gap = gap;
        self
    }

    /// A row: one cell per column.
    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        assert_eq!(
            cells.len(),
            self.aligns.len(),
            "a row of {} cells in a table of {} columns",
            cells.len(),
            self.aligns.len()
        );
        self.rows.push(Row { cells, rest: None });
    }

    /// A row of the first columns' cells, then `rest` over the other
    /// columns; `rest` does not widen them.
    pub(crate) fn spanning<S: Into<String>>(
        &mut self,
        cells: impl IntoIterator<Item = S>,
        rest: impl Into<String>,
    ) {
        let cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        assert!(
            cells.len() < self.aligns.len(),
            "a spanning row of {} cells in a table of {} columns",
            cells.len(),
            self.aligns.len()
        );
        self.rows.push(Row {
            cells,
            rest: Some(rest.into()),
        });
    }

    /// The table, a line per row, each ending in a newline.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = match self.show_header {
            true => self.headers.iter().map(|h| width(h)).collect(),
            false => vec![0; self.aligns.len()],
        };
        for r in &self.rows {
            for (w, c) in widths.iter_mut().zip(&r.cells) {
                *w = (*w).max(width(c));
            }
        }
        let gap = " ".repeat(self.gap);
        let line = |cells: &[String], rest: Option<&str>| {
            let mut parts: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.aligns)
                .map(|((c, &w), a)| match a {
                    Align::Left => format!("{c:<w$}"),
                    Align::Right => format!("{c:>w$}"),
                })
                .collect();
            parts.extend(rest.map(str::to_string));
            let l = format!("{}{}", self.indent, parts.join(&gap));
            format!("{}\n", l.trim_end())
        };
        let mut out = String::new();
        if self.show_header {
            out.push_str(&line(&self.headers, None));
        }
        for r in &self.rows {
            out.push_str(&line(&r.cells, r.rest.as_deref()));
        }
        out
    }
}

/// Characters, not bytes: `…` is one column.
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut t = Table::new(&[("run", Left), ("result", Left), ("peak RSS", Right)]);
        t.row(["generated-512", "ok", "612 KiB"]);
        t.row(["qemu-4k", "FAILED", "1024 KiB"]);
        assert_eq!(
            t.render(),
            "run           result peak RSS\n\
             generated-512 ok      612 KiB\n\
             qemu-4k       FAILED 1024 KiB\n"
        );
    }

    #[test]
    fn no_line_ends_in_blanks() {
        let mut t = Table::new(&[("fault", Left), ("result", Left)]).gap(2);
        t.row(["EIO on the header…", ""]);
        t.row(["power cut", "ok"]);
        let text = t.render();
        assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
        // The ellipsis counts as one column.
        assert_eq!(
            text,
            "fault               result\n\
             EIO on the header…\n\
             power cut           ok\n"
        );
    }

    #[test]
    fn headless_indented_lists() {
        let mut t = Table::headless(&[Left, Right]).indent("  ");
        t.row(["build (cached)", "3.0 s"]);
        t.row(["zipl + prepare check (4k)", "12.5 s"]);
        assert_eq!(
            t.render(),
            "  build (cached)             3.0 s\n  zipl + prepare check (4k) 12.5 s\n"
        );
        assert_eq!(Table::headless(&[Left]).render(), "");
    }

    #[test]
    fn spanning_text_follows_its_cells_without_widening_the_columns() {
        let mut t = Table::new(&[("target", Left), ("execs", Right), ("result", Left)]);
        t.row(["vmcore", "118231", "ok"]);
        t.spanning(["disk"], "FAILED: libFuzzer exited 1, a much longer text");
        t.spanning([""], "a note");
        assert_eq!(
            t.render(),
            "target  execs result\n\
             vmcore 118231 ok\n\
             disk   FAILED: libFuzzer exited 1, a much longer text\n       \
             a note\n"
        );
    }

    #[test]
    #[should_panic(expected = "a row of 1 cells in a table of 2 columns")]
    fn a_row_has_a_cell_per_column() {
        Table::new(&[("a", Left), ("b", Left)]).row(["x"]);
    }
}
