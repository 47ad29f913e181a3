//! The harness on this workspace's own plugins, as their authors would use it.

use diffy_plugin_harness::{Harness, expect_plugin_error, expect_plugin_panic, json};

fn plugin_dir(relative: &str) -> String {
    format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn sweeten_conforms_and_runs_in_process() {
    let harness = Harness::for_crate(plugin_dir("example-plugins/sweeten"));
    let report = harness.check_conformance();
    assert!(report.passed(), "{report}");
    assert!(report.warnings.is_empty(), "{report}");
    assert_eq!(harness.cli("sweeten", &["add", "--spoons", "2"]), 0);
    assert_eq!(harness.cli("sweeten", &["add", "--spoons", "0"]), 2);
    let jar = std::fs::read_to_string(harness.data_dir().join("jar.txt")).unwrap();
    assert_eq!(jar, "2 sugar\n");
    // Each harness has its own configuration directory, so its own jar.
    let other = Harness::for_crate(plugin_dir("example-plugins/sweeten"));
    assert_ne!(other.data_dir(), harness.data_dir());
    assert!(!other.data_dir().join("jar.txt").exists());
}

#[test]
fn errors_and_panics_of_a_plugin_come_back_as_plugin_errors() {
    let harness = Harness::for_crate(plugin_dir("tests/fixture-plugin"));
    harness.check_conformance();
    let error = expect_plugin_error(|| harness.try_cli("fixture", &["error"]));
    assert!(error.contains("the fixture was asked to fail"), "{error}");
    let panic = expect_plugin_panic(|| harness.try_cli("fixture", &["panic"]));
    assert!(panic.contains("the fixture was asked to panic"), "{panic}");
    let at_activation = expect_plugin_panic(|| {
        harness.analysis("fixture-slug", json!({ "mode": "activate-panic" }))
    });
    assert!(
        at_activation.contains("while activating"),
        "{at_activation}"
    );
    // Options are checked against the schema before the plugin sees them.
    let unknown = harness
        .analysis("fixture-slug", json!({ "nope": 1 }))
        .err()
        .unwrap();
    assert!(matches!(unknown, diffy_plugin_harness::Error::Usage(_)));
}

#[test]
fn a_library_diffy_refuses_is_reported_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libdiffy_fake.so");
    std::fs::write(&fake, b"not a library").unwrap();
    let error = Harness::try_for_library(&fake).unwrap_err();
    assert!(
        error.contains("diffy refuses the plugin library"),
        "{error}"
    );
}
