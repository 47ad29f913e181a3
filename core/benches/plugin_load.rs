//! Loading and activating one plugin (docs/architecture.md: "under 0.5 ms warm").
//!
//! - `load_activate/first_verified`: the first load of a library in a process, with the
//!   verification record an earlier run of this executable left (the file's identity unchanged, so
//!   the digest and abi_stable's layout check are trusted): what every `diffy <namespace>` pays
//!   after the first run. Integrity check included: the identity comparison that stands in for
//!   the digest.
//! - `load_activate/first_unverified`: the first load with no record: SHA-256 of the whole
//!   library and abi_stable's layout check (the first run after an install or update).
//! - `activate_again/*`: activating a component of a library already loaded in the process.
//!
//! A library is loaded at most once per process and never unloaded, so every iteration of a
//! first-load benchmark loads a fresh copy of the fixture plugin, patched into a distinct plugin
//! and written (untimed) just before the timed loop, so it is in the page cache. The sample sizes
//! are small to keep the number of libraries mapped into this process at a few hundred.

mod common;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use diffy_core::files::FileIdentity;
use diffy_core::loader::{self, Expectation, Verified};
use diffy_core::services::HostServices;
use diffy_plugin_api::ComponentKind;
use diffy_plugin_api::documents::sha256_hex;
use serde_json::{Map, Value, json};

/// Copies of the fixture library, each a distinct plugin, made ahead of the timed loops (criterion
/// counts a routine's set-up time when it sizes the samples).
struct Copies {
    fixture: Vec<u8>,
    /// Where each slot sits in the fixture: (offset, default value).
    slots: Vec<(usize, &'static str)>,
    dir: tempfile::TempDir,
    made: usize,
    pool: Vec<Copy>,
}

/// One copy, ready to load.
struct Copy {
    path: PathBuf,
    name: String,
    namespace: String,
    sha256: String,
    identity: FileIdentity,
}

impl Copies {
    fn new() -> Copies {
        let fixture = std::fs::read(common::library("diffy-fixture")).expect("read the fixture");
        // Find the slots once (in the order tests/support patches them); patching a copy is then
        // a few 40-byte writes.
        let mut probe = fixture.clone();
        let mut slots = Vec::new();
        for default in [
            common::FIXTURE_NAME,
            common::FIXTURE_SLUG,
            common::FIXTURE_NAMESPACE,
        ] {
            let mut pattern = default.as_bytes().to_vec();
            pattern.resize(40, b'_');
            let mut at = 0;
            while let Some(found) = probe[at..].windows(40).position(|w| w == pattern) {
                let offset = at + found;
                slots.push((offset, default));
                probe[offset..offset + 40].fill(0);
                at = offset + 40;
            }
            assert!(
                slots.iter().any(|s| s.1 == default),
                "slot {default} not found"
            );
        }
        Copies {
            fixture,
            slots,
            dir: tempfile::tempdir().expect("temp dir"),
            made: 0,
            pool: Vec::new(),
        }
    }

    /// Make copies until `count` are waiting.
    fn fill(&mut self, count: usize) {
        while self.pool.len() < count {
            self.made += 1;
            let (name, namespace, slug) = common::bench_plugin(self.made);
            let mut bytes = self.fixture.clone();
            for &(offset, default) in &self.slots {
                let value = match default {
                    common::FIXTURE_NAME => &name,
                    common::FIXTURE_SLUG => &slug,
                    _ => &namespace,
                };
                let mut slot = value.as_bytes().to_vec();
                slot.resize(40, b'_');
                bytes[offset..offset + 40].copy_from_slice(&slot);
            }
            let path = self
                .dir
                .path()
                .join(diffy_core::config::library_file_name(&name));
            std::fs::write(&path, &bytes).expect("write a fixture copy");
            let identity = FileIdentity::of_path(&path).expect("stat the copy");
            self.pool.push(Copy {
                path,
                name,
                namespace,
                sha256: sha256_hex(&bytes),
                identity,
            });
        }
    }

