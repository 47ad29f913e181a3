//! The compatibility suite (docs/abi.md): plugins built against frozen copies of
//! `diffy-plugin-api` (`tests/compat/`) installed and run, unrebuilt, in today's `diffy`.
//!
//! - the previous release of the series (0.2.0) runs every component kind, and a method it lacks
//!   is one line saying what to rebuild;
//! - the next release (today's API plus one method and one document field) runs, its extras
//!   unused;
//! - another series (0.1.0) and a changed frozen layout are refused in one line.

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;

use diffy_e2e::{Env, stderr_of, stdout_of, target_dir};
use diffy_plugin_api::ComponentKind;
use diffy_plugin_api::protocol;
use serde_json::Value;

/// Where the compat workspaces are built: `<target>/compat/debug`.
fn compat_dir() -> PathBuf {
    target_dir()
        .parent()
        .expect("the profile directory has a parent")
        .join("compat")
}

/// Build every compat plugin once per test process.
fn compat_library(package: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // `broken` alone, so its `abi-break` feature does not reach `diffy-compat-future`.
        for (workspace, packages) in [
            ("v0.1.0", &["diffy-compat-v010"][..]),
            ("v0.2.0", &["diffy-compat-v020"][..]),
            ("v0.2.1", &["diffy-compat-v021"][..]),
            ("future", &["diffy-compat-future"][..]),
            ("future", &["diffy-compat-broken"][..]),
        ] {
            let mut build = StdCommand::new(&cargo);
            build
                .args(["build", "--quiet", "--locked", "--manifest-path"])
                .arg(root.join(workspace).join("Cargo.toml"))
                .arg("--target-dir")
                .arg(compat_dir())
                // Fixtures, never debugged here: no debug info (target/compat 522 MB to 449 MB).
                .env("CARGO_PROFILE_DEV_DEBUG", "false");
            for package in packages {
                build.args(["-p", package]);
            }
            let status = build.status().expect("run cargo build");
            assert!(status.success(), "building tests/compat/{workspace} failed");
        }
    });
    compat_dir().join("debug").join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// The `--*-plugin` flags that choose the fixture's components for every interface.
fn all_components(slug: &str) -> Vec<String> {
    ["target", "payload", "collection", "persistence"]
        .iter()
        .flat_map(|kind| [format!("--{kind}-plugin"), slug.to_string()])
        .collect()
}

fn assert_one_line_error(output: &std::process::Output, expected: &str) {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(expected),
        "expected {expected:?} in: {stderr}"
    );
}

