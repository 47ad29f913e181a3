//! The `json` parser: an array of objects (`osqueryi --json`), or objects one after another
//! (JSON Lines), each object a row.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Deserializer;

use super::{NamedTable, ParseError, TableBuilder};

/// What a row must be, as errors say it.
const EXPECTED_ROW: &str = "an object (a row of named columns)";

/// Read `text` as JSON rows. Output that starts with `[` is one array of objects; anything else
/// is a stream of objects (JSON Lines, or objects separated by any whitespace). Blank output has
/// no rows.
pub(crate) fn parse(text: &str) -> Result<NamedTable<'_>, ParseError> {
    let mut builder = TableBuilder::default();
    if text.trim_start().starts_with('[') {
        let mut deserializer = Deserializer::from_str(text);
        Rows(&mut builder)
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end())
            .map_err(from_json)?;
    } else {
        let mut stream = Deserializer::from_str(text).into_iter::<Object<'_>>();
        while let Some(object) = stream.next() {
            let object = object.map_err(from_json)?;
            builder
                .push(object.0)
                .map_err(|message| ParseError::at_offset(text, stream.byte_offset(), message))?;
        }
    }
    Ok(builder.finish())
}

/// A serde_json error as a [`ParseError`]: its message without the position it appends.
fn from_json(error: serde_json::Error) -> ParseError {
    let message = error.to_string();
    let position = format!(" at line {} column {}", error.line(), error.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    match error.line() {
        0 => ParseError::at(None, None, message),
        line => ParseError::at(Some(line as u64), Some(error.column() as u64), message),
    }
}

/// The array of rows, read straight into the table (no row is held twice).
struct Rows<'b, 'a>(&'b mut TableBuilder<'a>);

impl<'de, 'b> DeserializeSeed<'de> for Rows<'b, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, 'b> Visitor<'de> for Rows<'b, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of objects")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some(object) = seq.next_element::<Object<'de>>()? {
            self.0.push(object.0).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

/// One object's `(name, value)` pairs, in order.
struct Object<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED_ROW)
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'de>, M::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Text(name)) = map.next_key()? {
            let Text(value) = map.next_value()?;
            pairs.push((name, value));
        }
        Ok(Object(pairs))
    }
}

/// A column name or value as text: borrowed when the JSON holds it as it reads; other scalars as
/// JSON spells them; arrays and objects as compact JSON.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_string())))
    }

    fn visit_string<E: de::Error>(self, text: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text)))
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(if value { "true" } else { "false" })))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(value.to_string())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(value.to_string())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Text<'de>, E> {
        // serde_json's own spelling of the number (it reads no NaN or infinity).
        let number = serde_json::Number::from_f64(value);
        Ok(Text(Cow::Owned(number.map_or_else(
            || value.to_string(),
            |number| number.to_string(),
        ))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed("null")))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, seq: S) -> Result<Text<'de>, S::Error> {
        let value = serde_json::Value::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Text(Cow::Owned(value.to_string())))
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Text<'de>, M::Error> {
        let value = serde_json::Value::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Text(Cow::Owned(value.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str) -> Vec<String> {
        parse(text)
            .unwrap()
            .rows()
            .map(|row| row.to_row().to_line())
            .collect()
    }

    #[test]
    fn an_array_of_objects_as_osqueryi_writes_it() {
        let text = "[\n  {\"name\":\"sshd\",\"pid\":\"812\",\"port\":\"22\"},\n  \
                    {\"name\":\"nginx\",\"pid\":\"99\",\"port\":\"80\"}\n]\n";
        assert_eq!(
            rows(text),
            ["name=sshd pid=812 port=22", "name=nginx pid=99 port=80"]
        );
        let table = parse(text).unwrap();
        assert!(matches!(table.columns()[0], Cow::Borrowed("name")));
        assert_eq!(rows("[]"), Vec::<String>::new());
        assert_eq!(rows("[\n\n]\n"), Vec::<String>::new());
    }

    #[test]
    fn json_lines_and_blank_output() {
        assert_eq!(
            rows("{\"a\":\"1\"}\n\n{\"a\":\"2\"} {\"a\":\"3\"}\n"),
            ["a=1", "a=2", "a=3"]
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse(" \n\t\n").unwrap().is_empty());
    }

    #[test]
    fn other_values_become_canonical_text() {
        let text = r#"{"n":1,"f":1.50,"big":18446744073709551615,"neg":-3,"t":true,"z":null,
                       "list":[1, "a" ,{"x" : 2}],"obj":{"k":"v"},"esc":"a\"b\u00e9"}"#;
        let table = parse(text).unwrap();
        let row = table.rows().next().unwrap();
        let values: Vec<(&str, &str)> = row.iter().collect();
        assert_eq!(
            values,
            [
                ("n", "1"),
                ("f", "1.5"),
                ("big", "18446744073709551615"),
                ("neg", "-3"),
                ("t", "true"),
                ("z", "null"),
                ("list", r#"[1,"a",{"x":2}]"#),
                ("obj", r#"{"k":"v"}"#),
                ("esc", "a\"bé"),
            ]
        );
    }

    #[test]
    fn malformed_output_says_where() {
        let error = parse("[\n  {\"a\":\"1\"},\n  {\"a\" \"2\"}\n]").unwrap_err();
        assert_eq!(error.to_string(), "line 3 column 8: expected `:`");
        let error = parse("{\"a\":\"1\"}\n{\"a\":\n").unwrap_err();
        assert_eq!(error.line, Some(3));
        assert!(error.message.contains("EOF"), "{error}");
        let error = parse("[{\"a\":\"1\"}, \"text\"]").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 1 column 18: invalid type: string \"text\", expected an object (a row of named \
             columns)"
        );
        let error = parse("[{\"a\":\"1\"}] trailing").unwrap_err();
        assert_eq!(error.to_string(), "line 1 column 13: trailing characters");
    }

    #[test]
    fn a_key_twice_in_one_object_is_refused_with_its_position() {
        let error = parse("[{\"a\":\"1\"},\n {\"a\":\"1\",\"a\":\"2\"}]").unwrap_err();
        assert_eq!(error.line, Some(2));
        assert!(error.message.contains("\"a\" appears twice"), "{error}");
        let error = parse("{\"a\":\"1\"}\n{\"b\":\"1\",\"b\":\"2\"}\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "line 2 column 18: column \"b\" appears twice in one row"
        );
    }
}
