//! Isolated plugins through the built binary: the same fixture library run in a sandboxed child
//! process (`plugin install --isolate`, `--isolate-plugins`) and in process, side by side.
//!
//! Isolated, every crash is one line and exit 2 with the host and registry unharmed, a hang is
//! killed at its deadline, and each act the sandbox forbids fails inside the plugin. In process the
//! same library succeeds at those acts and a crash takes diffy down: the difference, documented.

use std::net::TcpListener;
use std::process::Output;
use std::time::Duration;

use diffy_e2e::{Env, library, stderr_of, stdout_of};
use serde_json::Value;

/// A fixture plugin named `diffy-<namespace>`, installed (isolated or not).
fn installed(env: &Env, namespace: &str, isolate: bool) {
    let name = format!("diffy-{namespace}");
    let lib = env.fixture(&name, namespace, &format!("{namespace}-slug"));
    let mut install = env.diffy(["plugin", "install"]);
    if isolate {
        install.arg("--isolate");
    }
    install.arg(&lib).assert().success();
}

/// Whether this kernel enforces the sandbox; when not, the caller skips with a printed reason.
fn sandboxed(env: &Env, plugin: &str) -> bool {
    let info = env
        .diffy(["plugin", "info", plugin, "--format", "json"])
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    let status = info["sandbox"]["status"].as_str().unwrap_or_default();
    if status != "enforced" {
        println!("skipped: the sandbox is {status:?} on this kernel (no Landlock), not enforced");
        return false;
    }
    true
}

/// The runner processes of `plugin` still alive.
fn runners(plugin: &str) -> usize {
    let output = std::process::Command::new("pgrep")
        .args(["-f", &format!("__plugin-runner {plugin}$")])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&output.stdout).lines().count()
}

/// Exit 2, and diffy's own report is exactly one line: the last one (a crashing runner's own
/// last words, such as Rust's "memory allocation failed", come before it on the shared stderr).
fn assert_one_line(output: &Output, expected: &str) {
    let stderr = stderr_of(output);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(ours.len(), 1, "one error line: {stderr}");
    assert!(
        stderr.trim_end().ends_with(ours[0]) && ours[0].contains(expected),
        "expected {expected:?} as the last line of: {stderr}"
    );
}

#[test]
fn isolated_crashes_are_one_line_and_leave_the_host_and_registry_intact() {
    let env = Env::new();
    installed(&env, "crashy", true);
    let registry = env.registry_text().unwrap();
    for (fault, signal) in [
        ("segfault", "SIGSEGV"),
        ("abort", "SIGABRT"),
        ("stack-overflow", "SIGABRT"),
        ("out-of-memory", "SIGABRT"),
    ] {
        let output = env.diffy(["crashy", fault]).output().unwrap();
        assert_one_line(
            &output,
            &format!("plugin diffy-crashy (isolated) crashed: {signal}"),
        );
        assert!(
            stderr_of(&output).contains("in cli_command crashy"),
            "{}",
            stderr_of(&output)
        );
        assert_eq!(env.registry_text().unwrap(), registry, "{fault}");
        assert_eq!(runners("diffy-crashy"), 0, "{fault}: nothing left running");
        // The host (and the plugin, next time) still works.
        let echo = env
            .diffy(["crashy", "echo", "still", "here"])
            .output()
            .unwrap();
        assert_eq!(stdout_of(&echo), "still here\n", "{}", stderr_of(&echo));
    }
}

#[test]
fn in_process_the_same_crash_takes_diffy_down() {
    use std::os::unix::process::ExitStatusExt;
    let env = Env::new();
    installed(&env, "fragile", false);
    let output = env.diffy(["fragile", "segfault"]).output().unwrap();
    assert_eq!(
        output.status.signal(),
        Some(11),
        "in process a segfault is diffy's own: {output:?}"
    );
}

