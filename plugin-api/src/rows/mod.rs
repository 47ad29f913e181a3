//! Structured rows: the output of the `json`, `csv` and `tsv` parsers as rows of named columns,
//! beside the text rows of `lines` and `columns`.
//!
//! [`Parser::read`](crate::Parser::read) (or [`Command::read_rows`](crate::Command::read_rows))
//! splits a command's output into [`Parsed`] rows. Text parsers never fail; structured ones fail
//! on malformed output with a [`ParseError`] that says where (`line 3 column 5: …`).
//!
//! Values are strings whatever the format, since that is how rows are compared and shown:
//! osquery writes every value as a JSON string, and other JSON is brought to the same shape
//! (numbers, `true`, `false` and `null` as JSON spells them, arrays and objects as compact JSON).
//! Values and column names are borrowed from the output wherever it already holds them as they
//! read (a JSON string without escapes); the rest is allocated.

mod delimited;
mod json;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use indexmap::IndexMap;

use crate::documents::{Row, Table};

pub(crate) use delimited::{Dialect, parse as parse_delimited};
pub(crate) use json::parse as parse_json;

/// A command's output split into rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Rows of text columns, from the `lines` and `columns` parsers.
    Text(Table<'a>),
    /// Rows of named columns, from the `json`, `csv` and `tsv` parsers.
    Named(NamedTable<'a>),
}

/// One row's values by column number: `None` where the row lacks the column. A row may be shorter
/// than its table's columns (it lacks the rest).
pub type Values<'a> = Vec<Option<Cow<'a, str>>>;

/// Rows of named columns. Each row holds a value for some of the table's columns: every row of a
/// CSV file has every column, while JSON objects may each name their own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedTable<'a> {
    columns: Vec<Cow<'a, str>>,
    rows: Vec<Values<'a>>,
}

impl<'a> NamedTable<'a> {
    /// Every column name, in the order the output first names it.
    pub fn columns(&self) -> &[Cow<'a, str>] {
        &self.columns
    }

    /// How many rows the table has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows, in output order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = NamedRow<'_, 'a>> {
        self.rows.iter().map(|values| NamedRow {
            columns: &self.columns,
            values,
        })
    }

    /// The column names and each row's values, for a reader that keeps the values.
    pub fn into_parts(self) -> (Vec<Cow<'a, str>>, Vec<Values<'a>>) {
        (self.columns, self.rows)
    }
}

/// One row of a [`NamedTable`].
#[derive(Debug, Clone, Copy)]
pub struct NamedRow<'t, 'a> {
    columns: &'t [Cow<'a, str>],
    values: &'t [Option<Cow<'a, str>>],
}

impl<'t, 'a> NamedRow<'t, 'a> {
    /// The value of column `name`, if the row has it.
    pub fn get(&self, name: &str) -> Option<&'t str> {
        let index = self.columns.iter().position(|column| column == name)?;
        self.values.get(index)?.as_deref()
    }

    /// The row's columns and values, in column order.
    pub fn iter(&self) -> impl Iterator<Item = (&'t str, &'t str)> + use<'t, 'a> {
        self.columns
            .iter()
            .zip(self.values)
            .filter_map(|(name, value)| Some((name.as_ref(), value.as_deref()?)))
    }

    /// The row as a report names it.
    pub fn to_row(&self) -> Row {
        Row::Columns(
            self.iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect::<IndexMap<_, _>>(),
        )
    }
}

/// Why structured output could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line (from 1) where the fault was found, when known.
    pub line: Option<u64>,
    /// The column (from 1, in bytes) on that line, when known.
    pub column: Option<u64>,
    /// What is wrong, without the position.
    pub message: String,
}

impl ParseError {
    fn at(line: Option<u64>, column: Option<u64>, message: impl Into<String>) -> Self {
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    /// An error at byte `offset` of `text`.
    fn at_offset(text: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = text.get(..offset).unwrap_or(text);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |newline| newline + 1) + 1;
        ParseError::at(Some(line as u64), Some(column as u64), message)
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "line {line} column {column}: "),
            (Some(line), None) => write!(f, "line {line}: "),
            _ => Ok(()),
        }?;
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// Builds a [`NamedTable`] row by row, giving each column name a number once.
#[derive(Default)]
struct TableBuilder<'a> {
    table: NamedTable<'a>,
    numbers: HashMap<Cow<'a, str>, usize>,
    /// The column number found at each position of the previous row: rows of one output nearly
    /// always name their columns in the same order, so a comparison usually replaces a lookup.
    previous: Vec<usize>,
}

impl<'a> TableBuilder<'a> {
    /// A builder whose columns are `header`, in order; a name given twice is refused.
    fn with_header(header: Vec<Cow<'a, str>>) -> Result<Self, String> {
        let mut builder = TableBuilder::default();
        for (position, name) in header.into_iter().enumerate() {
            if builder.numbers.contains_key(name.as_ref()) {
                return Err(format!("column {name:?} appears twice in the header"));
            }
            builder.number(name, position);
        }
        Ok(builder)
    }

    /// The number of column `name`, met at `position` of a row: a new number for a new name.
    fn number(&mut self, name: Cow<'a, str>, position: usize) -> usize {
        if let Some(&number) = self.previous.get(position)
            && self.table.columns[number] == name
        {
            return number;
        }
        let number = match self.numbers.get(name.as_ref()) {
            Some(&number) => number,
            None => {
                let number = self.table.columns.len();
                self.table.columns.push(name.clone());
                self.numbers.insert(name, number);
                number
            }
        };
        match self.previous.get_mut(position) {
            Some(previous) => *previous = number,
            None => self.previous.push(number),
        }
        number
    }

