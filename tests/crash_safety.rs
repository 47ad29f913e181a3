//! A `diffy plugin install | update | uninstall` killed with SIGKILL at any moment leaves the
//! registry parseable and consistent with the files on disk, and concurrent commands lose no entry
//! they reported as done.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diffy_e2e::{Env, target_dir};
use serde_json::Value;

fn diffy_process(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(target_dir().join("diffy"));
    command
        .env("DIFFY_CONFIG_DIR", config)
        .env("DIFFY_BUNDLED_PLUGINS_DIR", target_dir())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// What is under plugins/: `<name>/<version>` and `.staging-…` entries, sorted.
fn on_disk(env: &Env) -> Vec<String> {
    let plugins = env.config_dir().join("plugins");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&plugins) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".staging-") {
                found.push(name);
                continue;
            }
            for version in std::fs::read_dir(entry.path()).unwrap().flatten() {
                found.push(format!("{name}/{}", version.file_name().to_string_lossy()));
            }
        }
    }
    found.sort();
    found
}

/// The registry (if any) parses, every registered plugin loads, `plugin list` names what an
/// interrupted operation left without touching it, and after the next plugin operation nothing
/// unregistered is left under plugins/.
fn assert_consistent(env: &Env, context: &str) -> Value {
    let before = on_disk(env);
    let list = env
        .diffy(["plugin", "list", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "{context}: plugin list failed: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert_eq!(
        on_disk(env),
        before,
        "{context}: plugin list changed the disk"
    );
    let notes = String::from_utf8_lossy(&list.stderr).into_owned();
    // The next operation — here an uninstall that finds nothing to uninstall — removes leftovers.
    env.diffy(["plugin", "uninstall", "diffy-nothing-registered"])
        .assert()
        .code(2);
    let registry: Value = match env.registry_text() {
        Some(text) => serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{context}: registry corrupt: {e}\n{text}")),
        None => serde_json::json!({"plugins": []}),
    };
    let mut expected_dirs = Vec::new();
    for entry in registry["plugins"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let info = env
            .diffy(["plugin", "info", name, "--format", "json"])
            .output()
            .unwrap();
        let info: Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(
            info["status"], "loaded",
            "{context}: registered {name} does not load: {info}"
        );
        expected_dirs.push(format!("{name}/{}", entry["version"].as_str().unwrap()));
    }
    let found = on_disk(env);
    assert!(
        !found.iter().any(|name| name.starts_with(".staging-")),
        "{context}: staging left behind"
    );
    expected_dirs.sort();
    assert_eq!(
        found, expected_dirs,
        "{context}: files on disk differ from the registry"
    );
    for leftover in before.iter().filter(|dir| !expected_dirs.contains(dir)) {
        let shown = leftover.trim_start_matches(".staging-");
        assert!(
            notes.contains(shown),
            "{context}: plugin list did not name {leftover}: {notes}"
        );
    }
    registry
}

/// How long the operation takes when left alone, to spread the kills over it.
fn duration_of(mut command: Command) -> Duration {
    let started = Instant::now();
    assert!(command.status().unwrap().success());
    started.elapsed()
}

fn kill_after(mut command: Command, delay: Duration) {
    let mut child = command.spawn().unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

/// Delays spread over 0..1.2×`total`, `count` of them.
fn delays(total: Duration, count: u32) -> impl Iterator<Item = Duration> {
    (0..count).map(move |i| total.mul_f64(1.2 * f64::from(i) / f64::from(count)))
}

const KILLS: u32 = 24;

#[test]
fn install_killed_at_any_moment() {
    let probe = Env::new();
    let lib = probe.fixture_with("diffy-crashy", "crashy", "crashy", "1.0.0", "^0.2");
    let total = duration_of(diffy_process(
        probe.config_dir(),
        &["plugin", "install", lib.to_str().unwrap()],
    ));
    for (i, delay) in delays(total, KILLS).enumerate() {
        let env = Env::new();
        kill_after(
            diffy_process(
                env.config_dir(),
                &["plugin", "install", lib.to_str().unwrap()],
            ),
            delay,
        );
        let context = format!("install killed after {delay:?} (kill {i})");
        assert_consistent(&env, &context);
        // Whatever state it was left in, installing again works.
        env.install(&lib);
        env.diffy(["crashy", "echo", "ok"])
            .assert()
            .success()
            .stdout("ok\n");
    }
}

#[test]
fn update_killed_at_any_moment() {
    let probe = Env::new();
    let v1 = probe.fixture_with("diffy-crashy", "crashy", "crashy", "1.0.0", "^0.2");
    let v2 = probe.fixture_with("diffy-crashy", "crashy", "crashy", "2.0.0", "^0.2");
    probe
        .diffy(["plugin", "install"])
        .arg(&v1)
        .assert()
        .success();
    let total = duration_of(diffy_process(
        probe.config_dir(),
        &["plugin", "update", "diffy-crashy", v2.to_str().unwrap()],
    ));
    for (i, delay) in delays(total, KILLS).enumerate() {
        let env = Env::new();
        env.install(&v1);
        kill_after(
            diffy_process(
                env.config_dir(),
                &["plugin", "update", "diffy-crashy", v2.to_str().unwrap()],
            ),
            delay,
        );
        let context = format!("update killed after {delay:?} (kill {i})");
        let registry = assert_consistent(&env, &context);
        let version = registry["plugins"][0]["version"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            version == "1.0.0" || version == "2.0.0",
            "{context}: {version}"
        );
    }
}

#[test]
fn uninstall_killed_at_any_moment() {
    let probe = Env::new();
    let lib = probe.fixture_with("diffy-crashy", "crashy", "crashy", "1.0.0", "^0.2");
    probe
        .diffy(["plugin", "install"])
        .arg(&lib)
        .assert()
        .success();
    let total = duration_of(diffy_process(
        probe.config_dir(),
        &["plugin", "uninstall", "diffy-crashy"],
    ));
    for (i, delay) in delays(total, KILLS).enumerate() {
        let env = Env::new();
        env.install(&lib);
        kill_after(
            diffy_process(env.config_dir(), &["plugin", "uninstall", "diffy-crashy"]),
            delay,
        );
        assert_consistent(
            &env,
            &format!("uninstall killed after {delay:?} (kill {i})"),
        );
    }
}

#[test]
fn mixed_concurrent_operations_lose_nothing_reported_done() {
    let env = Env::new();
    let old: Vec<_> = (0..4)
        .map(|i| {
            env.fixture_with(
                &format!("diffy-old{i}"),
                &format!("old{i}"),
                &format!("old{i}"),
                "1.0.0",
                "^0.2",
            )
        })
        .collect();
    let newer: Vec<_> = (0..4)
        .map(|i| {
            env.fixture_with(
                &format!("diffy-old{i}"),
                &format!("old{i}"),
                &format!("old{i}"),
                "2.0.0",
                "^0.2",
            )
        })
        .collect();
    let fresh: Vec<_> = (0..4)
        .map(|i| {
            env.fixture_with(
                &format!("diffy-new{i}"),
                &format!("new{i}"),
                &format!("new{i}"),
                "1.0.0",
                "^0.2",
            )
        })
        .collect();
    for lib in &old {
        env.install(lib);
    }
    let config = env.config_dir();
    let mut children = Vec::new();
    for (i, lib) in fresh.iter().enumerate() {
        children.push(
            diffy_process(config, &["plugin", "install", lib.to_str().unwrap()])
                .spawn()
                .unwrap(),
        );
        if i < 2 {
            children.push(
                diffy_process(
                    config,
                    &[
                        "plugin",
                        "update",
                        &format!("diffy-old{i}"),
                        newer[i].to_str().unwrap(),
                    ],
                )
                .spawn()
                .unwrap(),
            );
        } else {
            children.push(
                diffy_process(config, &["plugin", "uninstall", &format!("diffy-old{i}")])
                    .spawn()
                    .unwrap(),
            );
        }
        children.push(diffy_process(config, &["plugin", "list"]).spawn().unwrap());
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let registry = assert_consistent(&env, "after concurrent operations");
    let mut names: Vec<(String, String)> = registry["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    names.sort();
    let expected: Vec<(String, String)> = [
        ("diffy-new0", "1.0.0"),
        ("diffy-new1", "1.0.0"),
        ("diffy-new2", "1.0.0"),
        ("diffy-new3", "1.0.0"),
        ("diffy-old0", "2.0.0"),
        ("diffy-old1", "2.0.0"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    assert_eq!(names, expected);
}
