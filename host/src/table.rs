//! The tables diffy prints: no borders, every cell made [`printable`].

use comfy_table::{ContentArrangement, Table, presets};

use crate::printable::printable;

/// A table with `header`, its cells wrapped to fit the terminal.
pub fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
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
