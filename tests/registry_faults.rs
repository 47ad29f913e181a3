//! Every registry fault of `plugins.json` (docs/architecture.md, "Registry"), and files that are not plugins, through the built binary.

use diffy_e2e::{Env, library};
use predicates::prelude::*;

fn assert_fault(registry: &str, expected: &str) {
    let env = Env::new();
    env.write_registry(registry);
    let output = env.diffy(["plugin", "list"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{registry}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("plugins.json: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in {stderr}"
    );
    // Built-in commands that need no registry keep working, and help still lists them.
    env.diffy(["--version"]).assert().success();
    env.diffy(["help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("plugin"))
        .stderr(predicate::str::contains("plugin commands are not listed"));
    // The file is left as it was.
    assert_eq!(env.registry_text().unwrap(), registry);
}

#[test]
fn malformed_json_names_line_and_column() {
    assert_fault(
        "{\n  \"plugins_config_version\": \"1.0.0\",\n  \"plugins\": [\n",
        "malformed JSON at line 4 column 0",
    );
}

#[test]
fn version_faults() {
    assert_fault(r#"{"plugins": []}"#, "missing plugins_config_version");
    assert_fault(
        r#"{"plugins_config_version": "2.0.0", "plugins": []}"#,
        "unsupported plugins_config_version \"2.0.0\"",
    );
}

#[test]
fn plugins_array_faults() {
    assert_fault(
        r#"{"plugins_config_version": "1.0.0"}"#,
        "missing \"plugins\" array",
    );
    assert_fault(
        r#"{"plugins_config_version": "1.0.0", "plugins": {}}"#,
        "\"plugins\" is not an array",
    );
}

#[test]
fn entry_faults_name_the_index() {
    let v = r#""plugins_config_version": "1.0.0""#;
    let ok = r#"{"name": "diffy-ok", "installation_type": "path", "installation_path": "x.so"}"#;
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{ok}, 42]}}"#),
        "entry 1: not a JSON object",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{{"version": "1.0.0"}}]}}"#),
        "entry 0: missing \"name\"",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{{"name": "diffy-a", "installation_type": "gem"}}]}}"#),
        "entry 0: unknown installation_type \"gem\"",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{{"name": "diffy-a", "installation_type": "path"}}]}}"#),
        "entry 0: path plugin \"diffy-a\" has no \"installation_path\"",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{{"name": "diffy-a"}}]}}"#),
        "entry 0: installed plugin \"diffy-a\" has no \"version\"",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{{"name": "../../etc", "version": "1.0.0"}}]}}"#),
        "entry 0: invalid plugin name \"../../etc\"",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{{"name": "Diffy-Caps", "version": "1.0.0"}}]}}"#),
        "invalid plugin name",
    );
    assert_fault(
        &format!(r#"{{{v}, "plugins": [{ok}, {ok}]}}"#),
        "entries 0 and 1: duplicate plugin name \"diffy-ok\"",
    );
}

#[test]
fn a_missing_registry_means_no_user_plugins() {
    let env = Env::new();
    env.diffy(["plugin", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("diffy-local"));
}

#[test]
fn unknown_keys_survive_a_rewrite() {
    let env = Env::new();
    let linked = env.fixture("diffy-keep", "keep", "keep-slug");
    env.write_registry(&format!(
        r#"{{"plugins_config_version": "1.0.0", "owner": "sec-team", "plugins": [
            {{"name": "diffy-keep", "installation_type": "path", "installation_path": {:?}, "pinned": true}}]}}"#,
        linked.to_str().unwrap()
    ));
    env.install(library("diffy-sweeten"));
    let registry = env.registry();
    assert_eq!(registry["owner"], "sec-team");
    assert_eq!(registry["plugins"][0]["pinned"], true);
    assert_eq!(registry["plugins"].as_array().unwrap().len(), 2);
}

#[test]
fn relative_paths_resolve_against_the_config_dir() {
    let env = Env::new();
    let lib = env.fixture("diffy-rel", "rel", "rel-slug");
    std::fs::copy(&lib, env.config_dir().join("librel.so")).unwrap();
    env.write_registry(
        r#"{"plugins_config_version": "1.0.0", "plugins": [
        {"name": "diffy-rel", "installation_type": "path", "installation_path": "librel.so"}]}"#,
    );
    env.diffy(["rel", "echo", "relative"])
        .assert()
        .success()
        .stdout("relative\n");
}

#[test]
fn a_file_that_is_not_a_library() {
    let env = Env::new();
    let fake = env.scratch.path().join("libfake.so");
    std::fs::write(&fake, b"#!/bin/sh\necho not a library\n").unwrap();
    env.diffy(["plugin", "install"])
        .arg(&fake)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("cannot install")
                .and(predicate::str::contains("not a loadable library")),
        );
    let empty = env.scratch.path().join("libempty.so");
    std::fs::write(&empty, b"").unwrap();
    env.diffy(["plugin", "install"])
        .arg(&empty)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a loadable library"));
    assert!(env.registry_text().is_none());
    // No staging leftovers.
    let leftovers: Vec<_> = std::fs::read_dir(env.config_dir().join("plugins"))
        .unwrap()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_library_that_is_not_a_diffy_plugin() {
    let env = Env::new();
    // A real shared library that is not a plugin: the C library this test process uses.
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let libc = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("libc.so") || p.contains("libc-"))
        .expect("libc is mapped");
    let copy = env.scratch.path().join("libnotaplugin.so");
    std::fs::copy(libc, &copy).unwrap();
    env.diffy(["plugin", "install"])
        .arg(&copy)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("not a diffy plugin")
                .and(predicate::str::contains("diffy_plugin_api_version")),
        );
    assert!(env.registry_text().is_none());
}

#[test]
fn a_nonexistent_path() {
    let env = Env::new();
    env.diffy(["plugin", "install", "/nonexistent/libx.so"])
        .assert()
        .code(2)
        .stderr("error: /nonexistent/libx.so does not exist\n");
}
