//! The row book of one command: every distinct normalised row stored once and known by its
//! number, so that hosts hold row numbers and analyses count hosts per row.
//!
//! Text rows (`lines`, `columns`) are normalised as [`RowNormaliser`] does. Rows of named columns
//! (`json`, `csv`, `tsv`) keep their columns less the ignored ones, by column number in the book:
//! two rows are the same when they have the same values in the same columns, whatever order the
//! output names them in. Values are borrowed from the records wherever the parser could borrow
//! them; only the rows that reach a report are copied.

use std::borrow::Cow;

use diffy_plugin_api::rows::{ParseError, Parsed};
use diffy_plugin_api::{Command, Parser, Row};
use indexmap::{IndexMap, IndexSet};

use super::rows::RowNormaliser;

/// How a record without a known command is parsed.
const DEFAULT_PARSER: &Parser = &Parser::Lines;

/// A row number in a [`RowBook`].
pub(crate) type RowId = usize;

/// What makes two rows the same row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NormalRow<'a> {
    /// The row's kept columns joined by single spaces.
    Text(Cow<'a, str>),
    /// The row's kept values by column number, without absent columns at the end.
    Named(Box<[Option<Cow<'a, str>>]>),
}

/// One command's distinct rows, as the records of many hosts (and a baseline) hold them.
pub(crate) struct RowBook<'a> {
    parser: &'a Parser,
    /// Lowercase names of the columns left out.
    ignored: Vec<String>,
    /// Lowercase names of the columns that identify a row.
    key: Vec<String>,
    text: RowNormaliser,
    /// The kept columns of named rows, by number.
    columns: IndexSet<Cow<'a, str>>,
    rows: IndexSet<NormalRow<'a>>,
}

impl<'a> RowBook<'a> {
    /// A book for `command` (unknown: read as lines), leaving out its own ignored columns and
    /// `ignore_columns` (the analysis's option), case-insensitively.
    pub(crate) fn new(command: Option<&'a Command>, ignore_columns: &[String]) -> Self {
        let mut ignored: Vec<String> = ignore_columns.iter().map(|c| c.to_lowercase()).collect();
        let mut key = Vec::new();
        if let Some(command) = command {
            ignored.extend(command.ignore_columns.iter().map(|c| c.to_lowercase()));
            key.extend(command.key_columns.iter().map(|c| c.to_lowercase()));
        }
        RowBook {
            parser: command.map_or(DEFAULT_PARSER, Command::parser),
            text: RowNormaliser::new(&ignored),
            ignored,
            key,
            columns: IndexSet::new(),
            rows: IndexSet::new(),
        }
    }

    /// The distinct rows of `stdout`, sorted by number, entered in the book as needed.
    pub(crate) fn enter(&mut self, stdout: &'a str) -> Result<Vec<RowId>, ParseError> {
        let mut ids = match self.parser.read(stdout)? {
            Parsed::Text(table) => {
                let rows = self.text.table_rows(&table, stdout);
                rows.into_iter()
                    .map(|row| self.rows.insert_full(NormalRow::Text(row)).0)
                    .collect::<Vec<_>>()
            }
            Parsed::Named(table) => {
                let (names, rows) = table.into_parts();
                // The book's number of each of the table's columns; `None` for an ignored one.
                let numbers: Vec<Option<usize>> = names
                    .into_iter()
                    .map(|name| (!self.is_ignored(&name)).then(|| self.columns.insert_full(name).0))
                    .collect();
                rows.into_iter()
                    .map(|values| {
                        let row = NormalRow::Named(kept_values(&numbers, values));
                        self.rows.insert_full(row).0
                    })
                    .collect()
            }
        };
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn is_ignored(&self, column: &str) -> bool {
        let column = column.to_lowercase();
        self.ignored.contains(&column)
    }

    /// How many distinct rows the book holds (row numbers are below it).
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Row `id` as a report names it: its text, or its kept columns in the book's order.
    pub(crate) fn row(&self, id: RowId) -> Row {
        match &self.rows[id] {
            NormalRow::Text(text) => Row::Text(text.to_string()),
            NormalRow::Named(values) => Row::Columns(
                self.named(values)
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
            ),
        }
    }

    /// The `(column, value)` pairs of named `values`, in the book's column order.
    fn named<'v>(
        &'v self,
        values: &'v [Option<Cow<'a, str>>],
    ) -> impl Iterator<Item = (&'v str, &'v str)> {
        self.columns
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.as_ref(), value.as_deref()?)))
    }

    /// The values of row `id` in the key columns, when the command names key columns and the row
    /// has at least one of them (text rows have none).
    pub(crate) fn key(&self, id: RowId) -> Option<Vec<(&str, &str)>> {
        let NormalRow::Named(values) = &self.rows[id] else {
            return None;
        };
        if self.key.is_empty() {
            return None;
        }
        let key: Vec<(&str, &str)> = self
            .named(values)
            .filter(|(name, _)| self.key.contains(&name.to_lowercase()))
            .collect();
        (!key.is_empty()).then_some(key)
    }

    /// The names of the columns whose values differ between rows `a` and `b` (a column only one
    /// of them has included), in the book's column order.
    pub(crate) fn changed_columns(&self, a: RowId, b: RowId) -> Vec<String> {
        let (NormalRow::Named(a), NormalRow::Named(b)) = (&self.rows[a], &self.rows[b]) else {
            return Vec::new();
        };
        self.columns
            .iter()
            .enumerate()
            .filter(|(number, _)| a.get(*number) != b.get(*number))
            .map(|(_, name)| name.to_string())
            .collect()
    }
}

