//! The row book of one command: every distinct normalised row stored once and known by its
//! number, so that hosts hold row numbers and analyses count hosts per row.
//!
//! Text rows (`lines`, `columns`) are normalised as [`RowNormaliser`] does. Rows of named columns
//! (`json`, `csv`, `tsv`) keep their columns less the ignored ones, by column number in the book:
//! two rows are the same when they have the same values in the same columns, whatever order the
//! output names them in. A row is looked up as the parser read it, borrowed from the output, and
//! copied into the book only the first time it is seen: the book owns one copy of each distinct
//! row and nothing of the outputs it read, so an analysis can drop each record once entered.

use std::borrow::Cow;

use diffy_plugin_api::rows::{NamedTable, ParseError, Parsed};
use diffy_plugin_api::{Command, Parser, Row};
use std::hash::{Hash, Hasher};

use foldhash::fast::RandomState;
use indexmap::{Equivalent, IndexMap, IndexSet};

use super::rows::RowNormaliser;

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

impl NormalRow<'_> {
    fn to_owned_row(&self) -> NormalRow<'static> {
        let own = |value: &Cow<'_, str>| Cow::Owned(value.to_string());
        match self {
            NormalRow::Text(text) => NormalRow::Text(own(text)),
            NormalRow::Named(values) => {
                NormalRow::Named(values.iter().map(|v| v.as_ref().map(own)).collect())
            }
        }
    }
}

