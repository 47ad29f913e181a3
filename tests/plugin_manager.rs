//! `diffy plugin install | list | info | update | uninstall | check` through the built binary.

use std::path::Path;

use diffy_e2e::{Env, library, stdout_of};
use predicates::prelude::*;
use serde_json::Value;

fn entry<'a>(registry: &'a Value, name: &str) -> Option<&'a Value> {
    registry["plugins"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
}

#[test]
fn install_by_copy_registers_and_runs() {
    let env = Env::new();
    env.diffy(["plugin", "install"])
        .arg(library("diffy-sweeten"))
        .assert()
        .success()
        .stdout(predicate::str::contains("Installed diffy-sweeten 0.1.0"));
    let registry = env.registry();
    assert_eq!(registry["plugins_config_version"], "1.0.0");
    let entry = entry(&registry, "diffy-sweeten").expect("entry");
    assert_eq!(entry["installation_type"], "installed");
    assert_eq!(entry["version"], "0.1.0");
    assert_eq!(entry["sha256"].as_str().unwrap().len(), 64);
    let copied = env.config_dir().join("plugins/diffy-sweeten/0.1.0");
    assert!(copied.join("libdiffy_sweeten.so").is_file());
    assert!(copied.join("manifest.json").is_file());

    env.diffy(["sweeten", "add", "--spoons", "3", "--sweetener", "honey"])
        .assert()
        .success();
    env.diffy(["sweeten", "count"])
        .assert()
        .success()
        .stdout("3\n");
}

#[test]
fn install_by_link_uses_the_library_in_place() {
    let env = Env::new();
    let lib = library("diffy-sweeten");
    env.diffy(["plugin", "install", "--link"])
        .arg(&lib)
        .assert()
        .success()
        .stdout(predicate::str::contains("Linked"));
    let registry = env.registry();
    let entry = entry(&registry, "diffy-sweeten").unwrap();
    assert_eq!(entry["installation_type"], "path");
    assert_eq!(
        Path::new(entry["installation_path"].as_str().unwrap()),
        lib.canonicalize().unwrap()
    );
    assert!(!env.config_dir().join("plugins/diffy-sweeten").exists());
    env.diffy(["sweeten", "count"])
        .assert()
        .success()
        .stdout("0\n");
    // Linking again is a no-op.
    env.diffy(["plugin", "install", "--link"])
        .arg(&lib)
        .assert()
        .success()
        .stdout(predicate::str::contains("already installed"));
}

#[test]
fn install_accepts_a_directory_holding_one_library() {
    let env = Env::new();
    let lib = env.fixture("diffy-dirplug", "dirplug", "dirplug-slug");
    env.install(lib.parent().unwrap());
    env.diffy(["dirplug", "echo", "hi"])
        .assert()
        .success()
        .stdout("hi\n");
    // A directory with no library is a usage error.
    env.diffy(["plugin", "install"])
        .arg(
            env.config_dir()
                .join("plugins/diffy-dirplug/0.1.0-fixture/.."),
        )
        .assert()
        .code(2);
    let empty = tempfile::tempdir().unwrap();
    env.diffy(["plugin", "install"])
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no plugin library"));
}

#[test]
fn reinstalling_the_same_version_is_a_no_op() {
    let env = Env::new();
    let lib = library("diffy-sweeten");
    env.install(&lib);
    let before = env.registry_text().unwrap();
    env.diffy(["plugin", "install"])
        .arg(&lib)
        .assert()
        .success()
        .stdout(predicate::str::contains("already installed"));
    assert_eq!(env.registry_text().unwrap(), before);
}

