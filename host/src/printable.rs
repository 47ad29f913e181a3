//! Text that came from a plugin or from evidence, made safe for a terminal.
//!
//! A compromised host writes the process arguments, file names and command output diffy shows,
//! and a terminal obeys what it is sent: `\e[1A\e[2K` erases the line above, `\e[2J` the screen,
//! `\r` lets a row overwrite itself, a bidirectional override makes text read backwards. So every
//! table and text output passes such strings through [`printable`], which writes each of those
//! characters as a visible escape (`\e`, `\x07`, `\u{9b}`); the JSON outputs stay exact, and are
//! where an escape and the same characters typed literally can be told apart. [`printable_json`]
//! applies the same rule to JSON text shown to people, in JSON's own notation.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether a terminal could act on `c` rather than draw it: the C0 controls (newline and tab
/// included, so that one value stays one line and one cell), DEL, the C1 controls (some
/// terminals take U+009B as CSI), and the characters that reorder or break what is drawn around
/// them (bidirectional controls, line and paragraph separators).
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every character a terminal could act on written as a visible escape: `\e` for
/// ESC, `\n`, `\r` and `\t`, `\xHH` for the other C0 controls and DEL, `\u{HHHH}` beyond.
/// Borrowed, without a copy, when nothing needs escaping (the usual case).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\u{1b}' => shown.push_str("\\e"),
            '\n' => shown.push_str("\\n"),
            '\r' => shown.push_str("\\r"),
            '\t' => shown.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(shown, "\\x{:02x}", u32::from(c));
            }
            c if is_unsafe(c) => {
                let _ = write!(shown, "\\u{{{:x}}}", u32::from(c));
            }
            c => shown.push(c),
        }
    }
    Cow::Owned(shown)
}

/// JSON text (as `serde_json` writes it) with every character a terminal could act on written as
/// a JSON escape (`\u009b`), so that it stays valid JSON of the same value. `serde_json` escapes
/// the C0 controls inside strings, so a newline is the layout's own; DEL, C1 and the reordering
/// characters it leaves as they are, and only inside strings can they appear.
pub fn printable_json(json: &str) -> Cow<'_, str> {
    let escaped = |c: char| c != '\n' && is_unsafe(c);
    if !json.chars().any(escaped) {
        return Cow::Borrowed(json);
    }
    let mut shown = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            let _ = write!(shown, "\\u{:04x}", u32::from(c));
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

/// Whether `text` holds nothing a terminal could act on, line breaks aside: what every text
/// output must satisfy (the property and fuzz tests check it).
#[cfg(test)]
pub fn is_printable(text: &str) -> bool {
    text.chars().all(|c| c == '\n' || !is_unsafe(c))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_are_visible_and_named() {
        assert_eq!(
            printable("\u{1b}[1A\u{1b}[2K\rfake: nothing here"),
            "\\e[1A\\e[2K\\rfake: nothing here"
        );
        assert_eq!(printable("a\u{7}b\u{7f}\0"), "a\\x07b\\x7f\\x00");
        assert_eq!(printable("tab\tline\n"), "tab\\tline\\n");
        assert_eq!(printable("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(printable("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["root  1  /usr/sbin/sshd -D", "café ☕ 東京", "C:\\path", ""] {
            assert!(matches!(printable(text), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn json_stays_json_of_the_same_value() {
        let value = serde_json::json!({"stdout": "a\u{1b}[2J\u{7f}\u{9b}\u{202e}b"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let shown = printable_json(&text);
        assert!(is_printable(&shown), "{shown}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&shown).unwrap(),
            value
        );
    }

    proptest! {
        #[test]
        fn nothing_unsafe_survives(text in any::<String>()) {
            let shown = printable(&text);
            prop_assert!(shown.chars().all(|c| !is_unsafe(c)), "{shown:?}");
        }

        #[test]
        fn json_of_any_string_survives_as_itself(text in any::<String>()) {
            let json = serde_json::to_string_pretty(&serde_json::json!({ "s": text })).unwrap();
            let shown = printable_json(&json);
            prop_assert!(is_printable(&shown), "{shown:?}");
            let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
            prop_assert_eq!(back["s"].as_str(), Some(text.as_str()));
        }
    }
}
