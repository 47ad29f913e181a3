//! Fault isolation: every component kind that errors, panics, returns a malformed document, never
//! returns, or panics while being activated yields a clear one-line error naming the plugin and
//! component (exit 2), or a failed record for collections; other plugins and built-in commands
//! keep working. Also: libraries others could have changed are refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use diffy_e2e::{Env, library, stderr_of, stdout_of};
use predicates::prelude::*;
use serde_json::Value;

fn fleet(dir: &Path) {
    for host in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.join(host)).unwrap();
        std::fs::write(dir.join(host).join("packages.txt"), "one\ntwo\n").unwrap();
    }
}

/// `diffy new analysis` over a small evidence fleet with `kind` played by the faulty fixture.
fn run_with_faulty(env: &Env, kind: &str, mode: &str) -> std::process::Output {
    let dir = env.scratch.path().join("fleet");
    fleet(&dir);
    let mut args: Vec<String> = vec![
        "new".into(),
        "analysis".into(),
        dir.display().to_string(),
        "--format".into(),
        "json".into(),
        "--component-timeout".into(),
        "2".into(),
        "--target-timeout".into(),
        "2".into(),
    ];
    let mut choice = |flag: &str, default: &str| {
        let slug = if flag.starts_with(&format!("--{kind}-")) {
            "faulty"
        } else {
            default
        };
        args.extend([flag.to_string(), slug.to_string()]);
    };
    choice("--target-plugin", "evidence-dir");
    choice("--payload-plugin", "local-command");
    choice("--collection-plugin", "evidence-dir");
    choice("--persistence-plugin", "local-file");
    choice("--analysis-plugin", "local-cluster");
    if kind != "payload" {
        args.extend([
            "--option".into(),
            r#"local-command.commands=[{"id":"packages","run":"x"}]"#.into(),
        ]);
    }
    args.extend(["--option".into(), format!("faulty.mode={mode}")]);
    env.diffy(&args).output().unwrap()
}

fn faulty_env() -> Env {
    let env = Env::new();
    env.install(env.fixture("diffy-faulty", "faulty", "faulty"));
    env.install(library("diffy-sweeten"));
    env
}

fn assert_plugin_error(output: &std::process::Output, expected: &str) {
    let stderr = stderr_of(output);
    assert_eq!(
        output.status.code(),
        Some(2),
        "expected exit 2, stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
}

fn assert_others_still_work(env: &Env) {
    env.diffy(["--version"]).assert().success();
    env.diffy(["plugin", "list"]).assert().success();
    env.diffy(["sweeten", "count"])
        .assert()
        .success()
        .stdout("0\n");
}

#[test]
fn failing_components_are_one_line_plugin_errors() {
    let env = faulty_env();
    for kind in ["target", "payload", "persistence", "analysis"] {
        let output = run_with_faulty(&env, kind, "error");
        assert_plugin_error(
            &output,
            &format!("plugin diffy-faulty failed in {kind} faulty: the fixture was asked to fail"),
        );
    }
    assert_others_still_work(&env);
}

#[test]
fn panicking_components_are_one_line_plugin_errors() {
    let env = faulty_env();
    for kind in ["target", "payload", "persistence", "analysis"] {
        let output = run_with_faulty(&env, kind, "panic");
        assert_plugin_error(
            &output,
            &format!(
                "plugin diffy-faulty panicked in {kind} faulty: the fixture was asked to panic"
            ),
        );
    }
    for kind in ["target", "payload", "collection", "persistence", "analysis"] {
        let output = run_with_faulty(&env, kind, "activate-panic");
        assert_plugin_error(
            &output,
            &format!("plugin diffy-faulty panicked while activating {kind} faulty"),
        );
    }
    assert_others_still_work(&env);
}

#[test]
fn components_that_never_return_time_out() {
    let env = faulty_env();
    for (kind, method) in [
        ("target", "get"),
        ("payload", "generate"),
        // An analysis reserves its run first; an analysis built against 0.2.1 that implements
        // only `run` is called through `finish`, which runs it.
        ("persistence", "create_run"),
        ("analysis", "finish"),
    ] {
        let output = run_with_faulty(&env, kind, "hang");
        assert_plugin_error(
            &output,
            &format!("plugin diffy-faulty {kind} faulty did not return from {method} within 2s"),
        );
    }
    assert_others_still_work(&env);
}

#[test]
fn malformed_documents_are_refused() {
    let env = faulty_env();
    let cases = [
        (
            "target",
            "returned a malformed document from target faulty: a target has an empty id",
        ),
        (
            "payload",
            "returned a malformed document from payload faulty: command id \"same\" is empty or used twice",
        ),
        (
            "analysis",
            "returned a malformed document from analysis faulty",
        ),
    ];
    for (kind, expected) in cases {
        assert_plugin_error(&run_with_faulty(&env, kind, "malformed"), expected);
    }
    assert_others_still_work(&env);
}

fn record_errors(output: &std::process::Output) -> Vec<String> {
    assert!(
        output.status.success(),
        "a failed collection is not a failed run: {}",
        stderr_of(output)
    );
    let report: Value = serde_json::from_str(&stdout_of(output)).unwrap();
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|h| {
            h["commands"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["error"].as_str().map(String::from))
        })
        .collect()
}