#[test]
fn another_version_needs_update_or_force() {
    let env = Env::new();
    let v1 = env.fixture_with(
        "diffy-versioned",
        "versioned",
        "versioned-slug",
        "1.0.0",
        "^0.2",
    );
    let v2 = env.fixture_with(
        "diffy-versioned",
        "versioned",
        "versioned-slug",
        "2.0.0",
        "^0.2",
    );
    let v3 = env.fixture_with(
        "diffy-versioned",
        "versioned",
        "versioned-slug",
        "3.0.0",
        "^0.2",
    );
    env.install(&v1);
    env.diffy(["plugin", "install"])
        .arg(&v2)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "diffy plugin update diffy-versioned",
        ));
    assert_eq!(
        entry(&env.registry(), "diffy-versioned").unwrap()["version"],
        "1.0.0"
    );

    env.diffy(["plugin", "update", "diffy-versioned"])
        .arg(&v2)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Replaced diffy-versioned 1.0.0 with 2.0.0",
        ));
    assert_eq!(
        entry(&env.registry(), "diffy-versioned").unwrap()["version"],
        "2.0.0"
    );
    let plugin_dir = env.config_dir().join("plugins/diffy-versioned");
    assert!(
        !plugin_dir.join("1.0.0").exists(),
        "the old version's files are removed"
    );
    assert!(plugin_dir.join("2.0.0").is_dir());

    env.diffy(["plugin", "install", "--force"])
        .arg(&v3)
        .assert()
        .success();
    assert_eq!(
        entry(&env.registry(), "diffy-versioned").unwrap()["version"],
        "3.0.0"
    );
    env.diffy(["versioned", "echo", "ok"])
        .assert()
        .success()
        .stdout("ok\n");

    // update refuses a library of another name, and a name that is not installed.
    env.diffy(["plugin", "update", "diffy-versioned"])
        .arg(library("diffy-sweeten"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not diffy-versioned"));
    env.diffy(["plugin", "update", "diffy-sweeten"])
        .arg(library("diffy-sweeten"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not installed"));
}

#[test]
fn uninstall_removes_the_entry_and_the_copied_files() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    env.diffy(["plugin", "uninstall", "diffy-sweeten"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Uninstalled diffy-sweeten"));
    assert!(entry(&env.registry(), "diffy-sweeten").is_none());
    assert!(!env.config_dir().join("plugins/diffy-sweeten").exists());
    env.diffy(["sweeten", "count"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown command \"sweeten\""));
    env.diffy(["plugin", "uninstall", "diffy-sweeten"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no plugin named"));
    env.diffy(["plugin", "uninstall", "diffy-local"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bundled"));
}

#[test]
fn uninstalling_a_linked_plugin_keeps_its_library() {
    let env = Env::new();
    let lib = env.fixture("diffy-linked", "linked", "linked-slug");
    env.diffy(["plugin", "install", "--link"])
        .arg(&lib)
        .assert()
        .success();
    env.diffy(["plugin", "uninstall", "diffy-linked"])
        .assert()
        .success();
    assert!(lib.is_file());
}

#[test]
fn list_in_table_and_json() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    let table = env
        .diffy(["plugin", "list"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = stdout_of(&table);
    assert!(text.contains("NAME") && text.contains("STATUS"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("diffy-sweeten") && l.contains("installed") && l.contains("known")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("diffy-local") && l.contains("bundled")),
        "{text}"
    );

    let json = env
        .diffy(["plugin", "list", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let list: Value = serde_json::from_slice(&json.stdout).unwrap();
    let sweeten = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "diffy-sweeten")
        .unwrap();
    assert_eq!(sweeten["version"], "0.1.0");
    assert_eq!(sweeten["via"], "installed");
    assert_eq!(sweeten["api_version"], diffy_plugin_api::API_VERSION);
    assert_eq!(sweeten["status"], "known");
    assert!(sweeten["description"].as_str().unwrap().contains("spoons"));
}

#[test]
fn info_in_table_and_json() {
    let env = Env::new();
    env.install(library("diffy-sweeten"));
    let out = env
        .diffy(["plugin", "info", "diffy-sweeten"])
        .assert()
        .success()
        .get_output()
        .clone();
    let text = stdout_of(&out);
    for expected in [
        "diffy-sweeten",
        "0.1.0",
        "loaded",
        "cli_command",
        "sweeten",
        "sha256",
        "manifest.json",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    let out = env
        .diffy(["plugin", "info", "diffy-sweeten", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["status"], "loaded");
    assert_eq!(info["manifest"]["components"][0]["name"], "sweeten");
    assert_eq!(
        info["manifest"]["components"][0]["subcommands"][1]["name"],
        "count"
    );
    assert_eq!(
        info["sha256"],
        entry(&env.registry(), "diffy-sweeten").unwrap()["sha256"]
    );
    env.diffy(["plugin", "info", "diffy-nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no plugin named"));
}

#[test]
fn check_validates_without_installing() {
    let env = Env::new();
    env.diffy(["plugin", "check"])
        .arg(library("diffy-sweeten"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "diffy-sweeten 0.1.0 is a valid diffy plugin",
        ));
    assert!(env.registry_text().is_none());
    let bogus = env.scratch.path().join("libbogus.so");
    std::fs::write(&bogus, b"not a library").unwrap();
    env.diffy(["plugin", "check"])
        .arg(&bogus)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a loadable library"));
}

#[test]
fn concurrent_installs_keep_every_entry() {
    let env = Env::new();
    let libraries: Vec<_> = (0..8)
        .map(|i| {
            env.fixture(
                &format!("diffy-conc{i}"),
                &format!("conc{i}"),
                &format!("conc{i}-slug"),
            )
        })
        .collect();
    let children: Vec<_> = libraries
        .iter()
        .map(|lib| {
            let mut command = std::process::Command::new(diffy_e2e::target_dir().join("diffy"));
            command
                .env("DIFFY_CONFIG_DIR", env.config_dir())
                .env("DIFFY_BUNDLED_PLUGINS_DIR", diffy_e2e::target_dir())
                .args(["plugin", "install"])
                .arg(lib)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let registry = env.registry();
    for i in 0..8 {
        assert!(
            entry(&registry, &format!("diffy-conc{i}")).is_some(),
            "entry {i} lost"
        );
        env.diffy([format!("conc{i}"), "echo".into(), format!("{i}")])
            .assert()
            .success()
            .stdout(format!("{i}\n"));
    }
    // Concurrent uninstalls of half of them leave exactly the other half.
    let children: Vec<_> = (0..4)
        .map(|i| {
            std::process::Command::new(diffy_e2e::target_dir().join("diffy"))
                .env("DIFFY_CONFIG_DIR", env.config_dir())
                .args(["plugin", "uninstall", &format!("diffy-conc{i}")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let registry = env.registry();
    assert_eq!(registry["plugins"].as_array().unwrap().len(), 4);
}
