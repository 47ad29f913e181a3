//! The registry and the manifest cache with 1, 100 and 1,000 registered plugins.
//!
//! Each size gets a configuration directory laid out as `diffy plugin install` leaves it: a
//! `plugins.json` of installed entries and, per plugin, `plugins/<name>/<version>/manifest.json`
//! (the manifest of a fixture-like plugin: a CLI namespace with five subcommands and the five
//! interfaces) beside its library. The libraries are placeholders: nothing here opens them (the
//! whole-process benchmark, `scripts/bench-process.sh`, installs real ones).
//!
//! - `registry_parse/N`: `Registry::parse` of `plugins.json`.
//! - `manifest_cache_read/N`: `manifest_cache::read_plugins`, every cached plugin.
//! - `manifest_cache_lookup/N`: `manifest_cache::lookup_namespace` of the last plugin's namespace: what
//!   `diffy <namespace>` does before opening the one library it needs.
//! - `catalog_build/N`: `Catalog::build` with a fresh cache (what `diffy help` and `diffy plugin
//!   list` do before printing).

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffy_core::catalog::Catalog;
use diffy_core::config::Settings;
use diffy_core::manifest_cache;
use diffy_core::registry::Registry;
use diffy_plugin_api::{Component, ComponentKind, Manifest, OptionSpec, OptionType};
use serde_json::json;

const VERSION: &str = "0.1.0-fixture";

/// The manifest the fixture plugin declares, under another name, namespace and slug.
fn manifest(name: &str, namespace: &str, slug: &str) -> Manifest {
    let mode = || {
        OptionSpec::new(
            "mode",
            OptionType::String,
            "ok, error, panic, malformed or hang",
        )
        .default_value("ok")
    };
    let mut manifest = Manifest::new(name, VERSION);
    manifest.description = "Test fixture: misbehaves on request".into();
    manifest.host_requirement = "^0.1".into();
    manifest.components.push(
        Component::new(
            ComponentKind::CliCommand,
            namespace,
            "Echo, exit, fail or panic on request",
        )
        .usage("diffy <namespace> <echo|exit N|error|panic|count>")
        .subcommand("echo", "Print the arguments")
        .subcommand("exit", "Exit with the given code")
        .subcommand("error", "Return an error")
        .subcommand("panic", "Panic")
        .subcommand("count", "Print 0 (a command as cheap as sweeten count)"),
    );
    for (kind, summary) in [
        (ComponentKind::Target, "Targets that misbehave"),
        (ComponentKind::Payload, "A payload that misbehaves"),
        (ComponentKind::Collection, "A collection that misbehaves"),
        (ComponentKind::Persistence, "A persistence that misbehaves"),
        (ComponentKind::Analysis, "An analysis that misbehaves"),
    ] {
        manifest
            .components
            .push(Component::new(kind, slug, summary).option(mode()));
    }
    manifest.validate().expect("a valid manifest");
    manifest
}

/// A configuration directory with `count` installed plugins; returns its settings.
fn populate(dir: &Path, count: usize) -> Settings {
    let mut entries = Vec::with_capacity(count);
    for index in 1..=count {
        let (name, namespace, slug) = common::bench_plugin(index);
        let installed = dir.join("plugins").join(&name).join(VERSION);
        std::fs::create_dir_all(&installed).expect("create plugin dir");
        let library = diffy_core::config::library_file_name(&name);
        std::fs::write(installed.join(&library), b"placeholder").expect("write library");
        let manifest = serde_json::to_string_pretty(&manifest(&name, &namespace, &slug))
            .expect("serialise manifest");
        std::fs::write(installed.join("manifest.json"), manifest).expect("write manifest");
        entries.push(json!({
            "name": name,
            "installation_type": "installed",
            "version": VERSION,
            "sha256": format!("{index:064x}"),
        }));
    }
    let registry = json!({ "plugins_config_version": "1.0.0", "plugins": entries });
    std::fs::write(
        dir.join("plugins.json"),
        serde_json::to_string_pretty(&registry).expect("serialise registry"),
    )
    .expect("write registry");
    let mut settings = Settings::resolve(Some(dir.to_path_buf())).expect("settings");
    // The bundled plugin, as the installed `diffy` has it (loaded once, by the first build).
    let bundled = common::library("diffy-local");
    settings.bundled_dir = bundled.parent().map(Path::to_path_buf);
    settings
}

fn registry(c: &mut Criterion) {
    let sizes = [1usize, 100, 1000];
    let dirs: Vec<(usize, tempfile::TempDir, Settings)> = sizes
        .iter()
        .map(|&n| {
            let dir = tempfile::tempdir().expect("temp dir");
            let settings = populate(dir.path(), n);
            // Writes the manifest cache.
            let catalog = Catalog::build(&settings).expect("build the catalog");
            assert_eq!(catalog.plugins.len(), n + 1, "every plugin is known");
            (n, dir, settings)
        })
        .collect();

    let configure =
        |group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>| {
            group
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2))
                .sample_size(30);
        };

    let mut group = c.benchmark_group("registry_parse");
    configure(&mut group);
    for (n, _, settings) in &dirs {
        let path = settings.registry_file();
        let bytes = std::fs::read(&path).expect("read registry");
        group.bench_with_input(BenchmarkId::from_parameter(n), &bytes, |b, bytes| {
            b.iter(|| Registry::parse(&path, black_box(bytes)).expect("parse"))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("manifest_cache_read");
    configure(&mut group);
    for (n, _, settings) in &dirs {
        assert_eq!(manifest_cache::read_plugins(settings).len(), n + 1);
        group.bench_with_input(BenchmarkId::from_parameter(n), settings, |b, settings| {
            b.iter(|| manifest_cache::read_plugins(settings))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("manifest_cache_lookup");
    configure(&mut group);
    for (n, _, settings) in &dirs {
        let (_, namespace, _) = common::bench_plugin(*n);
        let owners =
            manifest_cache::lookup_namespace(settings, &namespace).expect("the cache is fresh");
        assert_eq!(owners.len(), 1, "one owner of {namespace}");
        group.bench_with_input(BenchmarkId::from_parameter(n), settings, |b, settings| {
            b.iter(|| {
                manifest_cache::lookup_namespace(settings, black_box(&namespace)).expect("fresh")
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("catalog_build");
    configure(&mut group);
    for (n, _, settings) in &dirs {
        group.bench_with_input(BenchmarkId::from_parameter(n), settings, |b, settings| {
            b.iter(|| Catalog::build(settings).expect("build"))
        });
    }
    group.finish();
}

criterion_group!(benches, registry);
criterion_main!(benches);
