//! Records as the host keeps them on their way through a run: the JSON text a collection answered,
//! never decoded and encoded again, with the ids and status read from it. A batch of them is
//! encoded once, by concatenation, into the document both the persistence and the analysis take:
//! JSON Lines (`append_lines`, `feed_lines`, since API 0.2.2), or one JSON object for components
//! built before it (`append_records`, `feed`).

use std::borrow::Cow;
use std::sync::OnceLock;

use diffy_plugin_api::protocol::{self, BatchHead, RecordHead};
use diffy_plugin_api::{Record, RecordStatus};

use crate::component::{KeptHead, LinePart, SharedInput};
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
    text: RecordText,
}

/// Where a record's text is.
#[derive(Debug, Clone)]
enum RecordText {
    /// Here: the whole record, a JSON object on one line, checked to be a record.
    Here(Box<str>),
    /// In the isolated plugin's runner that collected it, checked there: line `index` of the
    /// answer it keeps as `answer`, `len` bytes long. Only a batch put together in that runner
    /// (`EncodedBatch::parts`) carries it.
    Kept {
        answer: u64,
        index: usize,
        len: usize,
    },
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
    /// A record from its JSON text (an element of a `collection.get` answer, so known to be
    /// JSON), checked to be a record. Line breaks between its tokens become spaces, so that it
    /// travels as one line.
    pub fn from_json(json: &RawValue) -> Result<Self, serde_json::Error> {
        Self::from_line(&one_line(json.get()))
    }

    /// A record from one line of a `collection.get_lines` answer, checked to be a record (and
    /// so JSON) in a single pass over its text.
    pub fn from_line(line: &str) -> Result<Self, serde_json::Error> {
        let head = Self::check_line(line)?;
        Ok(RawRecord {
            target: head.target,
            command: head.command,
            status: head.status,
            text: RecordText::Here(line.into()),
        })
    }

    /// The head of one line of a `collection.get_lines` answer, checked to be a record —
    /// what [`from_line`](Self::from_line) checks — without copying the line: what a runner that
    /// keeps the answer tells the host.
    pub fn check_line(line: &str) -> Result<KeptHead, serde_json::Error> {
        let shape: Shape<'_> = serde_json::from_str(line)?;
        Ok(KeptHead {
            target: shape.target.into_owned(),
            command: shape.command.into_owned(),
            status: shape.status,
            len: line.len(),
        })
    }

    /// Line `index` of the answer kept as `answer` where the collection's calls are served,
    /// checked there to be a record with this head.
    pub fn kept(head: KeptHead, answer: u64, index: usize) -> Self {
        RawRecord {
            target: head.target,
            command: head.command,
            status: head.status,
            text: RecordText::Kept {
                answer,
                index,
                len: head.len,
            },
        }
    }

    /// A record the host made itself (a failed collection's).
    pub fn from_record(record: &Record) -> Self {
        RawRecord {
            target: record.target.clone(),
            command: record.command.clone(),
            status: record.status,
            text: RecordText::Here(
                serde_json::to_string(record)
                    .expect("records serialise")
                    .into(),
            ),
        }
    }

    /// The record's JSON text, unless it is kept in an isolated plugin's runner.
    pub fn json(&self) -> Option<&str> {
        match &self.text {
            RecordText::Here(json) => Some(json),
            RecordText::Kept { .. } => None,
        }
    }

    /// The length of the record's JSON text.
    pub fn text_len(&self) -> usize {
        match &self.text {
            RecordText::Here(json) => json.len(),
            RecordText::Kept { len, .. } => *len,
        }
    }

    /// The record's text, for the uses that only records collected here reach: records are
    /// kept in a runner only for a run whose batches are put together there (see
    /// `RunSink::may_keep_records_of`).
    fn here(&self) -> &str {
        self.json()
            .expect("only a batch put together in the runner carries a record kept there")
    }

    /// The record, decoded.
    pub fn decode(&self) -> Result<Record, serde_json::Error> {
        serde_json::from_str(self.here())
    }

    /// The record as a [`RawValue`], for documents that embed one (checked again: only calls to
    /// components built before API 0.2.1 need it).
    pub fn raw_value(&self) -> &RawValue {
        serde_json::from_str(self.here()).expect("a record's JSON was checked when it came")
    }

    fn head(&self) -> RecordHead<'_> {
        RecordHead {
            target: Cow::Borrowed(&self.target),
            command: Cow::Borrowed(&self.command),
            status: self.status,
        }
    }
}

