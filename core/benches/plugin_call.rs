//! A call into a plugin component against the same call on a plain Rust trait object (docs/architecture.md:
//! "within 2× of a Rust trait-object call when no data crosses").
//!
//! The plugin side is the fixture plugin's components (mode `ok`), activated through the loader
//! and called through the host's handles. The trait-object side is the same component code
//! (`Misbehave` below is a copy of the fixture's), boxed as `Box<dyn Persistence>` /
//! `Box<dyn Analysis>` and called through `black_box` so the call stays indirect. The difference
//! between the two is the boundary: abi_stable's trait object, the plugin's panic guard, the
//! `RResult`/`ROption` conversions and, where documents cross, JSON.
//!
//! - `no_data`: `Persistence::get(key)` answering `None`. `noop_trait_object` is a bare
//!   `Ok(None)` implementation, for scale.
//! - `save_row_1kb`, `save_record_1000_rows`: `Persistence::save(key, document)` with the JSON of
//!   a record holding one 1 KB row, and of a collection record of 1,000 rows (~70 KB). Documents
//!   cross as text: no JSON on either side.
//! - `analysis_row_1kb`, `analysis_record_1000_rows`: `Analysis::run` with those records as input:
//!   the host encodes the input to JSON, the plugin decodes it, and the report comes back the
//!   same way.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use diffy_core::component::{AnalysisHandle, PersistenceHandle};
use diffy_core::isolation::IsolatedPlugin;
use diffy_core::isolation::frames::RunnerSpec;
use diffy_core::services::HostServices;
use diffy_plugin_api::{
    Analysis, AnalysisInput, Command, ComponentKind, Persistence, Record, RecordStatus, Report,
    Result, anyhow,
};
use serde_json::{Map, json};

/// The fixture plugin's interface component, copied (mode `ok` is what the benchmark uses).
struct Misbehave {
    mode: String,
}

impl Misbehave {
    fn answer<T>(&self, value: T) -> Result<T> {
        match self.mode.as_str() {
            "error" => anyhow::bail!("the fixture was asked to fail"),
            "panic" => panic!("the fixture was asked to panic"),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            _ => Ok(value),
        }
    }
}

impl Persistence for Misbehave {
    fn get(&self, _key: &str) -> Result<Option<String>> {
        self.answer(None)
    }
    fn save(&self, _key: &str, _document: &str) -> Result<()> {
        self.answer(())
    }
    fn list(&self, _prefix: &str) -> Result<Vec<String>> {
        self.answer(Vec::new())
    }
}

impl Analysis for Misbehave {
    fn run(&self, input: AnalysisInput, _incident: Option<&str>) -> Result<Report> {
        let mut report = Report {
            analysis: black_box("fixture-slug____________________________")
                .trim_end_matches('_')
                .to_string(),
            warnings: vec![format!("{} records seen", input.records.len())],
            ..Report::default()
        };
        if self.mode == "malformed" {
            report.hosts.push(diffy_plugin_api::HostReport {
                target: "anyone".into(),
                score: f64::NAN,
                commands: Vec::new(),
            });
        }
        self.answer(report)
    }
}

/// A persistence that does nothing at all.
struct Noop;

