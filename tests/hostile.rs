//! Hostile input and process hygiene through the built binary: what a compromised host can put
//! in its evidence must not reach the responder's terminal, memory or files, and nothing diffy
//! starts may outlive it (docs/security.md, "Hostile input").

use std::path::Path;

use diffy_e2e::{Env, stderr_of, stdout_of};

fn write(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// What a rogue process's arguments would do to a terminal printed raw: move up, erase the line,
/// write a forged one, clear the screen, ring the bell; DEL and a C1 CSI too.
const FORGED: &str = "\u{1b}[1A\u{1b}[2K\rfake: nothing here\u{1b}[2J\u{7}\u{7f}\u{9b}2J";
/// The same as diffy shows it.
const SHOWN: &str = "\\e[1A\\e[2K\\rfake: nothing here\\e[2J\\x07\\x7f\\u{9b}2J";

/// Whether `text` holds a byte a terminal acts on (line breaks and the table's layout aside).
fn has_control(text: &str) -> bool {
    text.chars()
        .any(|c| c != '\n' && (c.is_control() || ('\u{80}'..='\u{9f}').contains(&c)))
}

/// An evidence fleet of twelve hosts with the same processes, one of which also runs a process
/// whose arguments are [`FORGED`], in a host directory whose name holds an escape too.
fn forged_fleet(env: &Env) -> std::path::PathBuf {
    let fleet = env.scratch.path().join("fleet");
    for i in 0..12 {
        let name = if i == 5 {
            "web-05\u{1b}[2J".to_string()
        } else {
            format!("web-{i:02}")
        };
        let mut ps = "sshd -D\nnginx: master process\n".to_string();
        if i == 5 {
            ps.push_str(&format!("python3 -c {FORGED}\n"));
        }
        write(fleet.join(name).join("ps.txt"), &ps);
    }
    fleet
}

fn analyse(env: &Env, fleet: &Path, extra: &[&str]) -> std::process::Output {
    let mut command = env.diffy(["new", "analysis"]);
    command.arg(fleet).args([
        "--target-plugin",
        "evidence-dir",
        "--collection-plugin",
        "evidence-dir",
        "--analysis-plugin",
        "local-cluster",
    ]);
    command.args(extra).output().unwrap()
}

#[test]
fn control_characters_in_evidence_are_escaped_visibly_in_tables_and_show_and_exact_in_json() {
    let env = Env::new();
    let fleet = forged_fleet(&env);

    let output = analyse(&env, &fleet, &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let table = stdout_of(&output);
    assert!(!has_control(&table), "{table:?}");
    assert!(table.contains(&format!("python3 -c {SHOWN}")), "{table}");
    assert!(table.contains("web-05\\e[2J"), "{table}");
    let report_key = table
        .lines()
        .find_map(|line| line.split("report saved as ").nth(1))
        .unwrap_or_else(|| panic!("no report key in {table}"))
        .to_string();

    // JSON keeps every byte: the value is the evidence, exactly.
    let output = analyse(&env, &fleet, &["--format", "json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["hosts"][0]["target"], "web-05\u{1b}[2J");
    let text = report.to_string();
    assert!(
        text.contains(&serde_json::to_string(&format!("python3 -c {FORGED}")).unwrap()),
        "{text}"
    );

    // `diffy show` of the report, of the key list and of a record: escaped as well.
    let output = env.diffy(["show", &report_key]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let shown = stdout_of(&output);
    assert!(!has_control(&shown), "{shown:?}");
    assert!(shown.contains(&format!("python3 -c {SHOWN}")), "{shown}");

    let runs = stdout_of(&env.diffy(["show"]).output().unwrap());
    assert!(!has_control(&runs), "{runs:?}");
    let output = env.diffy(["show", "--prefix", ""]).output().unwrap();
    let keys = stdout_of(&output);
    assert!(!has_control(&keys), "{keys:?}");
    let record = keys
        .lines()
        .find(|key| {
            key.starts_with("records/") && key.contains("web-05") && key.ends_with("ps.txt")
        })
        .unwrap_or_else(|| panic!("no record of web-05 in {keys}"))
        .to_string();
    let output = env.diffy(["show", &record]).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let shown = stdout_of(&output);
    assert!(!has_control(&shown), "{shown:?}");
    let value: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
    assert!(
        value["stdout"].as_str().unwrap().contains(FORGED),
        "{value}"
    );

    let output = env
        .diffy(["show", &record, "--format", "json"])
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        value["stdout"].as_str().unwrap().contains(FORGED),
        "{value}"
    );
}

/// A shell script for local-command that leaves processes named by `marker` (in their argv, so
/// that `pgrep -f` finds them and nothing else) in every place a process can hide: the command
/// itself, a background child in its group, and one detached into a session of its own.
fn lingering(marker: &str) -> String {
    format!(
        "setsid sh -c 'sleep 300; :' {marker}-detached </dev/null >/dev/null 2>&1 & \
         sh -c 'sleep 300; :' {marker}-background & \
         sh -c 'sleep 300; :' {marker}-command"
    )
}

/// The pids of processes whose command line holds `marker`.
fn pgrep(marker: &str) -> Vec<String> {
    let output = std::process::Command::new("pgrep")
        .args(["-f", marker])
        .output()
        .expect("pgrep runs");
    stdout_of(&output).lines().map(str::to_string).collect()
}

/// A marker no other test's processes carry.
fn marker(env: &Env, case: &str) -> String {
    let dir = env.scratch.path().file_name().unwrap().to_string_lossy();
    format!("diffy-hostile-{case}-{dir}")
}

fn local_command_option(script: &str) -> String {
    let commands = serde_json::json!([{"id": "slow", "run": script}]);
    format!("local-command.commands={commands}")
}

#[test]
fn a_timed_out_command_is_killed_with_everything_it_started_and_the_record_says_so() {
    let env = Env::new();
    let marker = marker(&env, "timeout");
    let output = env
        .diffy(["new", "analysis", "localhost", "--target-timeout", "1"])
        .args(["--analysis-plugin", "local-cluster", "--format", "json"])
        .args(["--option", &local_command_option(&lingering(&marker))])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(pgrep(&marker), Vec::<String>::new(), "left running");

    let keys = stdout_of(
        &env.diffy(["show", "--prefix", "records/"])
            .output()
            .unwrap(),
    );
    let key = keys.lines().next().expect("a record was saved");
    let output = env
        .diffy(["show", key, "--format", "json"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "timeout", "{record}");
    let stderr = record["stderr"].as_str().unwrap();
    assert!(stderr.contains("did not finish within 1s"), "{stderr}");
    assert!(stderr.contains("had started were killed"), "{stderr}");
}

#[test]
fn what_a_command_detached_is_ended_when_diffy_exits() {
    let env = Env::new();
    let marker = marker(&env, "exit");
    let script = format!(
        "setsid sh -c 'sleep 300; :' {marker}-detached </dev/null >/dev/null 2>&1 & echo started"
    );
    let output = env
        .diffy([
            "new",
            "analysis",
            "localhost",
            "--analysis-plugin",
            "local-cluster",
        ])
        .args(["--option", &local_command_option(&script)])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(pgrep(&marker), Vec::<String>::new(), "left running");
}

/// Start a run whose command lingers, wait until its processes run, send diffy `signal`, and
/// check that diffy exits with 128 + the signal and leaves nothing behind.
/// With `close_stderr`, nobody reads diffy's stderr any more when the signal comes.
fn interrupted_mid_run(
    case: &str,
    signal: rustix::process::Signal,
    isolate: bool,
    close_stderr: bool,
) {
    let env = Env::new();
    let marker = marker(&env, case);
    // A std command, which can be spawned and signalled while it runs.
    let mut command = std::process::Command::new(diffy_e2e::target_dir().join("diffy"));
    command
        .env("DIFFY_CONFIG_DIR", env.config_dir())
        .env("DIFFY_BUNDLED_PLUGINS_DIR", diffy_e2e::target_dir())
        .args(["new", "analysis", "localhost"]);
    if isolate {
        command.arg("--isolate-plugins=all");
    }
    let mut diffy = command
        .args([
            "--analysis-plugin",
            "local-cluster",
            "--target-timeout",
            "600",
        ])
        .args(["--option", &local_command_option(&lingering(&marker))])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: the three processes are running (a bound only so that a broken build fails).
    let started = std::time::Instant::now();
    while pgrep(&marker).len() < 3 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "the command never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if close_stderr {
        drop(diffy.stderr.take());
    }
    let pid = rustix::process::Pid::from_raw(diffy.id() as i32).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
    let output = diffy.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(
        output.status.code(),
        Some(128 + signal.as_raw()),
        "{stderr}"
    );
    if !close_stderr {
        assert!(stderr.contains("error: diffy stopped by SIG"), "{stderr}");
    }
    assert!(stdout_of(&output).is_empty(), "{}", stdout_of(&output));
    assert_eq!(pgrep(&marker), Vec::<String>::new(), "left running");
}

#[test]
fn ctrl_c_mid_run_ends_everything_diffy_started() {
    interrupted_mid_run("sigint", rustix::process::Signal::INT, false, false);
}

#[test]
fn sigterm_mid_run_ends_everything_diffy_started() {
    interrupted_mid_run("sigterm", rustix::process::Signal::TERM, false, false);
}

#[test]
fn sigterm_mid_run_ends_an_isolated_plugin_and_what_it_started() {
    interrupted_mid_run("isolated", rustix::process::Signal::TERM, true, false);
}

#[test]
fn sigterm_with_nobody_reading_stderr_still_ends_everything_and_exits() {
    interrupted_mid_run("stderr-closed", rustix::process::Signal::TERM, false, true);
}

#[test]
fn help_after_any_built_in_command_is_that_commands_help() {
    let env = Env::new();
    for (args, usage) in [
        (
            &["new", "--help"][..],
            "Usage: diffy new [OPTIONS] <COMMAND>",
        ),
        (
            &["new", "analysis", "--help"],
            "Usage: diffy new analysis [OPTIONS] <TARGET_KEY>",
        ),
        (
            &["new", "baseline", "-h"],
            "Usage: diffy new baseline [OPTIONS] <TARGET_KEY>",
        ),
        (
            &["plugin", "--help"],
            "Usage: diffy plugin [OPTIONS] <COMMAND>",
        ),
        (
            &["plugin", "install", "-h"],
            "Usage: diffy plugin install [OPTIONS] <PATH>",
        ),
        (&["show", "--help"], "Usage: diffy show [OPTIONS] [KEY]"),
    ] {
        let output = env.diffy(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr_of(&output));
        let help = stdout_of(&output);
        assert!(help.contains(usage), "{args:?}: {help}");
    }
}

#[test]
fn a_repeated_option_is_refused_in_one_line() {
    let env = Env::new();
    let output = env
        .diffy(["new", "baseline", "localhost"])
        .args(["--option", "local-shell.timeout_secs=3"])
        .args(["--option", "local-shell.timeout_secs=4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr_of(&output),
        "error: --option local-shell.timeout_secs is given twice \
         (\"local-shell.timeout_secs=3\" and \"local-shell.timeout_secs=4\"); give it once\n"
    );
    let keys = env.diffy(["show", "--prefix", ""]).output().unwrap();
    assert_eq!(keys.stdout, b"", "nothing was saved");
}

#[test]
fn show_of_a_keys_first_segments_lists_the_keys_beneath() {
    let env = Env::new();
    let output = env
        .diffy(["new", "baseline", "localhost"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let all = stdout_of(&env.diffy(["show", "--prefix", ""]).output().unwrap());
    for prefix in ["baseline/localhost", "baseline/localhost/", "baseline"] {
        let output = env.diffy(["show", prefix]).output().unwrap();
        assert!(output.status.success(), "{prefix}: {}", stderr_of(&output));
        assert_eq!(stdout_of(&output), all, "{prefix}");
    }
    let output = env.diffy(["show", "baseline/elsewhere"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("nothing is saved under"));
}

/// `diffy ARGS` on a terminal `columns` wide (a pseudo-terminal made by `script`).
fn on_terminal(env: &Env, columns: u16, args: &str) -> String {
    let diffy = diffy_e2e::target_dir().join("diffy");
    let line = format!("stty cols {columns} rows 40; {} {args}", diffy.display());
    let output = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("DIFFY_CONFIG_DIR", env.config_dir())
        .env("DIFFY_BUNDLED_PLUGINS_DIR", diffy_e2e::target_dir())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script runs");
    assert!(output.status.success(), "{}", stderr_of(&output));
    stdout_of(&output)
}

#[test]
fn tables_on_narrow_or_zero_column_terminals_keep_their_rows_whole() {
    let env = Env::new();
    for columns in [0, 20] {
        let table = on_terminal(&env, columns, "plugin list");
        assert!(
            table
                .lines()
                .any(|line| line.contains("diffy-local  0.2.2") && line.contains("bundled")),
            "{columns} columns: {table}"
        );
    }
    // A wide terminal still fits the table to its width.
    let table = on_terminal(&env, 200, "plugin list");
    assert!(table.lines().any(|l| l.contains("diffy-local")), "{table}");
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn a_registry_that_is_not_a_regular_file_or_too_large_is_refused_in_one_line() {
    let env = Env::new();
    let registry = env.config_dir().join("plugins.json");
    type Make<'a> = Box<dyn Fn() + 'a>;
    let cases: [(&str, Make); 4] = [
        (
            "it is a character device, not a regular file",
            Box::new(|| std::os::unix::fs::symlink("/dev/zero", &registry).unwrap()),
        ),
        (
            "it is a FIFO, not a regular file",
            Box::new(|| mkfifo(&registry)),
        ),
        (
            "it is a directory, not a regular file",
            Box::new(|| std::fs::create_dir(&registry).unwrap()),
        ),
        (
            "it is larger than 16 MiB",
            Box::new(|| {
                let file = std::fs::File::create(&registry).unwrap();
                file.set_len(17 << 20).unwrap();
            }),
        ),
    ];
    for (fault, make) in cases {
        make();
        let output = env.diffy(["plugin", "list"]).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{fault}");
        assert_eq!(
            stderr_of(&output),
            format!("error: {}: {fault}\n", registry.display())
        );
        if registry.is_dir() {
            std::fs::remove_dir(&registry).unwrap();
        } else {
            std::fs::remove_file(&registry).unwrap();
        }
    }
}

#[test]
fn a_library_path_says_what_is_there_instead_of_not_found() {
    let env = Env::new();
    let fifo = env.scratch.path().join("libdiffy_fifo.so");
    mkfifo(&fifo);
    let dir = env.scratch.path().join("empty");
    std::fs::create_dir(&dir).unwrap();
    env.write_registry(&format!(
        r#"{{"plugins_config_version":"1.0.0","plugins":[
            {{"name":"diffy-zero","installation_type":"path","installation_path":"/dev/zero"}},
            {{"name":"diffy-dir","installation_type":"path","installation_path":"{}"}},
            {{"name":"diffy-fifo","installation_type":"path","installation_path":"{}"}}]}}"#,
        dir.display(),
        fifo.display()
    ));
    let list = stdout_of(&env.diffy(["plugin", "list"]).output().unwrap());
    assert!(
        list.contains("/dev/zero is a character device, not a library"),
        "{list}"
    );
    assert!(
        list.contains(&format!("{} is a directory, not a library", dir.display())),
        "{list}"
    );
    assert!(
        list.contains(&format!("{} is a FIFO, not a library", fifo.display())),
        "{list}"
    );

    for (path, kind) in [
        (fifo.as_path(), "a FIFO"),
        (Path::new("/dev/zero"), "a character device"),
    ] {
        let output = env
            .diffy(["plugin", "install", "--link"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert_eq!(
            stderr_of(&output),
            format!("error: {} is {kind}, not a library\n", path.display())
        );
    }
}

/// One record of an evidence fleet of twelve hosts whose `host-03` has `file` made by `make`.
fn evidence_record(env: &Env, make: impl FnOnce(&Path), options: &[&str]) -> serde_json::Value {
    let fleet = env.scratch.path().join("fleet");
    for i in 0..12 {
        write(fleet.join(format!("host-{i:02}/ps.txt")), "sshd\n");
    }
    make(&fleet.join("host-03/ps.txt"));
    let mut args = vec!["--format", "json"];
    for option in options {
        args.extend(["--option", option]);
    }
    let output = analyse(env, &fleet, &args);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let keys = stdout_of(
        &env.diffy(["show", "--prefix", "records/"])
            .output()
            .unwrap(),
    );
    let key = keys
        .lines()
        .find(|key| key.contains("/host-03/"))
        .unwrap_or_else(|| panic!("no record of host-03 in {keys}"))
        .to_string();
    let output = env
        .diffy(["show", &key, "--format", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn an_evidence_fifo_is_refused_instead_of_waited_on() {
    let env = Env::new();
    let record = evidence_record(
        &env,
        |path| {
            std::fs::remove_file(path).unwrap();
            mkfifo(path);
            // Some evidence beside it, so that the host is collected.
            write(path.with_file_name("uptime.txt"), "up 3 days\n");
        },
        &[],
    );
    assert_eq!(record["status"], "error", "{record}");
    let stderr = record["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("it is a FIFO, not a regular file"),
        "{stderr}"
    );
}

#[test]
fn a_huge_sparse_evidence_file_is_cut_at_the_limit_and_marked() {
    let env = Env::new();
    let record = evidence_record(
        &env,
        |path| {
            std::fs::File::create(path)
                .unwrap()
                .set_len(2 << 30)
                .unwrap()
        },
        &["evidence-dir.max_output_mib=1"],
    );
    assert_eq!(record["truncated"], true, "{}", record["stderr"]);
    assert_eq!(record["stdout"].as_str().unwrap().len(), 1 << 20);
    let stderr = record["stderr"].as_str().unwrap();
    assert!(
        stderr.contains("evidence-dir: output cut at 1 MiB (option max_output_mib)"),
        "{stderr}"
    );
}

#[test]
fn command_output_past_the_limit_is_cut_and_the_record_marked() {
    let env = Env::new();
    let script = "head -c 3000000 /dev/zero | tr '\\0' a; echo done >&2";
    let output = env
        .diffy([
            "new",
            "analysis",
            "localhost",
            "--analysis-plugin",
            "local-cluster",
        ])
        .args(["--option", &local_command_option(script)])
        .args(["--option", "local-shell.max_output_mib=1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let keys = stdout_of(
        &env.diffy(["show", "--prefix", "records/"])
            .output()
            .unwrap(),
    );
    let key = keys.lines().next().expect("a record");
    let output = env
        .diffy(["show", key, "--format", "json"])
        .output()
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(record["status"], "ok");
    assert_eq!(record["truncated"], true);
    assert_eq!(record["stdout"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(
        record["stderr"],
        "done\nlocal-shell: output cut at 1 MiB (option max_output_mib)"
    );
}