/// `json` on one line: a line break in JSON is whitespace between tokens (a string holds `\n`,
/// never the byte), so a space does instead.
fn one_line(json: &str) -> Cow<'_, str> {
    // Two memchr scans are much faster than one scan for either character.
    if json.contains('\n') || json.contains('\r') {
        Cow::Owned(json.replace(['\n', '\r'], " "))
    } else {
        Cow::Borrowed(json)
    }
}

/// Records as one JSON array, written by concatenation.
pub fn json_array<'a>(records: impl IntoIterator<Item = &'a RawRecord>) -> String {
    let mut text = String::from("[");
    for (index, record) in records.into_iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(record.here());
    }
    text.push(']');
    text
}

/// A batch of a run's records and the documents that carry it, each encoded once, when a
/// component first asks for it: JSON Lines (`protocol::encode_batch_lines`), or for components
/// built before API 0.2.2 `{"run":"<id>","records":[…]}`, a `protocol::RecordBatch`.
#[derive(Debug)]
pub struct EncodedBatch {
    /// The run id.
    pub run: String,
    /// The records.
    pub records: Vec<RawRecord>,
    /// When the JSON Lines go to components served by one process: sent there once.
    pub shared_lines: Option<SharedInput>,
    lines: OnceLock<Vec<u8>>,
    json: OnceLock<Vec<u8>>,
}

impl EncodedBatch {
    /// The batch of `records` of run `run`.
    pub fn new(run: &str, records: Vec<RawRecord>) -> Self {
        EncodedBatch {
            run: run.to_string(),
            records,
            shared_lines: None,
            lines: OnceLock::new(),
            json: OnceLock::new(),
        }
    }

    /// The batch as JSON Lines, for `append_lines` and `feed_lines`: its head line and the
    /// lines of the records held here — all of them, unless some are kept in a runner, which
    /// puts the batch together from these and its own ([`parts`](Self::parts)).
    pub fn lines(&self) -> &[u8] {
        self.lines.get_or_init(|| {
            let head = BatchHead {
                run: Cow::Borrowed(&self.run),
                records: self.records.iter().map(RawRecord::head).collect(),
            };
            let mut out = serde_json::to_vec(&head).expect("batch heads serialise");
            out.push(b'\n');
            out.reserve(self.records.iter().map(|r| r.text_len() + 1).sum());
            for json in self.records.iter().filter_map(RawRecord::json) {
                protocol::push_record_line(&mut out, json);
            }
            out
        })
    }

    /// How a runner puts the batch together from [`lines`](Self::lines) and the records it
    /// keeps, in order; none when every record is here.
    pub fn parts(&self) -> Option<Vec<LinePart>> {
        if self.records.iter().all(|r| r.json().is_some()) {
            return None;
        }
        let mut parts: Vec<LinePart> = Vec::new();
        for record in &self.records {
            match (&record.text, parts.last_mut()) {
                (RecordText::Here(_), Some(LinePart::Sent { count })) => *count += 1,
                (RecordText::Here(_), _) => parts.push(LinePart::Sent { count: 1 }),
                (
                    &RecordText::Kept { answer, index, .. },
                    Some(LinePart::Kept {
                        answer: last,
                        first,
                        count,
                    }),
                ) if *last == answer && *first + *count == index => *count += 1,
                (&RecordText::Kept { answer, index, .. }, _) => parts.push(LinePart::Kept {
                    answer,
                    first: index,
                    count: 1,
                }),
            }
        }
        Some(parts)
    }

