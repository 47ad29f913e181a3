//! Text row normalisation (`lines` and `columns` parsers), for the row book of both analyses: each
//! row becomes the text of its remaining columns joined by single spaces.
//!
//! Columns are dropped by header name (`ignore_columns`, compared case-insensitively), so only
//! parsers that read a header can drop any. Joining with one space makes `root   1` (aligned by
//! `ps` on one host) and `root 1` (on another) the same row. Rows are borrowed from the command's
//! output whenever that text already reads the same; a row is allocated only when columns were
//! dropped or its columns are spaced differently in the output.

use std::borrow::Cow;

use diffy_plugin_api::{OptionSpec, OptionType, Table};
use serde_json::Value;

/// Columns ignored unless the user says otherwise: those that change from run to run in `ps`.
pub(crate) const DEFAULT_IGNORED_COLUMNS: [&str; 6] =
    ["pid", "ppid", "time", "start", "stime", "etime"];

/// The schema entry of the `ignore_columns` option.
pub(crate) fn ignore_columns_option() -> OptionSpec {
    OptionSpec::new(
        "ignore_columns",
        OptionType::Array,
        "Column names (case-insensitive) left out before rows are compared, besides each \
         command's own ignore_columns: JSON keys, CSV and TSV header names, or the names in a \
         columns parser's header (commands without names keep all their columns)",
    )
    .default_value(Value::from(DEFAULT_IGNORED_COLUMNS.to_vec()))
}

/// The serde default of `ignore_columns`.
pub(crate) fn default_ignored_columns() -> Vec<String> {
    DEFAULT_IGNORED_COLUMNS.map(str::to_string).to_vec()
}

/// Turns command output into comparable rows.
#[derive(Debug, Clone)]
pub(crate) struct RowNormaliser {
    /// Lowercase names of the columns to drop.
    ignored: Vec<String>,
}

impl RowNormaliser {
    pub(crate) fn new(ignore_columns: &[String]) -> Self {
        RowNormaliser {
            ignored: ignore_columns.iter().map(|c| c.to_lowercase()).collect(),
        }
    }

    fn is_ignored(&self, column: &str) -> bool {
        self.ignored
            .iter()
            .any(|ignored| column.to_lowercase() == *ignored)
    }

    /// The rows of `table`, split from `stdout`, normalised, in output order (repeats included).
    pub(crate) fn table_rows<'a>(&self, table: &Table<'a>, stdout: &'a str) -> Vec<Cow<'a, str>> {
        // Which columns to keep, when the header names any to drop.
        let keep: Option<Vec<bool>> = table
            .header
            .as_ref()
            .map(|header| header.iter().map(|name| !self.is_ignored(name)).collect())
            .filter(|keep: &Vec<bool>| keep.contains(&false));
        table
            .rows
            .iter()
            .map(|row| match &keep {
                None => join_columns(stdout, row),
                Some(keep) => {
                    let kept = row
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| keep.get(*i).copied().unwrap_or(true))
                        .map(|(_, column)| *column);
                    Cow::Owned(join_owned(kept))
                }
            })
            .collect()
    }
}

/// `columns` joined by single spaces, in one allocation.
fn join_owned<'a>(columns: impl Iterator<Item = &'a str> + Clone) -> String {
    let mut joined = String::with_capacity(columns.clone().map(|c| c.len() + 1).sum());
    for (i, column) in columns.enumerate() {
        if i > 0 {
            joined.push(' ');
        }
        joined.push_str(column);
    }
    joined
}

