//! The `csv` and `tsv` parsers: a header row names the columns, every other row has one value
//! per column.

use std::borrow::Cow;

use csv::{ErrorKind, ReaderBuilder, StringRecord};

use super::{NamedTable, ParseError, TableBuilder};

/// How fields are separated and quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dialect {
    /// The byte between fields.
    pub(crate) delimiter: u8,
    /// Whether `"` quotes fields (CSV), or is an ordinary character (TSV).
    pub(crate) quoting: bool,
}

impl Dialect {
    /// CSV with `delimiter`, one ASCII character (a comma when not given).
    pub(crate) fn csv(delimiter: Option<&str>) -> Result<Self, ParseError> {
        let delimiter = match delimiter {
            None => b',',
            Some(text) => match text.as_bytes() {
                [byte] if byte.is_ascii() && *byte != b'"' && *byte != b'\n' => *byte,
                _ => {
                    return Err(ParseError::at(
                        None,
                        None,
                        format!("the csv delimiter must be one ASCII character, not {text:?}"),
                    ));
                }
            },
        };
        Ok(Dialect {
            delimiter,
            quoting: true,
        })
    }

    /// Tab-separated values, in which quotes are ordinary characters.
    pub(crate) fn tsv() -> Self {
        Dialect {
            delimiter: b'\t',
            quoting: false,
        }
    }
}

/// Read `text` as a header row and rows of as many fields. Blank lines are skipped; blank output
/// has neither columns nor rows.
pub(crate) fn parse(text: &str, dialect: Dialect) -> Result<NamedTable<'_>, ParseError> {
    let mut reader = ReaderBuilder::new()
        .delimiter(dialect.delimiter)
        .quoting(dialect.quoting)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header: Vec<Cow<'_, str>> = reader
        .headers()
        .map_err(from_csv)?
        .iter()
        .map(|name| Cow::Owned(name.to_string()))
        .collect();
    let width = header.len();
    let mut builder = TableBuilder::with_header(header)
        .map_err(|message| ParseError::at(Some(1), None, message))?;
    let mut record = StringRecord::new();
    while reader.read_record(&mut record).map_err(from_csv)? {
        let mut values = Vec::with_capacity(width);
        values.extend(
            record
                .iter()
                .map(|field| Some(Cow::Owned(field.to_string()))),
        );
        builder.push_values(values);
    }
    Ok(builder.finish())
}

/// A csv error as a [`ParseError`] on its line.
fn from_csv(error: csv::Error) -> ParseError {
    let line = error.position().map(|position| position.line());
    let message = match error.kind() {
        ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        ErrorKind::Utf8 { err, .. } => format!("field {} is not UTF-8", err.field() + 1),
        _ => error.to_string(),
    };
    ParseError::at(line, None, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, dialect: Dialect) -> Vec<String> {
        parse(text, dialect)
            .unwrap()
            .rows()
            .map(|row| row.to_row().to_line())
            .collect()
    }

    #[test]
    fn csv_with_a_header_and_quotes() {
        let text = "name,path,cmdline\nsshd,/usr/sbin/sshd,\"sshd -D\"\n\nnc,/tmp/nc,\"nc -l \"\"x\"\"\"\n";
        let csv = Dialect::csv(None).unwrap();
        assert_eq!(
            rows(text, csv),
            [
                r#"name=sshd path=/usr/sbin/sshd cmdline="sshd -D""#,
                r#"name=nc path=/tmp/nc cmdline="nc -l \"x\"""#
            ]
        );
        assert_eq!(
            parse(text, csv).unwrap().columns(),
            ["name", "path", "cmdline"]
        );
        let pipes = Dialect::csv(Some("|")).unwrap();
        assert_eq!(rows("a|b\r\n1|2\r\n", pipes), ["a=1 b=2"]);
        assert!(parse("", csv).unwrap().columns().is_empty());
    }

    #[test]
    fn tsv_reads_quotes_as_text() {
        assert_eq!(
            rows("user\tshell\nroot\t\"/bin/sh\"\n", Dialect::tsv()),
            [r#"user=root shell="\"/bin/sh\"""#]
        );
    }

    #[test]
    fn malformed_rows_say_which_line() {
        let csv = Dialect::csv(None).unwrap();
        let error = parse("a,b\n1,2\n3\n", csv).unwrap_err();
        assert_eq!(error.to_string(), "line 3: 1 fields where the header has 2");
        let error = parse("a,a\n1,2\n", csv).unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 1: column \"a\" appears twice in the header"
        );
        let error = Dialect::csv(Some("ab")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the csv delimiter must be one ASCII character, not \"ab\""
        );
    }
}
