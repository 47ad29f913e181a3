//! Namespace dispatch, lazy loading, help from the manifest cache, and fault isolation of CLI
//! plugins, through the built binary.

use diffy_e2e::{Env, library, stderr_of, stdout_of};
use predicates::prelude::*;

/// The plugin libraries the process opened, from glibc's `LD_DEBUG=files` trace.
fn libraries_opened(env: &Env, args: &[&str]) -> Vec<String> {
    let output = env.diffy(args).env("LD_DEBUG", "files").output().unwrap();
    let trace = stderr_of(&output);
    let mut opened: Vec<String> = trace
        .lines()
        .filter_map(|l| l.split("calling init: ").nth(1))
        // Plugins are opened through /proc/self/fd (the verified open file); anything else with
        // diffy in its name would be a plugin opened by path.
        .filter(|path| path.contains("diffy_") || path.starts_with("/proc/self/fd/"))
        .map(|path| path.trim().to_string())
        .collect();
    opened.sort();
    opened.dedup();
    opened
}

#[test]
fn exit_codes_come_from_the_plugin() {
    let env = Env::new();
    let lib = env.fixture("diffy-codes", "codes", "codes-slug");
    env.install(&lib);
    env.diffy(["codes", "echo", "a", "--flag"])
        .assert()
        .success()
        .stdout("a --flag\n");
    env.diffy(["codes", "exit", "7"]).assert().code(7);
    env.diffy(["codes", "error"]).assert().code(2).stderr(
        "error: plugin diffy-codes failed in cli_command codes: the fixture was asked to fail\n",
    );
    env.diffy(["nosuch"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown command \"nosuch\""));
}

#[test]
fn a_panicking_plugin_is_an_error_not_a_crash() {
    let env = Env::new();
    env.install(env.fixture("diffy-panicky", "panicky", "panicky-slug"));
    let output = env.diffy(["panicky", "panic"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: plugin diffy-panicky panicked in cli_command panicky: the fixture was asked to panic"), "{stderr}");
    // The host survived to print its error; the next command works.
    env.diffy(["panicky", "echo", "still", "here"])
        .assert()
        .success()
        .stdout("still here\n");
}

#[test]
fn only_the_owning_library_is_opened() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    for i in 0..3 {
        env.diffy(["plugin", "install"])
            .arg(env.fixture(
                &format!("diffy-other{i}"),
                &format!("other{i}"),
                &format!("other{i}-slug"),
            ))
            .assert()
            .success();
    }
    let opened = libraries_opened(&env, &["sweeten", "count"]);
    assert_eq!(opened.len(), 1, "{opened:?}");
    let verbose = env.diffy(["-v", "sweeten", "count"]).output().unwrap();
    let loaded: Vec<String> = stderr_of(&verbose)
        .lines()
        .filter(|l| l.contains("loaded plugin library"))
        .map(String::from)
        .collect();
    assert_eq!(loaded.len(), 1, "{loaded:?}");
    assert!(
        loaded[0].contains("plugins/diffy-sweeten/0.1.0/libdiffy_sweeten.so"),
        "{loaded:?}"
    );
    for args in [
        &["--version"][..],
        &["help"],
        &["plugin", "list"],
        &["help", "sweeten"],
        &["completions", "bash"],
    ] {
        assert_eq!(
            libraries_opened(&env, args),
            Vec::<String>::new(),
            "diffy {args:?} opened a plugin"
        );
    }
}

#[test]
fn verbose_logs_loading_and_activation() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    let output = env.diffy(["-v", "sweeten", "count"]).output().unwrap();
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("loaded plugin library") && stderr.contains("libdiffy_sweeten.so"),
        "{stderr}"
    );
    assert!(
        stderr.contains("activated component") && stderr.contains("cli_command sweeten"),
        "{stderr}"
    );
    assert!(
        stderr.contains("total_us=") && stderr.contains("activate_us="),
        "{stderr}"
    );
    assert_eq!(stdout_of(&output), "0\n");
}

