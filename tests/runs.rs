//! Runs and baselines as units, through the built binary: runs that never collide (concurrent
//! analyses, one incident analysed twice), runs killed midway shown as interrupted, baselines
//! replaced whole (another command set, SIGKILL, two at once), temporary files cleaned by the
//! next operation, names too long for a file name, names refused before anything is collected,
//! and saved runs queried with DuckDB as docs/storage.md shows.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use diffy_e2e::{Env, stderr_of, stdout_of, target_dir};
use serde_json::Value;

const PACKAGES: &str = r#"local-command.commands=[{"id":"packages","run":"unused for evidence"}]"#;

/// An evidence directory of `hosts` hosts (named by `name`), each with one command `packages`
/// whose rows are the same everywhere but on host 0, which has one more.
fn evidence_fleet(dir: &Path, hosts: usize, name: impl Fn(usize) -> String) {
    for host in 0..hosts {
        let host_dir = dir.join(name(host));
        std::fs::create_dir_all(&host_dir).unwrap();
        let mut text: String = (0..20).map(|r| format!("package-{r} 1.{r}.0\n")).collect();
        if host == 0 {
            text.push_str("implant 6.6.6\n");
        }
        std::fs::write(host_dir.join("packages.txt"), text).unwrap();
    }
}

fn host_name(host: usize) -> String {
    format!("host-{host:03}")
}

/// `diffy new analysis DIR` over an evidence fleet, with more arguments.
fn analysis_args(dir: &Path, analysis: &str, more: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "new",
        "analysis",
        &dir.to_string_lossy(),
        "--target-plugin",
        "evidence-dir",
        "--collection-plugin",
        "evidence-dir",
        "--option",
        PACKAGES,
        "--analysis-plugin",
        analysis,
        "--format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(output)))
}

/// The runs `diffy show` lists.
fn runs(env: &Env) -> Vec<Value> {
    let listed = json_of(&env.diffy(["show", "--format", "json"]).output().unwrap());
    listed.as_array().unwrap().clone()
}

/// The keys saved under `prefix`.
fn keys(env: &Env, prefix: &str) -> Vec<String> {
    let listed = env
        .diffy(["show", "--prefix", prefix, "--format", "json"])
        .output()
        .unwrap();
    serde_json::from_value(json_of(&listed)).unwrap()
}

fn data_dir(env: &Env) -> PathBuf {
    env.config_dir().join("data").join("diffy-local")
}

/// Every file under `dir` whose name starts with `.tmp`.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            found.extend(temporary_files(&path));
        } else if entry.file_name().to_string_lossy().starts_with(".tmp") {
            found.push(path);
        }
    }
    found
}