/// `values` (by the table's column numbers) by the book's column `numbers`, ignored columns left
/// out and absent columns at the end trimmed, so that equal rows compare equal.
fn kept_values<'a>(
    numbers: &[Option<usize>],
    values: Vec<Option<Cow<'a, str>>>,
) -> Box<[Option<Cow<'a, str>>]> {
    let mut kept: Vec<Option<Cow<'a, str>>> = Vec::new();
    for (number, value) in numbers.iter().zip(values) {
        if let (Some(number), Some(value)) = (number, value) {
            if kept.len() <= *number {
                kept.resize(number + 1, None);
            }
            kept[*number] = Some(value);
        }
    }
    kept.into_boxed_slice()
}

/// `rows` as a report lists them: sorted by how they read.
pub(crate) fn sorted_rows(book: &RowBook<'_>, ids: impl IntoIterator<Item = RowId>) -> Vec<Row> {
    let mut rows: Vec<(String, Row)> = ids
        .into_iter()
        .map(|id| {
            let row = book.row(id);
            (row.to_line(), row)
        })
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

/// The `(column, value)` pairs as a report's row.
pub(crate) fn key_row(pairs: &[(&str, &str)]) -> Row {
    Row::Columns(
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect::<IndexMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osquery() -> Command {
        Command::new("processes", "osqueryi --json 'SELECT * FROM processes'")
            .parse(Parser::Json)
            .key_columns(["name"])
            .ignore_columns(["start_time"])
    }

    fn lines(book: &RowBook<'_>, ids: &[RowId]) -> Vec<String> {
        ids.iter().map(|&id| book.row(id).to_line()).collect()
    }

    #[test]
    fn named_rows_are_the_same_whatever_their_column_order_and_ignored_values() {
        let command = osquery();
        let ignore = ["PID".to_string()];
        let mut book = RowBook::new(Some(&command), &ignore);
        let one = book
            .enter(r#"[{"pid":"1","name":"sshd","path":"/usr/sbin/sshd","start_time":"5"}]"#)
            .unwrap();
        let other = book
            .enter(r#"{"path":"/usr/sbin/sshd","name":"sshd","pid":"77"}"#)
            .unwrap();
        assert_eq!(one, other);
        assert_eq!(lines(&book, &one), ["name=sshd path=/usr/sbin/sshd"]);
        let more = book
            .enter(r#"[{"name":"sshd","path":"/usr/sbin/sshd"},{"name":"nc","extra":"x"}]"#)
            .unwrap();
        assert_eq!(more.len(), 2);
        assert_eq!(book.len(), 2);
        assert_eq!(lines(&book, &more[1..]), ["name=nc extra=x"]);
    }

    #[test]
    fn keys_and_changed_columns() {
        let command = osquery();
        let mut book = RowBook::new(Some(&command), &[]);
        let before = book
            .enter(r#"[{"name":"sshd","path":"/usr/sbin/sshd","uid":"0"}]"#)
            .unwrap()[0];
        let after = book
            .enter(r#"[{"name":"sshd","path":"/tmp/sshd"}]"#)
            .unwrap()[0];
        assert_eq!(book.key(before), book.key(after));
        assert_eq!(book.key(after), Some(vec![("name", "sshd")]));
        assert_eq!(book.changed_columns(before, after), ["path", "uid"]);
        let keyless = book.enter(r#"[{"path":"/bin/x"}]"#).unwrap()[0];
        assert_eq!(book.key(keyless), None);
    }

    #[test]
    fn text_rows_and_parse_errors() {
        let mut book = RowBook::new(None, &[]);
        let ids = book.enter("b\na\nb\n").unwrap();
        assert_eq!(lines(&book, &ids), ["b", "a"]);
        assert_eq!(book.key(ids[0]), None);
        let command = osquery();
        let mut book = RowBook::new(Some(&command), &[]);
        let error = book.enter("[{\"name\":}]").unwrap_err();
        assert_eq!(error.to_string(), "line 1 column 10: expected value");
    }
}