#[test]
fn forbidden_acts_fail_inside_an_isolated_plugin_and_succeed_in_process() {
    let env = Env::new();
    installed(&env, "jailed", true);
    installed(&env, "trusted", false);
    if !sandboxed(&env, "diffy-jailed") {
        return;
    }
    let scratch = env.scratch.path();
    let secret = scratch.join("secret.txt");
    std::fs::write(&secret, "the responder's notes\n").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();

    for namespace in ["jailed", "trusted"] {
        let isolated = namespace == "jailed";
        let written = scratch.join(format!("{namespace}-wrote-this.txt"));
        let acts: [(&str, Vec<&str>); 4] = [
            ("write", vec!["write", written.to_str().unwrap()]),
            ("read", vec!["read", secret.to_str().unwrap()]),
            ("connect", vec!["connect", &port]),
            ("spawn", vec!["spawn"]),
        ];
        for (act, args) in acts {
            let output = env
                .diffy(std::iter::once(namespace).chain(args.iter().copied()))
                .output()
                .unwrap();
            if isolated {
                assert_one_line(
                    &output,
                    "plugin diffy-jailed failed in cli_command jailed: ",
                );
                assert!(
                    stderr_of(&output).contains("Permission denied"),
                    "{act}: {}",
                    stderr_of(&output)
                );
            } else {
                assert!(
                    output.status.success(),
                    "in process, {act} is allowed: {}",
                    stderr_of(&output)
                );
            }
        }
        assert_eq!(written.exists(), !isolated, "{namespace}: the written file");
        let connected = listener.accept().is_ok();
        assert_eq!(connected, !isolated, "{namespace}: the connection");
    }
    // The plugin's own data directory is writable, isolated too.
    let data = env.config_dir().join("data/diffy-jailed/note.txt");
    env.diffy(["jailed", "write", data.to_str().unwrap()])
        .assert()
        .success();
    assert!(data.is_file());
}