#[test]
fn help_lists_plugins_from_the_cache_without_opening_them() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    // Make the installed library unloadable: help must not notice, running it must.
    let installed = env
        .config_dir()
        .join("plugins/diffy-sweeten/0.1.0/libdiffy_sweeten.so");
    std::fs::write(&installed, b"garbage, not a library").unwrap();
    env.diffy(["help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("sweeten").and(predicate::str::contains(
                "Add and count spoons of sweetener [plugin diffy-sweeten]",
            )),
        );
    env.diffy(["help", "sweeten"]).assert().success().stdout(
        predicate::str::contains("Usage: diffy sweeten <COMMAND> [OPTIONS]")
            .and(predicate::str::contains("add"))
            .and(predicate::str::contains("Count the spoons in the jar")),
    );
    env.diffy(["sweeten", "count"]).assert().code(2).stderr(
        predicate::str::contains("error: plugin diffy-sweeten (")
            .and(predicate::str::contains("digest mismatch")),
    );
    env.diffy(["plugin", "list"]).assert().success();
}

#[test]
fn plugin_help_is_the_plugins_own() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    env.diffy(["sweeten", "--help"]).assert().success().stdout(
        predicate::str::contains("Usage: diffy sweeten <COMMAND>")
            .and(predicate::str::contains("--spoons").not()),
    );
    env.diffy(["sweeten", "add", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--spoons"));
    env.diffy(["sweeten", "add", "--spoons", "nope"])
        .assert()
        .code(2);
    env.diffy(["help", "plugin", "install"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--link"));
    env.diffy(["help", "nosuch"]).assert().code(2);
}

#[test]
fn a_missing_library_does_not_stop_a_working_plugin() {
    let env = Env::new();
    let doomed = env.fixture("diffy-doomed", "doomed", "doomed-slug");
    env.diffy(["plugin", "install", "--link"])
        .arg(&doomed)
        .assert()
        .success();
    env.install(library("diffy-sweeten"));
    std::fs::remove_file(&doomed).unwrap();
    env.diffy(["sweeten", "count"])
        .assert()
        .success()
        .stdout("0\n");
    env.diffy(["plugin", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("error: library not found"));
    env.diffy(["doomed", "echo"]).assert().code(2).stderr(
        predicate::str::contains("diffy-doomed").and(predicate::str::contains("library not found")),
    );
    env.diffy(["--version"]).assert().success();
}

#[test]
fn two_plugins_claiming_one_namespace() {
    let env = Env::new();
    env.install(env.fixture("diffy-first", "shared", "first-slug"));
    // Refused at install.
    env.diffy(["plugin", "install"])
        .arg(env.fixture("diffy-second", "shared", "second-slug"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cli_command \"shared\", which plugin diffy-first already provides",
        ));
    // Met anyway through a hand-edited registry: both reported, neither used.
    let second = env.fixture("diffy-second", "shared", "second-slug");
    let mut registry = env.registry();
    registry["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "name": "diffy-second", "installation_type": "path", "installation_path": second,
        }));
    env.write_registry(&registry.to_string());
    env.diffy(["shared", "echo"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "claimed by diffy-first and diffy-second",
        ));
    let list = env.diffy(["plugin", "list"]).output().unwrap();
    let text = stdout_of(&list);
    assert_eq!(text.matches("is claimed by").count(), 2, "{text}");
}

#[test]
fn a_namespace_may_not_shadow_a_built_in() {
    let env = Env::new();
    let shadow = env.fixture("diffy-shadow", "plugin", "shadow-slug");
    env.diffy(["plugin", "install"])
        .arg(&shadow)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("built-in command"));
    env.diffy(["plugin", "check"]).arg(&shadow).assert().code(2);
    assert!(env.registry_text().is_none());
}

#[test]
fn unsupported_host_version_is_refused() {
    let env = Env::new();
    let future = env.fixture_with("diffy-future", "future", "future-slug", "1.0.0", ">=9.0");
    env.diffy(["plugin", "install"])
        .arg(&future)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(format!(
            "supports diffy >=9.0, but this is diffy {}",
            env!("CARGO_PKG_VERSION")
        )));
}

#[test]
fn disable_flags_turn_sources_off() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    env.diffy(["--disable-user-plugins", "sweeten", "count"])
        .assert()
        .code(2);
    env.diffy(["--disable-bundled-plugins", "sweeten", "count"])
        .assert()
        .success();
    let list = env
        .diffy(["--disable-bundled-plugins", "plugin", "list"])
        .output()
        .unwrap();
    assert!(!stdout_of(&list).contains("diffy-local"));
}
