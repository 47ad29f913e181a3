//! The tables diffy prints: no borders, every cell made [`printable`], and fitted to the terminal
//! only when the terminal is wide enough for that to help.

use comfy_table::{ContentArrangement, Table, presets};

use crate::printable::printable;

/// The fewest terminal columns per table column for which wrapping cells to fit beats letting
/// the lines run long: narrower, cells wrap to a few characters each and the table becomes
/// unreadable (a terminal that reports 0 columns would get one character per column).
const MIN_COLUMN_WIDTH: u16 = 8;

/// A table with `header`: cells wrapped to the terminal's width when it has room for them, laid
/// out as for a pipe (each column as wide as its widest cell) when it has not, when its width is
/// unknown, and when stdout is not a terminal.
pub fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.iter().copied());
    let columns = u16::try_from(header.len()).unwrap_or(u16::MAX);
    let arrangement = match table.width() {
        Some(width) if width >= columns.saturating_mul(MIN_COLUMN_WIDTH) => {
            ContentArrangement::Dynamic
        }
        _ => ContentArrangement::Disabled,
    };
    table.set_content_arrangement(arrangement);
    table
}

/// Add a row whose cells may hold a plugin's or evidence's text.
pub fn add_row<S: AsRef<str>>(table: &mut Table, cells: impl IntoIterator<Item = S>) {
    table.add_row(
        cells
            .into_iter()
            .map(|cell| printable(cell.as_ref()).into_owned())
            .collect::<Vec<_>>(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_printable() {
        let mut table = new_table(&["NAME", "DESCRIPTION"]);
        add_row(&mut table, ["diffy-x", "a\u{1b}[2Jb"]);
        let text = table.to_string();
        assert!(text.contains("a\\e[2Jb"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