    /// The batch as one JSON object, for `append_records` and `feed`.
    pub fn json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            let size: usize = self.records.iter().map(|r| r.text_len() + 1).sum();
            let mut text = String::with_capacity(size + self.run.len() + 32);
            text.push_str(r#"{"run":"#);
            text.push_str(&serde_json::to_string(&self.run).expect("strings serialise"));
            text.push_str(r#","records":"#);
            text.push_str(&json_array(&self.records));
            text.push('}');
            text.into_bytes()
        })
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
        assert_eq!(record.json(), Some(text));
        assert_eq!(record.decode().unwrap().stdout, "a \"b\"\n");
        let pretty = "{\n  \"target\": \"w\",\r\n  \"command\": \"ps\", \"status\": \"ok\",\n  \"collected_at\": \"t\"}";
        let raw: &RawValue = serde_json::from_str(pretty).unwrap();
        let record = RawRecord::from_json(raw).unwrap();
        let json = record.json().unwrap();
        assert!(!json.contains(['\n', '\r']), "{json}");
        assert_eq!(record.decode().unwrap().command, "ps");
        for bad in [
            r#"{"target":"w","command":"ps","status":"ok","collected_at":"t","stdout":7}"#,
            r#"{"target":"w","command":"ps","status":"ok","collected_at":"t","exit_code":"x"}"#,
            r#"{"target":"w","status":"ok","collected_at":"t"}"#,
        ] {
            let raw: &RawValue = serde_json::from_str(bad).unwrap();
            assert!(RawRecord::from_json(raw).is_err(), "{bad}");
            assert!(RawRecord::from_line(bad).is_err(), "{bad}");
        }
        let truncated = r#"{"target":"w","command":"ps","status":"ok","collected_at":"t""#;
        assert!(RawRecord::from_line(truncated).is_err());
    }

    #[test]
    fn a_batch_is_one_document() {
        let one = RawRecord::from_record(&Record::new("a", "c", RecordStatus::Ok, "x".into()));
        let batch = EncodedBatch::new("r\"1", vec![one.clone(), one]);
        let value: serde_json::Value = serde_json::from_slice(batch.json()).unwrap();
        assert_eq!(value["run"], "r\"1");
        assert_eq!(value["records"][1]["stdout"], "x");
        let (head, lines) = protocol::read_batch_lines(batch.lines()).unwrap();
        assert_eq!((&*head.run, head.records[1].target.as_ref()), ("r\"1", "a"));
        let record: Record = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(record.stdout, "x");
    }

    fn kept(target: &str, answer: u64, index: usize) -> RawRecord {
        let head = KeptHead {
            target: target.into(),
            command: "c".into(),
            status: RecordStatus::Ok,
            len: 40,
        };
        RawRecord::kept(head, answer, index)
    }

    #[test]
    fn a_batch_of_records_held_here_is_the_protocol_s_json_lines() {
        let records: Vec<RawRecord> = ["a", "b\"", "c"]
            .iter()
            .map(|t| RawRecord::from_record(&Record::new(*t, "c", RecordStatus::Ok, "x\n".into())))
            .collect();
        let batch = EncodedBatch::new("r", records.clone());
        let expected = protocol::encode_batch_lines(
            "r",
            records.iter().map(|r| (r.head(), r.json().unwrap())),
        );
        assert_eq!(batch.lines(), expected.as_slice());
        assert_eq!(batch.parts(), None, "nothing to put together elsewhere");
    }

    #[test]
    fn a_batch_with_kept_records_names_where_each_line_comes_from() {
        let here = RawRecord::from_record(&Record::new("h", "c", RecordStatus::Error, "".into()));
        let records = vec![
            kept("a", 7, 0),
            kept("a", 7, 1),
            here.clone(),
            here.clone(),
            kept("b", 9, 0),
            // Not the next line of answer 9: a part of its own.
            kept("b", 9, 2),
            kept("c", 7, 2),
        ];
        let batch = EncodedBatch::new("r", records);
        assert_eq!(
            batch.parts().unwrap(),
            vec![
                LinePart::Kept {
                    answer: 7,
                    first: 0,
                    count: 2
                },
                LinePart::Sent { count: 2 },
                LinePart::Kept {
                    answer: 9,
                    first: 0,
                    count: 1
                },
                LinePart::Kept {
                    answer: 9,
                    first: 2,
                    count: 1
                },
                LinePart::Kept {
                    answer: 7,
                    first: 2,
                    count: 1
                },
            ]
        );
        // The lines sent: the head of all seven, then only the two records held here.
        let text = std::str::from_utf8(batch.lines()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let head: BatchHead<'_> = serde_json::from_str(lines[0]).unwrap();
        let targets: Vec<&str> = head.records.iter().map(|r| &*r.target).collect();
        assert_eq!(targets, ["a", "a", "h", "h", "b", "b", "c"]);
        assert_eq!(lines[1], here.json().unwrap());
        assert_eq!(kept("a", 1, 1).text_len(), 40);
    }

    #[test]
    fn a_line_is_checked_as_a_record_without_being_kept() {
        let line = r#"{"target":"w","command":"ps","status":"timeout","collected_at":"t"}"#;
        let head = RawRecord::check_line(line).unwrap();
        assert_eq!(
            (
                head.target.as_str(),
                head.command.as_str(),
                head.status,
                head.len
            ),
            ("w", "ps", RecordStatus::Timeout, line.len())
        );
        assert!(RawRecord::check_line(r#"{"target":"w","status":"ok"}"#).is_err());
    }
}