/// A row as the book keeps it, owned.
#[derive(Debug, PartialEq, Eq)]
struct Stored(NormalRow<'static>);

impl Hash for Stored {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// A row as read from an output, borrowed, looked up among the stored ones (hashed the same).
struct Lookup<'r, 's>(&'r NormalRow<'s>);

impl Hash for Lookup<'_, '_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Equivalent<Stored> for Lookup<'_, '_> {
    fn equivalent(&self, stored: &Stored) -> bool {
        *self.0 == stored.0
    }
}

/// What reading an output gives: its rows, or why they cannot be read.
pub(crate) type Read<'a> = Result<ReadRows<'a>, ParseError>;

/// An output's rows as a [`RowBook`] read them, borrowed from the output, before they are entered.
pub(crate) enum ReadRows<'a> {
    /// Text rows, normalised.
    Text(Vec<Cow<'a, str>>),
    /// Rows of named columns, as parsed.
    Named(NamedTable<'a>),
}

/// One command's distinct rows, as the records of many hosts (and a baseline) hold them.
pub(crate) struct RowBook {
    parser: Parser,
    /// Lowercase names of the columns left out.
    ignored: Vec<String>,
    /// Lowercase names of the columns that identify a row.
    key: Vec<String>,
    text: RowNormaliser,
    /// The kept columns of named rows, by number.
    columns: IndexSet<String, RandomState>,
    /// Hashed with foldhash: with SipHash, the default, hashing was an eighth of a fleet analysis.
    rows: IndexSet<Stored, RandomState>,
}

impl RowBook {
    /// A book for `command` (unknown: read as lines), leaving out its own ignored columns and
    /// `ignore_columns` (the analysis's option), case-insensitively.
    pub(crate) fn new(command: Option<&Command>, ignore_columns: &[String]) -> Self {
        let mut ignored: Vec<String> = ignore_columns.iter().map(|c| c.to_lowercase()).collect();
        let mut key = Vec::new();
        if let Some(command) = command {
            ignored.extend(command.ignore_columns.iter().map(|c| c.to_lowercase()));
            key.extend(command.key_columns.iter().map(|c| c.to_lowercase()));
        }
        RowBook {
            parser: command.map_or(Parser::Lines, |c| c.parser().clone()),
            text: RowNormaliser::new(&ignored),
            ignored,
            key,
            columns: IndexSet::default(),
            rows: IndexSet::default(),
        }
    }

    /// The distinct rows of `stdout`, sorted by number, entered in the book as needed.
    pub(crate) fn enter(&mut self, stdout: &str) -> Result<Vec<RowId>, ParseError> {
        let rows = self.read(stdout)?;
        Ok(self.enter_rows(rows))
    }

    /// The rows of `stdout` as this book reads them, not yet entered: the parsing and the text
    /// normalisation, which need the book only to look at its settings, so that many outputs
    /// can be read at once on many threads and then entered one after another.
    pub(crate) fn read<'a>(&self, stdout: &'a str) -> Result<ReadRows<'a>, ParseError> {
        if matches!(self.parser, Parser::Lines | Parser::Unknown) {
            // What `Parser::parse` and the normaliser make of lines — each row its line, trimmed,
            // blank lines left out — without a table of one-column rows (an allocation a row).
            let rows = diffy_plugin_api::rows::split_lines(stdout)
                .map(str::trim)
                .filter(|line| !line.is_empty());
            return Ok(ReadRows::Text(rows.map(Cow::Borrowed).collect()));
        }
        Ok(match self.parser.read(stdout)? {
            Parsed::Text(table) => ReadRows::Text(self.text.table_rows(&table, stdout)),
            Parsed::Named(table) => ReadRows::Named(table),
        })
    }

    /// The distinct rows read from an output, sorted by number, entered in the book as needed.
    pub(crate) fn enter_rows(&mut self, rows: ReadRows<'_>) -> Vec<RowId> {
        let mut ids = match rows {
            ReadRows::Text(rows) => rows
                .into_iter()
                .map(|row| self.number(NormalRow::Text(row)))
                .collect::<Vec<_>>(),
            ReadRows::Named(table) => {
                let (names, rows) = table.into_parts();
                // The book's number of each of the table's columns; `None` for an ignored one.
                let numbers: Vec<Option<usize>> = names
                    .into_iter()
                    .map(|name| {
                        (!self.is_ignored(&name)).then(|| match self.columns.get_index_of(&*name) {
                            Some(number) => number,
                            None => self.columns.insert_full(name.into_owned()).0,
                        })
                    })
                    .collect();
                rows.into_iter()
                    .map(|values| self.number(NormalRow::Named(kept_values(&numbers, values))))
                    .collect()
            }
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The number of `row`, copied into the book if it is new.
    fn number(&mut self, row: NormalRow<'_>) -> RowId {
        match self.rows.get_index_of(&Lookup(&row)) {
            Some(id) => id,
            None => self.rows.insert_full(Stored(row.to_owned_row())).0,
        }
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
        match &self.rows[id].0 {
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
        values: &'v [Option<Cow<'static, str>>],
    ) -> impl Iterator<Item = (&'v str, &'v str)> {
        self.columns
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some((name.as_str(), value.as_deref()?)))
    }

    /// The values of row `id` in the key columns, when the command names key columns and the row
    /// has at least one of them (text rows have none).
    pub(crate) fn key(&self, id: RowId) -> Option<Vec<(&str, &str)>> {
        let NormalRow::Named(values) = &self.rows[id].0 else {
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
        let (NormalRow::Named(a), NormalRow::Named(b)) = (&self.rows[a].0, &self.rows[b].0) else {
            return Vec::new();
        };
        self.columns
            .iter()
            .enumerate()
            .filter(|(number, _)| a.get(*number) != b.get(*number))
            .map(|(_, name)| name.clone())
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
pub(crate) fn sorted_rows(book: &RowBook, ids: impl IntoIterator<Item = RowId>) -> Vec<Row> {
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

    fn lines(book: &RowBook, ids: &[RowId]) -> Vec<String> {
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
    fn lines_are_read_as_the_parser_and_the_normaliser_read_them() {
        let book = RowBook::new(None, &[]);
        let text = "  b  x \r\n\n\ta\n   \nb  x\n";
        let ReadRows::Text(fast) = book.read(text).unwrap() else {
            panic!("lines are text rows");
        };
        let table = Parser::Lines.parse(text);
        assert_eq!(fast, book.text.table_rows(&table, text));
        assert_eq!(fast, ["b  x", "a", "b  x"]);
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