/// A `diffy ARGS…` process of `env`, stdout discarded and stderr kept, for spawning.
fn quiet<S: AsRef<std::ffi::OsStr>>(env: &Env, args: &[S]) -> Command {
    let mut command = Command::new(target_dir().join("diffy"));
    command
        .env("DIFFY_CONFIG_DIR", env.config_dir())
        .env("DIFFY_BUNDLED_PLUGINS_DIR", target_dir())
        .env_remove("RUST_LOG")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Whether `diffy ARGS…` succeeds.
fn succeeds(env: &Env, args: &[String]) -> bool {
    env.diffy(args).output().unwrap().status.success()
}

#[test]
fn concurrent_analyses_and_one_incident_twice_keep_every_report_and_record() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(&fleet, 3, host_name);
    // 24 analyses started at once: 12 of incident IR-1, 6 of IR-2, 6 of none.
    let children: Vec<_> = (0..24)
        .map(|i| {
            let incident: &[&str] = match i % 4 {
                0 | 1 => &["--incident-id", "IR-1"],
                2 => &["--incident-id", "IR-2"],
                _ => &[],
            };
            quiet(&env, &analysis_args(&fleet, "local-cluster", incident))
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr_of(&output));
    }
    let runs = runs(&env);
    assert_eq!(runs.len(), 24, "{runs:?}");
    let ids: BTreeSet<&str> = runs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 24, "run ids repeat: {ids:?}");
    let mut by_incident: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        assert_eq!(run["status"], "complete", "{run}");
        assert_eq!(run["hosts"], 3);
        *by_incident.entry(run["incident"].to_string()).or_default() += 1;
    }
    assert_eq!(by_incident["\"IR-1\""], 12);
    assert_eq!(by_incident["\"IR-2\""], 6);
    assert_eq!(by_incident["null"], 6);
    let saved = keys(&env, "");
    for id in &ids {
        assert!(saved.contains(&format!("report/{id}")), "no report of {id}");
        let records = saved
            .iter()
            .filter(|k| k.starts_with(&format!("records/{id}/")))
            .count();
        assert_eq!(records, 3, "records of {id}");
    }
    // `show` groups the runs by incident, and filters by one.
    let table = stdout_of(&env.diffy(["show"]).output().unwrap());
    let first_ir2 = table.find("IR-2").unwrap();
    let last_ir1 = table.rfind("IR-1").unwrap();
    assert!(last_ir1 < first_ir2, "{table}");
    let only = json_of(
        &env.diffy(["show", "--incident-id", "IR-2", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(only.as_array().unwrap().len(), 6);
}

/// Wait (polling, with a generous limit) until `diffy show` lists a run.
fn wait_for_a_run(env: &Env, child: &mut std::process::Child) -> Value {
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(run) = runs(env).into_iter().next() {
            return run;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the analysis ended early"
        );
        assert!(Instant::now() < limit, "no run was ever listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_run_is_interrupted_never_complete_and_the_next_run_cleans_up() {
    let env = Env::new();
    let slow =
        r#"local-command.commands=[{"id":"fast","run":"echo fast"},{"id":"slow","run":"sleep 3"}]"#;
    let mut child = quiet(
        &env,
        &[
            "new",
            "analysis",
            "localhost",
            "--option",
            slow,
            "--incident-id",
            "IR-9",
            "--analysis-plugin",
            "local-cluster",
        ],
    )
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let running = wait_for_a_run(&env, &mut child);
    assert_eq!(running["status"], "running", "{running}");
    child.kill().unwrap();
    child.wait().unwrap();
    let id = running["id"].as_str().unwrap().to_string();

    let killed = runs(&env);
    assert_eq!(killed.len(), 1);
    assert_eq!(killed[0]["status"], "interrupted", "{killed:?}");
    let table = stdout_of(&env.diffy(["show"]).output().unwrap());
    let column = table
        .lines()
        .next()
        .and_then(|header| header.split_whitespace().position(|name| name == "STATUS"));
    let status = table
        .lines()
        .nth(1)
        .zip(column)
        .and_then(|(row, column)| row.split_whitespace().nth(column));
    assert_eq!(status, Some("interrupted"), "{table}");
    let report = env
        .diffy(["show", &format!("report/{id}")])
        .output()
        .unwrap();
    assert_eq!(
        report.status.code(),
        Some(2),
        "an interrupted run has no report"
    );

    // What the killed writer left half-written goes with the next run, which completes.
    let open = data_dir(&env).join("runs").join(".open");
    let stale = open.join(".tmpLEFTOVER");
    std::fs::write(&stale, "").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let fast = r#"local-command.commands=[{"id":"fast","run":"echo fast"}]"#;
    let output = env
        .diffy([
            "new",
            "analysis",
            "localhost",
            "--option",
            fast,
            "--analysis-plugin",
            "local-cluster",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let after = runs(&env);
    let status: Vec<(&str, &str)> = after
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(status.len(), 2);
    assert_eq!(status[0], (id.as_str(), "interrupted"));
    assert_eq!(status[1].1, "complete");
    assert!(temporary_files(&data_dir(&env)).is_empty());
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0, "markers left");
}

/// `diffy new baseline localhost` with the given commands: `(id, stdout)`, each echoed.
fn baseline_args(commands: &[(&str, &str)]) -> Vec<String> {
    let commands: Vec<String> = commands
        .iter()
        .map(|(id, run)| format!(r#"{{"id":"{id}","run":"{run}"}}"#))
        .collect();
    vec![
        "new".into(),
        "baseline".into(),
        "localhost".into(),
        "--option".into(),
        format!("local-command.commands=[{}]", commands.join(",")),
    ]
}

/// The baseline of `localhost` as saved: command id → the first bytes of its stdout.
fn baseline_of(env: &Env) -> BTreeMap<String, String> {
    keys(env, "baseline/localhost/")
        .into_iter()
        .map(|key| {
            let record = json_of(&env.diffy(["show", &key]).output().unwrap());
            let stdout: String = record["stdout"].as_str().unwrap().chars().take(3).collect();
            (key.rsplit('/').next().unwrap().to_string(), stdout)
        })
        .collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_new_baseline_replaces_the_previous_one_whole() {
    let env = Env::new();
    let first = baseline_args(&[("a", "echo old"), ("b", "echo old")]);
    assert!(succeeds(&env, &first));
    assert_eq!(baseline_of(&env), expected(&[("a", "old"), ("b", "old")]));
    let second = baseline_args(&[("c", "echo new")]);
    assert!(succeeds(&env, &second));
    assert_eq!(
        baseline_of(&env),
        expected(&[("c", "new")]),
        "no stale command"
    );
}

/// Commands whose outputs are large enough (a few MB) for a kill to land while they are saved.
fn big(word: &str) -> String {
    format!(
        "head -c 3000000 /dev/zero | tr -c {} {}",
        &word[..1],
        &word[..1]
    )
}

#[test]
fn a_baseline_killed_at_any_moment_is_the_old_one_or_the_new_one() {
    let env = Env::new();
    let (old_a, old_b, new_b, new_c) = (big("o"), big("o"), big("n"), big("n"));
    let old = baseline_args(&[("a", &old_a), ("b", &old_b)]);
    let new = baseline_args(&[("b", &new_b), ("c", &new_c)]);
    let old_baseline = expected(&[("a", "ooo"), ("b", "ooo")]);
    let new_baseline = expected(&[("b", "nnn"), ("c", "nnn")]);
    assert!(succeeds(&env, &old));
    assert_eq!(baseline_of(&env), old_baseline);
    let started = Instant::now();
    assert!(succeeds(&env, &new));
    let total = started.elapsed();
    assert_eq!(baseline_of(&env), new_baseline);

    for kill in 0..16u32 {
        // Alternate the sets, so that every kill interrupts a replacement.
        let to = if kill % 2 == 0 { &old } else { &new };
        let mut child = quiet(&env, to).spawn().unwrap();
        std::thread::sleep(total.mul_f64(1.2 * f64::from(kill) / 16.0));
        let _ = child.kill();
        let _ = child.wait();
        let now = baseline_of(&env);
        assert!(
            now == old_baseline || now == new_baseline,
            "kill {kill}: a mix of baselines: {now:?}"
        );
    }
    // What the kills left half-written is gone after the next baseline.
    for file in temporary_files(&data_dir(&env)) {
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(60))
            .unwrap();
    }
    assert!(succeeds(&env, &old));
    assert_eq!(baseline_of(&env), old_baseline);
    assert!(temporary_files(&data_dir(&env)).is_empty());
}

#[test]
fn parallel_baselines_of_one_key_leave_one_of_them_whole() {
    let env = Env::new();
    let one = baseline_args(&[("a", "echo one"), ("b", "echo one")]);
    let two = baseline_args(&[("b", "echo two"), ("c", "echo two")]);
    for trial in 0..10 {
        let children = [
            quiet(&env, &one).spawn().unwrap(),
            quiet(&env, &two).spawn().unwrap(),
        ];
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(output.status.success(), "{}", stderr_of(&output));
        }
        let now = baseline_of(&env);
        assert!(
            now == expected(&[("a", "one"), ("b", "one")])
                || now == expected(&[("b", "two"), ("c", "two")]),
            "trial {trial}: a mix of baselines: {now:?}"
        );
    }
}

#[test]
fn names_too_long_for_a_file_name_are_shortened_and_listed_as_they_were() {
    let env = Env::new();
    let long = "日".repeat(80);
    // A fleet whose directory, and one of whose hosts, have names of 240 bytes (720 encoded).
    let fleet = env.scratch.path().join(&long);
    evidence_fleet(&fleet, 12, |host| {
        if host == 0 {
            long.clone()
        } else {
            host_name(host)
        }
    });
    let key = fleet.to_string_lossy().into_owned();
    let report = json_of(
        &env.diffy(analysis_args(&fleet, "local-cluster", &[]))
            .output()
            .unwrap(),
    );
    assert_eq!(report["hosts"][0]["target"], long.as_str());
    let run = runs(&env)[0]["id"].as_str().unwrap().to_string();
    let encoded = diffy_plugin_api::keys::record_key(&run, &long, "packages");
    assert!(keys(&env, "records/").contains(&encoded), "{encoded}");
    let record = json_of(&env.diffy(["show", &encoded]).output().unwrap());
    assert_eq!(record["target"], long.as_str());
    assert_eq!(runs(&env)[0]["key"], key.as_str());

    // A baseline under that key, listed by it, and used by the next analysis.
    let output = env
        .diffy([
            "new",
            "baseline",
            &key,
            "--target-plugin",
            "evidence-dir",
            "--collection-plugin",
            "evidence-dir",
            "--option",
            PACKAGES,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        keys(&env, "baseline/"),
        [diffy_plugin_api::keys::baseline_key(&key, "packages")]
    );
    let report = json_of(
        &env.diffy(analysis_args(&fleet, "local-simple", &[]))
            .output()
            .unwrap(),
    );
    assert_eq!(report["hosts"].as_array().unwrap().len(), 12);
}

#[test]
fn unusable_keys_and_incident_ids_are_refused_before_anything_is_collected() {
    let env = Env::new();
    let marker = env.scratch.path().join("collected");
    let touch = format!(
        r#"local-command.commands=[{{"id":"touch","run":"touch {}"}}]"#,
        marker.display()
    );
    let long_incident = "x".repeat(251);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["new", "baseline", "."], "invalid target key \".\""),
        (vec!["new", "baseline", ".."], "invalid target key \"..\""),
        (vec!["new", "analysis", ""], "invalid target key \"\""),
        (
            vec![
                "new",
                "analysis",
                "localhost",
                "--incident-id",
                &long_incident,
            ],
            "is 251 characters long; the limit is 128",
        ),
        (
            vec!["new", "baseline", "localhost", "--incident-id", ""],
            "invalid incident id \"\": it is empty",
        ),
    ];
    for (mut args, message) in cases {
        args.extend(["--option", &touch]);
        let output = env.diffy(&args).output().unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{stderr}"
        );
        assert!(!marker.exists(), "{args:?} collected before refusing");
    }
    assert!(runs(&env).is_empty());
}

/// The first ```sql block after the line `<!-- tested: NAME -->` in docs/storage.md.
fn documented_query(name: &str) -> String {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/storage.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let start = text
        .find(&format!("<!-- tested: {name} -->"))
        .unwrap_or_else(|| panic!("docs/storage.md has no query {name}"));
    let rest = &text[start..];
    let block = &rest[rest.find("```sql\n").unwrap() + 7..];
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn saved_runs_answer_the_documented_duckdb_queries() {
    let probe = Command::new("python3")
        .args(["-c", "import duckdb"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        // Straight to stderr, past the test harness's capture, so the skip is seen.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: python3 cannot import duckdb (pip install duckdb)"
        );
        return;
    }
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(&fleet, 12, host_name);
    json_of(
        &env.diffy(analysis_args(
            &fleet,
            "local-cluster",
            &["--incident-id", "IR-7"],
        ))
        .output()
        .unwrap(),
    );
    let data = data_dir(&env);
    let query = |name: &str| -> Vec<Vec<Value>> {
        let sql = documented_query(name).replace("$DATA", &data.to_string_lossy());
        let script = "import duckdb, json, sys\n\
                      rows = duckdb.sql(sys.stdin.read()).fetchall()\n\
                      print(json.dumps(rows, default=str))\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{name}: {}", stderr_of(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let runs = query("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0][1], "IR-7");
    assert_eq!(runs[0][2], "complete");
    let rare = query("rare-rows");
    assert_eq!(rare[0][0], "implant 6.6.6", "{rare:?}");
    assert_eq!(rare[0][1], 1);
    assert_eq!(rare[0][2], "host-000");
}