/// Install the plugin built against the copy, then run every one of its component kinds.
fn runs_every_kind(env: &Env, package: &str, api_version: &str) {
    let slug = package.trim_start_matches("diffy-");
    env.install(compat_library(package));
    let info = env
        .diffy(["plugin", "info", package, "--format", "json"])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["status"], "loaded", "{info}");
    assert_eq!(info["manifest"]["api_version"], api_version);

    // cli_command
    let output = env.diffy([slug, "echo", "still", "here"]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "still here\n");
    let output = env.diffy([slug, "api"]).output().unwrap();
    assert_eq!(stdout_of(&output), format!("{api_version}\n"));

    // target, payload, collection, persistence: a baseline of the first host…
    let hosts = "alpha,beta,gamma,odd-one";
    let mut baseline = vec!["new", "baseline", hosts];
    let flags = all_components(slug);
    baseline.extend(flags.iter().map(String::as_str));
    let output = env.diffy(&baseline).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stdout_of(&output).contains("from alpha: 1 commands (0 failed)"));

    // …then an analysis of all four with the fixture's analysis: the odd host ranks first.
    let mut analysis = vec!["new", "analysis", hosts, "--analysis-plugin", slug];
    analysis.extend(flags.iter().map(String::as_str));
    analysis.extend(["--format", "json"]);
    let output = env.diffy(&analysis).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["analysis"], slug);
    assert_eq!(report["hosts"][0]["target"], "odd-one");
    assert_eq!(
        report["hosts"][0]["commands"][0]["added"],
        serde_json::json!(["odd one out"])
    );
    assert_eq!(report["hosts"][1]["score"], 0.0);

    // Everything was saved through the plugin's own persistence.
    let listed = env
        .diffy([
            "show",
            "--prefix",
            "",
            "--persistence-plugin",
            slug,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let keys: Vec<String> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(keys.iter().filter(|k| k.starts_with("records/")).count(), 4);
    assert_eq!(
        keys.iter().filter(|k| k.starts_with("baseline/")).count(),
        1
    );
    assert_eq!(keys.iter().filter(|k| k.starts_with("report/")).count(), 1);
    // The run is listed as complete, through the run methods or, for an older plugin, their
    // fallbacks on save, get and list.
    let listed = env
        .diffy(["show", "--persistence-plugin", slug, "--format", "json"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", stderr_of(&listed));
    let runs: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["status"], "complete");
    assert_eq!(runs[0]["records"], 4);
}

/// The methods `plugin info` lists for the component of `kind`.
fn methods_listed(env: &Env, package: &str, kind: &str) -> Value {
    let info = env
        .diffy(["plugin", "info", package, "--format", "json"])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    info["manifest"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == kind)
        .unwrap()["methods"]
        .clone()
}

#[test]
fn a_plugin_of_the_last_release_runs_every_kind_with_its_documents() {
    let env = Env::new();
    runs_every_kind(&env, "diffy-compat-v021", "0.2.1");
    // It has the batch methods of 0.2.1 and not the JSON Lines ones of 0.2.2, so the workflow
    // above collected, saved and fed its records as the JSON documents of 0.2.1.
    let package = "diffy-compat-v021";
    assert_eq!(
        methods_listed(&env, package, "collection"),
        serde_json::json!(["get"])
    );
    let persistence = methods_listed(&env, package, "persistence");
    let persistence = persistence.as_array().unwrap();
    assert!(
        persistence.contains(&"append_records".into()),
        "{persistence:?}"
    );
    assert!(
        !persistence.contains(&"append_lines".into()),
        "{persistence:?}"
    );
    assert_eq!(
        methods_listed(&env, package, "analysis"),
        serde_json::json!(["run", "begin", "feed", "finish"])
    );
}

#[test]
fn a_plugin_of_the_previous_release_runs_every_kind_unrebuilt() {
    let env = Env::new();
    runs_every_kind(&env, "diffy-compat-v020", "0.2.0");

    // It lists no batched methods, and asking for one is one line saying what to rebuild.
    let info = env
        .diffy(["plugin", "info", "diffy-compat-v020", "--format", "json"])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    let persistence = info["manifest"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "persistence")
        .unwrap()
        .clone();
    assert_eq!(
        persistence["methods"],
        serde_json::json!(["get", "save", "list"])
    );
    let output = env
        .diffy([
            "plugin",
            "call",
            "persistence",
            "compat-v020",
            "get_many",
            r#"{"keys":["report/x"]}"#,
        ])
        .output()
        .unwrap();
    assert_one_line_error(
        &output,
        "diffy-compat-v020 0.1.0 was built against diffy-plugin-api 0.2.0 and has no method \
         `get_many` in persistence `compat-v020`; rebuild it against 0.2.1 or newer",
    );
    // The methods it has answer through the same command.
    let output = env
        .diffy([
            "plugin",
            "call",
            "persistence",
            "compat-v020",
            "list",
            r#"{"prefix":"baseline/"}"#,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let keys: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(keys.as_array().map(Vec::len), Some(1));
}

#[test]
fn a_plugin_of_the_next_release_runs_its_known_methods() {
    let env = Env::new();
    // The future copy is the release after this one (tests/compat/README.md).
    let mut next = semver::Version::parse(env!("CARGO_PKG_VERSION")).unwrap();
    next.patch += 1;
    runs_every_kind(&env, "diffy-compat-future", &next.to_string());
    // It lists a method this host does not know, which the workflow above never called.
    let info = env
        .diffy(["plugin", "info", "diffy-compat-future", "--format", "json"])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    let analysis = info["manifest"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "analysis")
        .unwrap()
        .clone();
    let mut methods: Vec<&str> = protocol::methods_of(ComponentKind::Analysis)
        .map(|m| m.name)
        .collect();
    methods.push("explain");
    assert_eq!(analysis["methods"], serde_json::json!(methods));
    // Its new document field reaches today's host, which ignores it.
    let output = env
        .diffy([
            "plugin",
            "call",
            "target",
            "compat-future",
            "get",
            r#"{"key":"a"}"#,
        ])
        .output()
        .unwrap();
    let targets: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        targets[0]["platform"], "linux",
        "the plugin sends the new field"
    );
}

#[test]
fn the_future_copy_is_newer_than_todays_api() {
    let future = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/future/api/Cargo.toml"),
    )
    .unwrap();
    let version = future
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a version line");
    let future = semver::Version::parse(version).unwrap();
    let today = semver::Version::parse(diffy_plugin_api::API_VERSION).unwrap();
    assert!(
        future > today && diffy_plugin_api::is_api_compatible(&future, &today),
        "tests/compat/future is {future}, today's API is {today}: refresh the future copy \
         (tests/compat/README.md)"
    );
}

#[test]
fn a_plugin_of_another_series_is_refused_in_one_line() {
    let env = Env::new();
    let old = compat_library("diffy-compat-v010");
    let expected = format!(
        "built against diffy-plugin-api 0.1.0, but this diffy uses {}, another API series; \
         rebuild the plugin against diffy-plugin-api 0.2",
        diffy_plugin_api::API_VERSION
    );
    assert_one_line_error(
        &env.diffy(["plugin", "install"]).arg(&old).output().unwrap(),
        &expected,
    );
    assert!(env.registry_text().is_none(), "nothing registered");

    // Registered by hand, it is an error in the listing and in the command that needs it.
    env.write_registry(&format!(
        r#"{{"plugins_config_version":"1.0.0","plugins":[{{"name":"diffy-compat-v010","installation_type":"path","installation_path":{:?}}}]}}"#,
        old
    ));
    let list = env
        .diffy(["plugin", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "diffy-compat-v010")
        .unwrap()
        .clone();
    assert!(
        entry["status"].as_str().unwrap().contains(&expected),
        "{entry}"
    );
    let output = env.diffy(["compat-v010", "api"]).output().unwrap();
    assert_one_line_error(&output, &expected);
    assert!(stderr_of(&output).contains("diffy-compat-v010"));
}

#[test]
fn a_changed_frozen_layout_is_refused_in_one_line() {
    let env = Env::new();
    let broken = compat_library("diffy-compat-broken");
    let output = env
        .diffy(["plugin", "install"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_one_line_error(
        &output,
        "incompatible ABI: the library's diffy-plugin-api types differ from this diffy's \
         (rerun with -vv for abi_stable's report)",
    );
    assert!(env.registry_text().is_none());
    // -vv adds abi_stable's whole layout report, and still ends with the one-line error.
    let output = env
        .diffy(["-vv", "plugin", "install"])
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(stderr.contains("abi_stable layout report"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: cannot install")
    );
}

#[test]
fn a_refused_bundled_plugin_is_named_with_its_cause() {
    let env = Env::new();
    // A bundled directory whose diffy-local is a library of another series.
    let bundled = env.scratch.path().join("bundled");
    std::fs::create_dir_all(&bundled).unwrap();
    std::fs::copy(
        compat_library("diffy-compat-v010"),
        bundled.join(format!(
            "{}diffy_local{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_SUFFIX
        )),
    )
    .unwrap();
    for args in [
        &["new", "baseline", "localhost"][..],
        &["new", "analysis", "localhost"][..],
        &["show"][..],
    ] {
        let output = env
            .diffy(args)
            .env("DIFFY_BUNDLED_PLUGINS_DIR", &bundled)
            .output()
            .unwrap();
        assert_one_line_error(&output, "bundled plugin diffy-local (");
        assert!(
            stderr_of(&output)
                .contains("could not be loaded: built against diffy-plugin-api 0.1.0"),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
}
