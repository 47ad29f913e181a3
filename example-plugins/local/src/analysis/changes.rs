//! Rows that changed rather than came and went: when a command names key columns, a row added
//! and a row removed that share their key are one row whose other values changed.

use std::collections::{HashMap, HashSet};

use diffy_plugin_api::ChangedRow;

use super::book::{RowBook, RowId, key_row};

/// A host's rows against its reference, once rows sharing a key are paired.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Changes {
    pub(crate) added: Vec<RowId>,
    pub(crate) removed: Vec<RowId>,
    /// `(before, after)`: the reference's row and this host's.
    pub(crate) changed: Vec<(RowId, RowId)>,
}

/// Pair the `added` and `removed` rows of `book` that share a key. A key that more than one row
/// of either side has does not say which row became which: those rows stay added and removed.
pub(crate) fn pair(book: &RowBook, added: Vec<RowId>, removed: Vec<RowId>) -> Changes {
    type Sides = (Vec<RowId>, Vec<RowId>);
    let mut by_key: HashMap<Vec<(&str, &str)>, Sides> = HashMap::new();
    for &id in &removed {
        if let Some(key) = book.key(id) {
            by_key.entry(key).or_default().0.push(id);
        }
    }
    if by_key.is_empty() {
        return Changes {
            added,
            removed,
            changed: Vec::new(),
        };
    }
    for &id in &added {
        if let Some(key) = book.key(id) {
            by_key.entry(key).or_default().1.push(id);
        }
    }
    let mut changed: Vec<(RowId, RowId)> = by_key
        .into_values()
        .filter_map(
            |(before, after)| match (before.as_slice(), after.as_slice()) {
                (&[before], &[after]) => Some((before, after)),
                _ => None,
            },
        )
        .collect();
    changed.sort_unstable();
    let (befores, afters): (HashSet<RowId>, HashSet<RowId>) = changed.iter().copied().unzip();
    let (mut added, mut removed) = (added, removed);
    added.retain(|id| !afters.contains(id));
    removed.retain(|id| !befores.contains(id));
    Changes {
        added,
        removed,
        changed,
    }
}

/// The changed rows as a report lists them, sorted by how their keys read.
pub(crate) fn changed_rows(book: &RowBook, changed: &[(RowId, RowId)]) -> Vec<ChangedRow> {
    let mut rows: Vec<(String, ChangedRow)> = changed
        .iter()
        .map(|&(before, after)| {
            let key = key_row(&book.key(after).unwrap_or_default());
            let row = ChangedRow {
                before: book.row(before),
                after: book.row(after),
                columns: book.changed_columns(before, after),
                key,
            };
            (row.key.to_line(), row)
        })
        .collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter().map(|(_, row)| row).collect()
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::{Command, Parser};

    use super::*;
    use crate::analysis::book::sorted_rows;

    fn rows(book: &RowBook, ids: &[RowId]) -> Vec<String> {
        sorted_rows(book, ids.iter().copied())
            .iter()
            .map(|row| row.to_line())
            .collect()
    }

    fn ports() -> Command {
        Command::new("ports", "osqueryi")
            .parse(Parser::Json)
            .key_columns(["port"])
    }

    #[test]
    fn a_row_whose_key_stayed_changed() {
        let command = ports();
        let mut book = RowBook::new(Some(&command), &[]);
        let base = book
            .enter(r#"[{"port":"22","path":"/usr/sbin/sshd"},{"port":"80","path":"/bin/httpd"}]"#)
            .unwrap();
        let host = book
            .enter(r#"[{"port":"22","path":"/tmp/sshd"},{"port":"4444","path":"/tmp/nc"}]"#)
            .unwrap();
        let added: Vec<RowId> = host
            .iter()
            .copied()
            .filter(|id| !base.contains(id))
            .collect();
        let removed: Vec<RowId> = base
            .iter()
            .copied()
            .filter(|id| !host.contains(id))
            .collect();
        let changes = pair(&book, added, removed);
        assert_eq!(rows(&book, &changes.added), ["port=4444 path=/tmp/nc"]);
        assert_eq!(rows(&book, &changes.removed), ["port=80 path=/bin/httpd"]);
        let changed = changed_rows(&book, &changes.changed);
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].key.to_line(), "port=22");
        assert_eq!(changed[0].before.to_line(), "port=22 path=/usr/sbin/sshd");
        assert_eq!(changed[0].after.to_line(), "port=22 path=/tmp/sshd");
        assert_eq!(changed[0].columns, ["path"]);
    }

    #[test]
    fn a_key_shared_by_two_rows_pairs_nothing() {
        let command = ports();
        let mut book = RowBook::new(Some(&command), &[]);
        let base = book.enter(r#"{"port":"22","path":"/a"}"#).unwrap();
        let host = book
            .enter(r#"{"port":"22","path":"/b"} {"port":"22","path":"/c"}"#)
            .unwrap();
        let changes = pair(&book, host.clone(), base.clone());
        assert_eq!((changes.added, changes.removed), (host, base));
        assert!(changes.changed.is_empty());
    }
}
