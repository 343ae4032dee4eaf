//! Plain-text tables for the terminal, laid out by `comfy-table`: a header,
//! a rule, then one line per row, columns two spaces apart and as wide as
//! their widest cell (in terminal columns, so wide and combining characters
//! line up). No borders, no colours and no wrapping: a row is one line
//! whatever the terminal's width, so that `grep`, `cut` and tests read the
//! output as they read it before. An empty table says `(none)`.

use std::fmt;

/// The table's look, in `comfy-table`'s preset notation: the rule under the
/// header and nothing else (a blank component is not drawn).
const LOOK: &str = "     -             ";

/// A table with a header row.
#[derive(Debug)]
pub struct Table {
    inner: comfy_table::Table,
    rows: usize,
}

impl Table {
    pub fn new<const N: usize>(header: [&str; N]) -> Self {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(LOOK)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
            .set_header(header);
        for (i, column) in inner.column_iter_mut().enumerate() {
            // Two spaces after every column but the last: no trailing blanks.
            column.set_padding((0, if i + 1 < N { 2 } else { 0 }));
        }
        Self { inner, rows: 0 }
    }

    pub fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.inner.add_row(cells);
        self.rows += 1;
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in self.inner.lines() {
            // The last column is padded to its widest cell; shorter cells
            // leave blanks at the end of their line.
            writeln!(f, "{}", line.trim_end())?;
        }
        if self.rows == 0 {
            writeln!(f, "(none)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_two_spaces_apart_under_a_rule() {
        let mut table = Table::new(["id", "name", "state"]);
        table.row(["1".into(), "Zoë “Z” Lee".into(), "active".into()]);
        table.row(["22".into(), "x".into(), "revoked".into()]);
        assert_eq!(
            table.to_string(),
            "id  name         state\n\
             ------------------------\n\
             1   Zoë “Z” Lee  active\n\
             22  x            revoked\n"
        );
    }

    #[test]
    fn an_empty_table_says_none() {
        assert_eq!(
            Table::new(["read model", "events"]).to_string(),
            "read model  events\n------------------\n(none)\n"
        );
    }
}