    /// `count` fresh copies (made now if the pool ran dry).
    fn take(&mut self, count: u64) -> Vec<Copy> {
        self.fill(count as usize);
        self.pool.split_off(self.pool.len() - count as usize)
    }
}

fn services(name: &str, data: &Path) -> HostServices {
    HostServices::new(name, data.join(name))
}

/// Load `copy` and activate its CLI namespace, as `diffy <namespace>` does.
fn load_and_activate(copy: &Copy, previous: Option<&Verified>, data: &Path) -> Verified {
    let library = loader::load(
        &copy.path,
        Expectation {
            name: Some(&copy.name),
            sha256: Some(&copy.sha256),
            previous,
            shown_as: None,
        },
    )
    .unwrap_or_else(|e| panic!("load {}: {e}", copy.path.display()));
    let command = library
        .activate(
            ComponentKind::CliCommand,
            &copy.namespace,
            services(&copy.name, data),
            &Map::new(),
        )
        .expect("activate");
    black_box(command);
    library.verified.clone()
}

fn first_load(c: &mut Criterion) {
    let mut copies = Copies::new();
    let data = tempfile::tempdir().expect("temp dir");
    let exe = FileIdentity::of_current_exe().expect("stat the benchmark");
    // One-shot: the very first loads of this process, before any warm-up.
    let first = copies.take(5);
    for copy in &first {
        let record = Verified {
            file: copy.identity,
            sha256: Some(copy.sha256.clone()),
            layout_checked_by: Some(exe),
            manifest: None,
        };
        let t = Instant::now();
        load_and_activate(copy, Some(&record), data.path());
        eprintln!("one-shot first load: {:?}", t.elapsed());
    }
    copies.fill(400);
    let mut group = c.benchmark_group("load_activate");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(20))
        .measurement_time(Duration::from_millis(60));

    group.bench_function("first_verified", |b| {
        b.iter_custom(|iters| {
            let batch = copies.take(iters);
            // What an earlier run of this executable recorded for each file.
            let records: Vec<Verified> = batch
                .iter()
                .map(|copy| Verified {
                    file: copy.identity,
                    sha256: Some(copy.sha256.clone()),
                    layout_checked_by: Some(exe),
                    manifest: None,
                })
                .collect();
            let started = Instant::now();
            let mut verified = Vec::with_capacity(batch.len());
            for (copy, record) in batch.iter().zip(&records) {
                verified.push(load_and_activate(copy, Some(record), data.path()));
            }
            let elapsed = started.elapsed();
            // The record was trusted (otherwise this measured the unverified path).
            // (The load adds the manifest it read; the first load of a file always reads it.)
            let verified: Vec<Verified> = verified
                .into_iter()
                .map(|v| Verified {
                    manifest: None,
                    ..v
                })
                .collect();
            assert_eq!(verified, records, "the verification record was not used");
            elapsed
        })
    });

    copies.fill(100);
    group.bench_function("first_unverified", |b| {
        b.iter_custom(|iters| {
            let batch = copies.take(iters);
            let started = Instant::now();
            for copy in &batch {
                black_box(load_and_activate(copy, None, data.path()));
            }
            started.elapsed()
        })
    });
    group.finish();
}

fn activate_again(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("temp dir");
    let library = common::load_fixture();
    let mut options = Map::new();
    options.insert("mode".into(), json!("ok"));
    let no_options: Map<String, Value> = Map::new();
    let mut group = c.benchmark_group("activate_again");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("cli_command", |b| {
        b.iter(|| {
            library
                .activate(
                    ComponentKind::CliCommand,
                    common::FIXTURE_NAMESPACE,
                    services(common::FIXTURE_NAME, data.path()),
                    &no_options,
                )
                .expect("activate")
        })
    });
    group.bench_function("persistence", |b| {
        b.iter(|| {
            library
                .activate(
                    ComponentKind::Persistence,
                    common::FIXTURE_SLUG,
                    services(common::FIXTURE_NAME, data.path()),
                    &options,
                )
                .expect("activate")
        })
    });
    group.finish();
}

criterion_group!(benches, first_load, activate_again);
criterion_main!(benches);