    /// Add a row of `(name, value)` pairs; a name given twice in one row is refused.
    fn push(
        &mut self,
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    ) -> Result<(), String> {
        let mut values: Values<'a> = Vec::with_capacity(self.previous.len());
        for (position, (name, value)) in pairs.into_iter().enumerate() {
            let number = self.number(name, position);
            if values.len() <= number {
                values.resize(number + 1, None);
            }
            if values[number].replace(value).is_some() {
                return Err(format!(
                    "column {:?} appears twice in one row",
                    self.table.columns[number]
                ));
            }
        }
        self.table.rows.push(values);
        Ok(())
    }

    /// Add a row whose values are the header's columns, in order.
    fn push_values(&mut self, values: Values<'a>) {
        self.table.rows.push(values);
    }

    fn finish(self) -> NamedTable<'a> {
        self.table
    }
}

/// The lines of `text`, each without its `\n`: what [`str::split_terminator`] on `'\n'` gives
/// (a `\r` before the `\n` stays; the last line need not end with one; an empty text has none),
/// with line ends found by SIMD [`memchr`](https://docs.rs/memchr). Outputs are long texts of short
/// rows, and splitting them is a pass over every byte a run collects: several times faster this
/// way than with `str::lines`, whose search starts afresh at each row.
pub fn split_lines(text: &str) -> SplitLines<'_> {
    SplitLines {
        text,
        ends: memchr::memchr_iter(b'\n', text.as_bytes()),
        start: 0,
    }
}

/// The iterator of [`split_lines`].
#[derive(Debug)]
pub struct SplitLines<'a> {
    text: &'a str,
    ends: memchr::Memchr<'a>,
    start: usize,
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let end = match self.ends.next() {
            Some(end) => end,
            None if self.start < self.text.len() => self.text.len(),
            None => return None,
        };
        // `\n` is one byte of UTF-8 that no other character holds: both ends are boundaries.
        let line = &self.text[self.start..end];
        self.start = end + 1;
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_is_split_terminator_at_line_ends() {
        for text in [
            "",
            "\n",
            "\n\n",
            "a",
            "a\n",
            "a\nb",
            "a\nb\n",
            "a\r\nb\r\n",
            "\na\n\nb",
            "é\n€x\n\u{1F600}",
        ] {
            let ours: Vec<&str> = split_lines(text).collect();
            let std: Vec<&str> = text.split_terminator('\n').collect();
            assert_eq!(ours, std, "{text:?}");
        }
        let long = "row of a package 1.2.3\n".repeat(1000);
        assert_eq!(split_lines(&long).count(), 1000);
    }
    use crate::Parser;

    fn named(parser: Parser, text: &str) -> NamedTable<'_> {
        match parser.read(text) {
            Ok(Parsed::Named(table)) => table,
            other => panic!("{other:?}"),
        }
    }

    fn lines(table: &NamedTable<'_>) -> Vec<String> {
        table.rows().map(|row| row.to_row().to_line()).collect()
    }

    #[test]
    fn errors_name_their_position() {
        let error = ParseError::at_offset("ab\ncde\nf", 5, "bad");
        assert_eq!(error.to_string(), "line 2 column 3: bad");
        assert_eq!(ParseError::at(Some(4), None, "x").to_string(), "line 4: x");
        assert_eq!(ParseError::at(None, None, "x").to_string(), "x");
    }

    #[test]
    fn rows_keep_the_output_order_of_columns() {
        let table = named(
            Parser::Json,
            r#"[{"b":"1","a":"2"},{"a":"3","c":"4"},{"c":"5","b":"6","a":"7"}]"#,
        );
        assert_eq!(table.columns(), ["b", "a", "c"]);
        assert_eq!(lines(&table), ["b=1 a=2", "a=3 c=4", "b=6 a=7 c=5"]);
        let third = table.rows().nth(2).unwrap();
        assert_eq!(third.get("c"), Some("5"));
        assert_eq!(third.get("d"), None);
        assert_eq!(table.rows().next().unwrap().get("c"), None);
    }

    /// A small, deterministic stand-in for `fuzz/fuzz_targets/rows.rs`: text made of the
    /// characters that matter to the parsers never makes them panic.
    #[test]
    fn arbitrary_text_is_an_error_or_rows_never_a_panic() {
        const ALPHABET: &[u8] = b"[]{}\":,\"\\\n\t |ab1.-eEu0";
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..1_000 {
            let len = (state % 24) as usize;
            let text: String = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ALPHABET[(state % ALPHABET.len() as u64) as usize] as char
                })
                .collect();
            for parser in [Parser::Json, Parser::Csv { delimiter: None }, Parser::Tsv] {
                if let Ok(Parsed::Named(table)) = parser.read(&text) {
                    table.rows().for_each(|row| drop(row.to_row()));
                }
            }
        }
    }

    #[test]
    fn a_column_twice_in_one_row_is_refused() {
        let mut builder = TableBuilder::default();
        let pair = |n: &'static str, v: &'static str| (Cow::Borrowed(n), Cow::Borrowed(v));
        builder.push([pair("a", "1"), pair("b", "2")]).unwrap();
        let error = builder.push([pair("b", "1"), pair("b", "2")]).unwrap_err();
        assert_eq!(error, "column \"b\" appears twice in one row");
        assert!(TableBuilder::with_header(vec!["x".into(), "x".into()]).is_err());
    }
}
