//! Records as the host keeps them on their way through a run: the JSON text a collection answered,
//! never decoded and encoded again, with the ids and status read from it. A batch of them is
//! encoded once, by concatenation, into the one document that both the persistence
//! (`append_records`) and the analysis (`feed`) take.

use std::borrow::Cow;

use diffy_plugin_api::{Record, RecordStatus};
use serde::Deserialize;
use serde::de::Error as _;
use serde_json::value::RawValue;

/// A record as JSON text, with its ids and status.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// The target id.
    pub target: String,
    /// The command id.
    pub command: String,
    /// How the attempt ended.
    pub status: RecordStatus,
    /// The whole record.
    pub json: Box<RawValue>,
}

/// What a record must look like, checked without decoding its text fields: `stdout` and `stderr`
/// are the bulk of a record, and skipping a JSON string is much cheaper than unescaping it.
#[derive(Deserialize)]
struct Shape<'a> {
    #[serde(borrow)]
    target: Cow<'a, str>,
    #[serde(borrow)]
    command: Cow<'a, str>,
    status: RecordStatus,
    #[serde(default)]
    #[allow(dead_code)] // checked, not used
    exit_code: Option<i32>,
    #[serde(borrow)]
    #[allow(dead_code)]
    collected_at: JsonString<'a>,
    #[serde(default)]
    #[allow(dead_code)]
    duration_ms: Option<u64>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    stdout: Option<JsonString<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    stderr: Option<JsonString<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    sha256: Option<JsonString<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    error: Option<JsonString<'a>>,
    #[serde(default)]
    #[allow(dead_code)]
    truncated: bool,
}

/// A JSON string, checked to be one and left encoded.
struct JsonString<'a>(#[allow(dead_code)] &'a RawValue);

impl<'de: 'a, 'a> Deserialize<'de> for JsonString<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = <&RawValue>::deserialize(deserializer)?;
        if raw.get().starts_with('"') {
            Ok(JsonString(raw))
        } else {
            Err(D::Error::custom(format!(
                "invalid type: {}, expected a string",
                raw.get()
            )))
        }
    }
}

impl RawRecord {
    /// A record from its JSON text, checked to be a record.
    pub fn from_json(json: &RawValue) -> Result<Self, serde_json::Error> {
        let shape: Shape<'_> = serde_json::from_str(json.get())?;
        Ok(RawRecord {
            target: shape.target.into_owned(),
            command: shape.command.into_owned(),
            status: shape.status,
            json: json.to_owned(),
        })
    }

    /// A record the host made itself (a failed collection's).
    pub fn from_record(record: &Record) -> Self {
        RawRecord {
            target: record.target.clone(),
            command: record.command.clone(),
            status: record.status,
            json: serde_json::value::to_raw_value(record).expect("records serialise"),
        }
    }

    /// The record, decoded.
    pub fn decode(&self) -> Result<Record, serde_json::Error> {
        serde_json::from_str(self.json.get())
    }
}

/// Records as one JSON array, written by concatenation.
pub fn json_array<'a>(records: impl IntoIterator<Item = &'a RawValue>) -> String {
    let mut text = String::from("[");
    for (index, record) in records.into_iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(record.get());
    }
    text.push(']');
    text
}

/// A batch of a run's records and the one document that carries it:
/// `{"run":"<id>","records":[…]}`, a `RecordBatch` in `diffy_plugin_api::protocol`.
#[derive(Debug)]
pub struct EncodedBatch {
    /// The run id.
    pub run: String,
    /// The records.
    pub records: Vec<RawRecord>,
    /// The document.
    pub bytes: Vec<u8>,
}

impl EncodedBatch {
    /// Encode `records` of run `run`.
    pub fn new(run: &str, records: Vec<RawRecord>) -> Self {
        let size: usize = records.iter().map(|r| r.json.get().len() + 1).sum();
        let mut text = String::with_capacity(size + run.len() + 32);
        text.push_str(r#"{"run":"#);
        text.push_str(&serde_json::to_string(run).expect("strings serialise"));
        text.push_str(r#","records":"#);
        text.push_str(&json_array(records.iter().map(|r| &*r.json)));
        text.push('}');
        EncodedBatch {
            run: run.to_string(),
            records,
            bytes: text.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_checked_and_kept_as_they_came() {
        let text = r#"{"target":"w\"1","command":"ps","status":"ok","collected_at":"t","stdout":"a \"b\"\n","x":1}"#;
        let raw: &RawValue = serde_json::from_str(text).unwrap();
        let record = RawRecord::from_json(raw).unwrap();
        assert_eq!(
            (record.target.as_str(), record.status),
            ("w\"1", RecordStatus::Ok)
        );
        assert_eq!(record.json.get(), text);
        assert_eq!(record.decode().unwrap().stdout, "a \"b\"\n");
        for bad in [
            r#"{"target":"w","command":"ps","status":"ok","collected_at":"t","stdout":7}"#,
            r#"{"target":"w","command":"ps","status":"ok","collected_at":"t","exit_code":"x"}"#,
            r#"{"target":"w","status":"ok","collected_at":"t"}"#,
        ] {
            let raw: &RawValue = serde_json::from_str(bad).unwrap();
            assert!(RawRecord::from_json(raw).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_batch_is_one_document() {
        let one = RawRecord::from_record(&Record::new("a", "c", RecordStatus::Ok, "x".into()));
        let batch = EncodedBatch::new("r\"1", vec![one.clone(), one]);
        let value: serde_json::Value = serde_json::from_slice(&batch.bytes).unwrap();
        assert_eq!(value["run"], "r\"1");
        assert_eq!(value["records"][1]["stdout"], "x");
    }
}