#[test]
fn a_hang_is_killed_at_the_component_timeout() {
    let env = Env::new();
    installed(&env, "stuck", true);
    let output = env
        .diffy([
            "new",
            "analysis",
            "localhost",
            "--analysis-plugin",
            "stuck-slug",
            "--option",
            "stuck-slug.mode=hang",
            "--component-timeout",
            "2",
        ])
        .output()
        .unwrap();
    assert_one_line(
        &output,
        "plugin diffy-stuck (isolated) hung in analysis stuck-slug: no answer within 2s; its \
         process was killed",
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(runners("diffy-stuck"), 0, "the hung runner is gone");
}

#[test]
fn a_collection_that_crashes_is_failed_records_not_a_failed_run() {
    let env = Env::new();
    installed(&env, "brittle", true);
    let output = env
        .diffy([
            "new",
            "analysis",
            "localhost",
            "--collection-plugin",
            "brittle-slug",
            "--option",
            "brittle-slug.mode=segfault",
            "--analysis-plugin",
            "local-cluster",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let errors: Vec<&str> = report["hosts"][0]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["error"].as_str())
        .collect();
    assert!(!errors.is_empty(), "{report}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("plugin diffy-brittle (isolated) crashed: SIGSEGV")),
        "{errors:?}"
    );
}

#[test]
fn an_isolated_pipeline_reports_what_the_in_process_one_does() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    for host in 1..=12 {
        let dir = fleet.join(format!("web-{host}"));
        std::fs::create_dir_all(&dir).unwrap();
        let extra = if host == 3 { "nc -l 4444\n" } else { "" };
        std::fs::write(dir.join("procs.txt"), format!("sshd\ncron\n{extra}")).unwrap();
    }
    let analyse = |isolate: bool| {
        let mut command = env.diffy([
            "-vv",
            "new",
            "analysis",
            fleet.to_str().unwrap(),
            "--target-plugin",
            "evidence-dir",
            "--collection-plugin",
            "evidence-dir",
            "--payload-plugin",
            "local-command",
            "--option",
            r#"local-command.commands=[{"id":"procs","run":"ps"}]"#,
            "--analysis-plugin",
            "local-cluster",
            "--format",
            "json",
        ]);
        let temp = env.scratch.path().join(format!("tmp-{isolate}"));
        std::fs::create_dir_all(&temp).unwrap();
        if isolate {
            command.arg("--isolate-plugins=all");
        }
        let output = command.env("TMPDIR", &temp).output().unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
        // The runner's private temporary directory goes with the run.
        let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        // Isolated, one runner serves the collection, the persistence and the analysis: the
        // records stay there, and the runner puts each batch together from them.
        let keeping = format!("keep_records={isolate}");
        assert!(
            stderr_of(&output).contains(&keeping),
            "{}",
            stderr_of(&output)
        );
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let in_process = analyse(false);
    let isolated = analyse(true);
    assert_eq!(in_process, isolated);
    assert_eq!(in_process["hosts"][0]["target"], "web-3");
    // The store has every record of both runs, readable by key, the same but for when they
    // were read.
    let runs = env.diffy(["show", "--format", "json"]).output().unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let saved = |run: &Value, host: u32| {
        let key = format!("records/{}/web-{host}/procs", run["id"].as_str().unwrap());
        let record = env
            .diffy(["show", &key, "--format", "json"])
            .output()
            .unwrap();
        assert!(record.status.success(), "{}", stderr_of(&record));
        let mut record: Value = serde_json::from_slice(&record.stdout).unwrap();
        record.as_object_mut().unwrap().remove("collected_at");
        record
    };
    for run in runs {
        assert_eq!(
            (&run["status"], &run["records"]),
            (&"complete".into(), &12.into())
        );
    }
    for host in 1..=12 {
        let record = saved(&runs[0], host);
        assert_eq!(record, saved(&runs[1], host), "web-{host}");
        let extra = if host == 3 { "nc -l 4444\n" } else { "" };
        assert_eq!(record["stdout"], format!("sshd\ncron\n{extra}"));
    }
}

#[test]
fn isolation_is_set_shown_and_kept_in_the_registry() {
    let env = Env::new();
    let lib = library("diffy-sweeten");
    let output = env
        .diffy(["plugin", "install", "--isolate"])
        .arg(&lib)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(stdout_of(&output).contains("runs:        isolated, in a sandboxed child process"));
    assert!(stdout_of(&output).contains("permissions: none"));
    assert_eq!(env.registry()["plugins"][0]["isolation"], "process");

    let list = env
        .diffy(["plugin", "list", "--format", "json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let sweeten = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "diffy-sweeten")
        .unwrap()
        .clone();
    assert_eq!(sweeten["isolation"], "process");
    let bundled = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "diffy-local")
        .unwrap()
        .clone();
    assert_eq!(
        bundled["isolation"], "in-process",
        "bundled stay in process"
    );

    // A CLI plugin's output still reaches the user from its runner.
    env.diffy(["sweeten", "add", "--spoons", "2"])
        .assert()
        .success()
        .stdout(predicates::str::contains("the jar holds 2"));

    let info = env
        .diffy(["plugin", "info", "diffy-sweeten"])
        .output()
        .unwrap();
    let text = stdout_of(&info);
    assert!(text.contains("isolated: "), "{text}");

    env.diffy(["plugin", "isolate", "diffy-sweeten", "off"])
        .assert()
        .success()
        .stdout(predicates::str::contains("now runs in process"));
    assert!(env.registry()["plugins"][0].get("isolation").is_none());
    env.diffy(["plugin", "isolate", "diffy-sweeten", "on"])
        .assert()
        .success();
    assert_eq!(env.registry()["plugins"][0]["isolation"], "process");
    let refused = env
        .diffy(["plugin", "isolate", "diffy-local", "on"])
        .output()
        .unwrap();
    assert_one_line(&refused, "is bundled with diffy and runs in process");

    // --isolate-plugins isolates an in-process plugin for one run.
    env.diffy(["plugin", "isolate", "diffy-sweeten", "off"])
        .assert()
        .success();
    let verbose = env
        .diffy(["-v", "--isolate-plugins", "sweeten", "count"])
        .output()
        .unwrap();
    assert!(verbose.status.success(), "{}", stderr_of(&verbose));
    assert!(
        stderr_of(&verbose).contains("started an isolated plugin"),
        "{}",
        stderr_of(&verbose)
    );
}
