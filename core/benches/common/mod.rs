//! Shared set-up for the benchmarks: find the cargo profile directory, build the plugin libraries
//! the benchmarks load, and patch copies of the fixture plugin into distinct plugins (the same
//! fixed-width "slots" as `tests/support`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The slot defaults of `tests/fixture-plugin` (each 40 bytes, padded with `_`).
pub const FIXTURE_NAME: &str = "diffy-fixture";
pub const FIXTURE_NAMESPACE: &str = "fixture";
pub const FIXTURE_SLUG: &str = "fixture-slug";

/// The cargo profile directory the benchmark was built into (`target/release`).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("benchmark executable path");
    // target/release/deps/<bench> → target/release
    exe.parent()
        .and_then(Path::parent)
        .expect("benchmarks run from target/<profile>/deps")
        .to_path_buf()
}

/// Build the fixture and bundled plugin libraries into this benchmark's profile directory, once.
pub fn ensure_plugins_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile = profile_dir();
        let target = profile.parent().expect("profile directory has a parent");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target)
            .args(["-p", "diffy-fixture", "-p", "diffy-local", "-p", "diffy"]);
        if profile.file_name().is_some_and(|p| p != "debug") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build of the plugin libraries failed"
        );
    });
}

/// A built plugin library of the profile directory (`diffy-fixture` → `libdiffy_fixture.so`).
pub fn library(package: &str) -> PathBuf {
    ensure_plugins_built();
    profile_dir().join(diffy_core::config::library_file_name(package))
}

/// The unpatched fixture library, loaded once through diffy's loader (no digest, no record).
pub fn load_fixture() -> diffy_core::loader::LoadedLibrary {
    let expect = diffy_core::loader::Expectation {
        name: Some(FIXTURE_NAME),
        ..Default::default()
    };
    diffy_core::loader::load(&library("diffy-fixture"), expect).expect("load the fixture")
}

/// The built `diffy` of the profile directory, which serves isolated plugins.
pub fn diffy_executable() -> PathBuf {
    ensure_plugins_built();
    profile_dir().join(format!("diffy{}", std::env::consts::EXE_SUFFIX))
}

/// The fixture's slot patching, shared with the end-to-end tests.
pub use diffy_e2e::patch_slot;

/// The fixture library's bytes patched into plugin `name` with CLI namespace `namespace` and
/// interface slug `slug` (the order matters: the name slot contains the namespace's default).
pub fn patched_fixture(fixture: &[u8], name: &str, namespace: &str, slug: &str) -> Vec<u8> {
    let mut bytes = fixture.to_vec();
    patch_slot(&mut bytes, FIXTURE_NAME, name);
    patch_slot(&mut bytes, FIXTURE_SLUG, slug);
    patch_slot(&mut bytes, FIXTURE_NAMESPACE, namespace);
    bytes
}

/// The names of the `index`th generated plugin: name, CLI namespace, slug.
pub fn bench_plugin(index: usize) -> (String, String, String) {
    (
        format!("diffy-bench-{index:06}"),
        format!("bench{index:06}"),
        format!("bench-{index:06}"),
    )
}