#[test]
fn a_failing_collection_is_failed_records_not_a_failed_run() {
    let env = faulty_env();
    for (mode, expected) in [
        (
            "error",
            "plugin diffy-faulty failed in collection faulty: the fixture was asked to fail",
        ),
        (
            "panic",
            "plugin diffy-faulty panicked in collection faulty: the fixture was asked to panic",
        ),
        (
            "hang",
            "plugin diffy-faulty collection faulty did not finish within 2s",
        ),
        (
            "malformed",
            "the collection returned no record for this command",
        ),
    ] {
        let output = run_with_faulty(&env, "collection", mode);
        let errors = record_errors(&output);
        assert_eq!(
            errors.len(),
            3,
            "{mode}: one failed record per host: {errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.contains(expected)),
            "{mode}: {errors:?}"
        );
    }
    assert_others_still_work(&env);
}

#[test]
fn a_persistence_listing_outside_its_prefix_is_refused() {
    let env = faulty_env();
    let dir = env.scratch.path().join("fleet");
    fleet(&dir);
    let output = env
        .diffy(["new", "analysis"])
        .arg(&dir)
        .args([
            "--target-plugin",
            "evidence-dir",
            "--collection-plugin",
            "evidence-dir",
            "--persistence-plugin",
            "faulty",
        ])
        .args([
            "--option",
            r#"local-command.commands=[{"id":"packages","run":"x"}]"#,
            "--option",
            "faulty.mode=malformed",
        ])
        .output()
        .unwrap();
    assert_plugin_error(
        &output,
        "returned a malformed document from persistence faulty",
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn libraries_others_can_change_are_refused() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    let dir = env.config_dir().join("plugins/diffy-sweeten/0.1.0");
    let lib = dir.join("libdiffy_sweeten.so");
    env.diffy(["sweeten", "count"]).assert().success();

    chmod(&lib, 0o775);
    env.diffy(["sweeten", "count"]).assert().code(2).stderr(
        predicate::str::contains("is group-writable; run 'chmod go-w")
            .and(predicate::str::contains("libdiffy_sweeten.so")),
    );
    chmod(&lib, 0o757);
    env.diffy(["sweeten", "count"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is world-writable"));
    chmod(&lib, 0o755);
    chmod(&dir, 0o777);
    env.diffy(["sweeten", "count"]).assert().code(2).stderr(
        predicate::str::contains("the directory").and(predicate::str::contains("world-writable")),
    );
    chmod(&dir, 0o755);
    env.diffy(["sweeten", "count"]).assert().success();

    // Owned by another user (the tests run as root in CI; elsewhere chown is not allowed).
    if std::os::unix::fs::chown(&lib, Some(65534), None).is_ok() {
        env.diffy(["sweeten", "count"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("is owned by user 65534"));
        std::os::unix::fs::chown(&lib, Some(0), None).unwrap();
    }
}

#[test]
fn truncated_empty_and_foreign_architecture_libraries_are_refused() {
    let env = Env::new();
    let real = std::fs::read(library("diffy-sweeten")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("libtruncated.so", real[..real.len().min(300_000)].to_vec()),
        ("libempty.so", Vec::new()),
        ("libheader.so", real[..64].to_vec()),
        ("libaarch64.so", {
            // e_machine (offset 18) = EM_AARCH64.
            let mut foreign = real.clone();
            foreign[18] = 183;
            foreign[19] = 0;
            foreign
        }),
    ];
    for (name, bytes) in cases {
        let path = env.scratch.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let output = env
            .diffy(["plugin", "install"])
            .arg(&path)
            .output()
            .unwrap();
        assert_plugin_error(&output, "not a loadable library");
    }
    assert!(env.registry_text().is_none());
}

#[test]
fn libraries_built_against_another_api_version_are_refused() {
    let env = Env::new();
    let real = std::fs::read(library("diffy-sweeten")).unwrap();
    let api = diffy_plugin_api::API_VERSION;
    for version in ["0.1.0", "1.1.0"] {
        let expected = format!(
            "built against diffy-plugin-api {version}, but this diffy uses {api}, another API \
             series; rebuild the plugin against diffy-plugin-api 0.2"
        );
        // Rewrite the version the pre-check symbol returns (a NUL-terminated API version).
        let mut bytes = real.clone();
        let needle = format!("{api}\0").into_bytes();
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .expect("the API version C string");
        bytes[at..at + 5].copy_from_slice(version.as_bytes());
        let path = env
            .scratch
            .path()
            .join(format!("libdiffy_sweeten_{version}.so"));
        std::fs::write(&path, bytes).unwrap();
        assert_plugin_error(
            &env.diffy(["plugin", "install"])
                .arg(&path)
                .output()
                .unwrap(),
            &expected,
        );
    }
    assert!(env.registry_text().is_none());
}