/// `columns` joined by single spaces: borrowed from `text` when the columns already stand there
/// in one stretch separated by single spaces, allocated otherwise.
fn join_columns<'a>(text: &'a str, columns: &[&'a str]) -> Cow<'a, str> {
    match columns {
        [] => Cow::Borrowed(""),
        [only] => Cow::Borrowed(only),
        _ => match single_spaced_span(text, columns) {
            Some(span) => Cow::Borrowed(span),
            None => Cow::Owned(join_owned(columns.iter().copied())),
        },
    }
}

/// The stretch of `text` that holds `columns` separated by single spaces, if that is how they
/// stand in it. The columns are slices of `text` (the parser borrows them), so their positions
/// follow from their addresses.
fn single_spaced_span<'a>(text: &'a str, columns: &[&str]) -> Option<&'a str> {
    let offset_in_text = |part: &str| {
        let offset = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        (offset + part.len() <= text.len()).then_some(offset)
    };
    let start = offset_in_text(columns.first()?)?;
    let mut end = start + columns.first()?.len();
    for column in &columns[1..] {
        let offset = offset_in_text(column)?;
        if offset != end + 1 || text.as_bytes().get(end) != Some(&b' ') {
            return None;
        }
        end = offset + column.len();
    }
    text.get(start..end)
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::Parser;

    use super::*;

    /// The distinct rows of `stdout` as `parser` splits it, normalised and sorted.
    fn distinct<'a>(rows: &RowNormaliser, parser: &Parser, stdout: &'a str) -> Vec<Cow<'a, str>> {
        let mut rows = rows.table_rows(&parser.parse(stdout), stdout);
        rows.sort_unstable();
        rows.dedup();
        rows
    }

    fn ps() -> Parser {
        Parser::Columns {
            header: true,
            separator: None,
            max_columns: Some(5),
        }
    }

    fn defaults() -> RowNormaliser {
        RowNormaliser::new(&default_ignored_columns())
    }

    #[test]
    fn ignored_columns_are_dropped_by_header_name() {
        let out = "USER   PID  PPID COMMAND COMMAND\n\
                   root     1     0 init    /sbin/init splash\n\
                   www    812     1 nginx   nginx: worker  process\n";
        let rows = distinct(&defaults(), &ps(), out);
        assert_eq!(
            rows,
            [
                "root init /sbin/init splash",
                "www nginx nginx: worker  process"
            ]
        );
        // The same processes under other pids, aligned differently, are the same rows.
        let other = "USER PID PPID COMMAND COMMAND\nwww 9 1 nginx nginx: worker  process\n\
                     root 1 0 init /sbin/init splash\n";
        assert_eq!(distinct(&defaults(), &ps(), other), rows);
        // Matching is case-insensitive, and an empty list keeps everything.
        let upper = RowNormaliser::new(&["Pid".to_string()]);
        assert_eq!(
            distinct(&upper, &ps(), other)[0],
            "root 0 init /sbin/init splash"
        );
        let none = RowNormaliser::new(&[]);
        assert_eq!(
            distinct(&none, &ps(), other)[0],
            "root 1 0 init /sbin/init splash"
        );
    }

    #[test]
    fn columns_without_header_are_all_kept_and_joined_by_one_space() {
        let parser = Parser::Columns {
            header: false,
            separator: None,
            max_columns: None,
        };
        let rows = distinct(
            &defaults(),
            &parser,
            "tcp   0.0.0.0:22 sshd\ntcp 0.0.0.0:22 sshd\n",
        );
        assert_eq!(rows, ["tcp 0.0.0.0:22 sshd"]);
        let passwd = Parser::Columns {
            header: true,
            separator: Some(":".into()),
            max_columns: None,
        };
        let text = "user:uid:pid\nroot:0:1\n";
        assert_eq!(distinct(&defaults(), &passwd, text), ["root 0"]);
    }

    #[test]
    fn rows_are_borrowed_when_they_read_the_same() {
        let parser = Parser::Columns {
            header: false,
            separator: None,
            max_columns: None,
        };
        let rows = distinct(&defaults(), &parser, "a b c\nd  e\n");
        assert!(matches!(rows[0], Cow::Borrowed("a b c")));
        assert!(matches!(rows[1], Cow::Owned(ref row) if row == "d e"));
        let lines = distinct(&defaults(), &Parser::Lines, "  x  y \nx  y\n");
        assert_eq!(lines, ["x  y"]);
        assert!(matches!(lines[0], Cow::Borrowed(_)));
    }

    #[test]
    fn rows_are_distinct_and_sorted() {
        let rows = distinct(&defaults(), &Parser::Lines, "b\na\nb\n\n");
        assert_eq!(rows, ["a", "b"]);
    }
}
