//! How every command prints: JSON for scripts with `--json`, otherwise text for
//! people (a record, a message or a table). The text is built only when printed.

use clap::Args;
use serde::Serialize;

/// The `--json` flag, flattened into every command that prints a result.
#[derive(Args)]
pub struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Output {
    /// Prints `value` as indented JSON with `--json`, else the text from `text`.
    pub fn print(&self, value: &impl Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        self.emit(|| serde_json::to_string_pretty(value), text)
    }

    /// Like [`Output::print`], with the JSON on one line (short acknowledgements).
    pub fn print_compact(&self, value: &impl Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
        self.emit(|| serde_json::to_string(value), text)
    }

    fn emit(
        &self,
        json: impl FnOnce() -> serde_json::Result<String>,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        println!("{}", if self.json { json()? } else { text() });
        Ok(())
    }

    /// Like [`Output::print`], with one text line per item and none for no items.
    pub fn print_lines(&self, value: &impl Serialize, lines: impl FnOnce() -> Vec<String>) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            for line in lines() {
                println!("{line}");
            }
        }
        Ok(())
    }
}

/// A text table: the header, then one line per row; every column but the last
/// is padded to its width, and columns are separated by `gap`.
pub fn table<const N: usize>(
    columns: [(&str, usize); N],
    gap: &str,
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let line = |cells: [&str; N]| {
        let mut line = String::new();
        for (i, (cell, (_, width))) in cells.iter().zip(&columns).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}{gap}"));
            }
        }
        line
    };
    let mut lines = vec![line(columns.map(|(name, _)| name))];
    lines.extend(rows.into_iter().map(|row| line(row.each_ref().map(String::as_str))));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn pads_every_column_but_the_last() {
        let text = table(
            [("id", 4), ("name", 6), ("status", 0)],
            "  ",
            [
                ["1".to_owned(), "alice".to_owned(), "active".to_owned()],
                ["12345".to_owned(), "b".to_owned(), "disabled".to_owned()],
            ],
        );
        assert_eq!(
            text,
            "id    name    status\n1     alice   active\n12345  b       disabled"
        );
    }
}