impl Persistence for Noop {
    fn get(&self, _key: &str) -> Result<Option<String>> {
        Ok(None)
    }
    fn save(&self, _key: &str, _document: &str) -> Result<()> {
        Ok(())
    }
    fn list(&self, _prefix: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// A package-list row of about `len` bytes.
fn row(index: usize, len: usize) -> String {
    let mut row = format!(
        "ii  libexample{index:04}:amd64  1.{}.{}-{}  amd64  ",
        index % 7,
        index % 13,
        index % 3
    );
    let description = "Example library providing realistic package descriptions ";
    while row.len() < len {
        row.push_str(description);
    }
    row.truncate(len);
    row
}

/// A collection record whose stdout holds `rows` rows of `len` bytes.
fn record(rows: usize, len: usize) -> Record {
    let stdout: String = (0..rows).map(|i| row(i, len) + "\n").collect();
    let mut record = Record::new("web-0001", "packages", RecordStatus::Ok, stdout);
    record.exit_code = Some(0);
    record.collected_at = "2026-11-22T00:30:00Z".into();
    record
}

fn analysis_input(record: &Record) -> AnalysisInput {
    AnalysisInput {
        commands: vec![Command::new("packages", "dpkg -l")],
        records: vec![record.clone()],
        baseline: None,
    }
}

fn calls(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let library = common::load_fixture();
    let mut options = Map::new();
    options.insert("mode".into(), json!("ok"));
    let services = || HostServices::new(common::FIXTURE_NAME, data.path().join("fixture"));
    let plugin_persistence = library
        .activate(
            ComponentKind::Persistence,
            common::FIXTURE_SLUG,
            services(),
            &options,
        )
        .map(PersistenceHandle::from)
        .expect("activate persistence");
    let plugin_analysis = library
        .activate(
            ComponentKind::Analysis,
            common::FIXTURE_SLUG,
            services(),
            &options,
        )
        .map(AnalysisHandle::from)
        .expect("activate analysis");
    let local_persistence: Box<dyn Persistence> = Box::new(Misbehave { mode: "ok".into() });
    let local_analysis: Box<dyn Analysis> = Box::new(Misbehave { mode: "ok".into() });
    let noop: Box<dyn Persistence> = Box::new(Noop);

    // Sanity: both sides answer the same.
    assert_eq!(plugin_persistence.get("key").unwrap(), None);
    let small = record(1, 1024);
    let large = record(1000, 64);
    assert_eq!(
        plugin_analysis.run(analysis_input(&large), None).unwrap(),
        local_analysis.run(analysis_input(&large), None).unwrap()
    );

    let mut group = c.benchmark_group("call/no_data");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    // Each call's answer is inspected inside the timed closure (`matches!`), on both sides: handing
    // the 24-byte `Result<Option<String>>` itself to `black_box` costs a store-forwarding stall that
    // would dwarf an indirect call.
    group.bench_function("trait_object", |b| {
        b.iter(|| {
            matches!(
                black_box(&local_persistence).get(black_box("key")),
                Ok(None)
            )
        })
    });
    group.bench_function("plugin", |b| {
        b.iter(|| {
            matches!(
                black_box(&plugin_persistence).get(black_box("key")),
                Ok(None)
            )
        })
    });
    group.bench_function("noop_trait_object", |b| {
        b.iter(|| matches!(black_box(&noop).get(black_box("key")), Ok(None)))
    });
    group.finish();

    for (label, document) in [("row_1kb", &small), ("record_1000_rows", &large)] {
        let json = serde_json::to_string(document).expect("serialise");
        let mut group = c.benchmark_group(format!("call/save_{label}"));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        group.throughput(criterion::Throughput::Bytes(json.len() as u64));
        group.bench_function("trait_object", |b| {
            b.iter(|| {
                black_box(&local_persistence)
                    .save(black_box("key"), black_box(&json))
                    .is_ok()
            })
        });
        group.bench_function("plugin", |b| {
            b.iter(|| {
                black_box(&plugin_persistence)
                    .save(black_box("key"), black_box(&json))
                    .is_ok()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("call/analysis_{label}"));
        group
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        group.throughput(criterion::Throughput::Bytes(json.len() as u64));
        group.bench_function("trait_object", |b| {
            b.iter_batched(
                || analysis_input(document),
                |input| black_box(&local_analysis).run(input, None),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("plugin", |b| {
            b.iter_batched(
                || analysis_input(document),
                |input| black_box(&plugin_analysis).run(input, None),
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

/// The same calls to the same fixture components, served by an isolated runner: the frame's round
/// trip through a socket to a child process and back.
fn isolated_calls(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let spec = RunnerSpec {
        name: Some(common::FIXTURE_NAME.into()),
        library: common::library("diffy-fixture"),
        shown_as: None,
        sha256: None,
        previous: None,
        permissions: Vec::new(),
        data_dir: data.path().join("fixture"),
        temp_dir: Default::default(),
        probe: false,
    };
    let runner = common::diffy_executable();
    let isolated = IsolatedPlugin::start(&runner, spec, None).expect("start the runner");
    let mut options = Map::new();
    options.insert("mode".into(), json!("ok"));
    let services = || HostServices::new(common::FIXTURE_NAME, data.path().join("fixture"));
    let persistence = isolated
        .activate(
            ComponentKind::Persistence,
            common::FIXTURE_SLUG,
            services(),
            &options,
        )
        .map(PersistenceHandle::from)
        .expect("activate persistence");
    let analysis = isolated
        .activate(
            ComponentKind::Analysis,
            common::FIXTURE_SLUG,
            services(),
            &options,
        )
        .map(AnalysisHandle::from)
        .expect("activate analysis");
    assert_eq!(persistence.get("key").unwrap(), None);

    let mut group = c.benchmark_group("call/no_data");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("isolated", |b| {
        b.iter(|| matches!(black_box(&persistence).get(black_box("key")), Ok(None)))
    });
    group.finish();

    let large = record(1000, 64);
    let mut group = c.benchmark_group("call/analysis_record_1000_rows");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("isolated", |b| {
        b.iter_batched(
            || analysis_input(&large),
            |input| black_box(&analysis).run(input, None),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// The boundary's share of a real analysis: diffy-local's local-simple comparing one host's
/// 1,000-row record with a baseline of 1,000 rows, through the boundary, against what the boundary
/// adds — encoding the request and decoding it on the other side, encoding the report and
/// decoding it back — measured alone on the same documents.
fn boundary_share(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let expect = diffy_core::loader::Expectation {
        name: Some("diffy-local"),
        ..Default::default()
    };
    let local = diffy_core::loader::load(&common::library("diffy-local"), expect).expect("load");
    let declaration = local
        .manifest
        .component(ComponentKind::Analysis, "local-simple")
        .expect("local-simple")
        .clone();
    let options = declaration.resolve_options(&Map::new()).expect("defaults");
    let simple = local
        .activate(
            ComponentKind::Analysis,
            "local-simple",
            HostServices::new("diffy-local", data.path().join("local")),
            &options,
        )
        .map(AnalysisHandle::from)
        .expect("activate local-simple");
    let host = record(1000, 64);
    let mut baseline = record(1000, 64);
    baseline.target = "baseline".into();
    baseline.stdout = baseline
        .stdout
        .replacen("libexample0000", "libexample9999", 1);
    let input = || AnalysisInput {
        commands: vec![Command::new("packages", "dpkg -l")],
        records: vec![host.clone()],
        baseline: Some(vec![baseline.clone()]),
    };
    let report = simple.run(input(), None).expect("local-simple runs");
    assert_eq!(report.hosts.len(), 1);

    let mut group = c.benchmark_group("call/boundary_share_local_simple_1000_rows");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("analysis_through_the_boundary", |b| {
        b.iter_batched(input, |i| simple.run(i, None), BatchSize::SmallInput)
    });
    group.bench_function("the_boundary_alone", |b| {
        b.iter_batched(
            input,
            |i| {
                let request = diffy_plugin_api::protocol::AnalysisRun {
                    input: std::borrow::Cow::Owned(i),
                    incident: None,
                };
                let sent = serde_json::to_vec(&request).expect("encode");
                let received: diffy_plugin_api::protocol::AnalysisRun<'_> =
                    serde_json::from_slice(&sent).expect("decode");
                black_box(&received);
                let answer = serde_json::to_vec(&report).expect("encode");
                let back: Report = serde_json::from_slice(&answer).expect("decode");
                black_box(back)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, calls, isolated_calls, boundary_share);
criterion_main!(benches);
