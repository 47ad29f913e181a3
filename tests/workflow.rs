//! `diffy new baseline`, `diffy new analysis` and `diffy show` with the bundled diffy-local plugin,
//! through the built binary.

use std::path::Path;

use diffy_e2e::{Env, stderr_of, stdout_of};
use predicates::prelude::*;
use serde_json::Value;

/// Write an evidence directory: `hosts` hosts, each with `rows` common rows of command `packages`,
/// plus the extra rows given for some hosts.
fn evidence_fleet(dir: &Path, hosts: usize, rows: usize, extras: &[(usize, &[&str])]) {
    for host in 0..hosts {
        let host_dir = dir.join(format!("host-{host:03}"));
        std::fs::create_dir_all(&host_dir).unwrap();
        let mut text: String = (0..rows)
            .map(|r| format!("package-{r} 1.{r}.0\n"))
            .collect();
        for (_, lines) in extras.iter().filter(|(h, _)| *h == host) {
            for line in *lines {
                text.push_str(line);
                text.push('\n');
            }
        }
        std::fs::write(host_dir.join("packages.txt"), text).unwrap();
    }
}

const PACKAGES: &str = r#"local-command.commands=[{"id":"packages","run":"unused for evidence"}]"#;

fn evidence_args(dir: &Path, analysis: &str) -> Vec<String> {
    vec![
        "new".into(),
        "analysis".into(),
        dir.to_string_lossy().into_owned(),
        "--target-plugin".into(),
        "evidence-dir".into(),
        "--collection-plugin".into(),
        "evidence-dir".into(),
        "--option".into(),
        PACKAGES.into(),
        "--analysis-plugin".into(),
        analysis.into(),
        "--format".into(),
        "json".into(),
    ]
}

/// `diffy new analysis localhost --option COMMANDS --format json`.
fn analyse_this_host(env: &Env, commands: &str) -> std::process::Output {
    env.diffy([
        "new",
        "analysis",
        "localhost",
        "--option",
        commands,
        "--format",
        "json",
    ])
    .output()
    .unwrap()
}

/// The first host's diff for `command`.
fn command_diff(report: &Value, command: &str) -> Value {
    report["hosts"][0]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == command)
        .unwrap_or_else(|| panic!("no diff for {command} in {report}"))
        .clone()
}

fn report_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(output)))
}

#[test]
fn baseline_then_analysis_of_this_host_shows_a_change() {
    let env = Env::new();
    let marker = env.scratch.path().join("marker");
    std::fs::write(&marker, "alpha\nbeta\n").unwrap();
    let commands = format!(
        r#"local-command.commands=[{{"id":"marker","run":"cat {}"}},{{"id":"kernel","run":"uname -s"}}]"#,
        marker.display()
    );
    env.diffy(["new", "baseline", "localhost", "--option", &commands])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Saved baseline \"localhost\"")
                .and(predicate::str::contains("marker")),
        );

    // Unchanged: nothing to report.
    let same = analyse_this_host(&env, &commands);
    let report = report_of(&same);
    assert_eq!(report["analysis"], "local-simple");
    assert_eq!(report["hosts"][0]["score"], 0.0);

    // A change on the host between baseline and analysis shows up, row by row.
    std::fs::write(&marker, "alpha\ngamma\n").unwrap();
    let changed = analyse_this_host(&env, &commands);
    let report = report_of(&changed);
    let marker_diff = command_diff(&report, "marker");
    assert_eq!(marker_diff["added"], serde_json::json!(["gamma"]));
    assert_eq!(marker_diff["removed"], serde_json::json!(["beta"]));

    // The table says the same, and --fail-on-diff turns differences into exit code 1.
    env.diffy([
        "new",
        "analysis",
        "localhost",
        "--option",
        &commands,
        "--fail-on-diff",
    ])
    .assert()
    .code(1)
    .stdout(predicate::str::contains("+ gamma").and(predicate::str::contains("- beta")));
}

#[test]
fn the_default_triage_set_runs_on_this_host() {
    let env = Env::new();
    env.diffy(["new", "baseline", "localhost"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("listening-sockets")
                .and(predicate::str::contains("processes"))
                .and(predicate::str::contains("login-accounts"))
                .and(predicate::str::contains("cron-entries")),
        );
    let output = env
        .diffy(["new", "analysis", "localhost"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let text = stdout_of(&output);
    assert!(
        text.contains("local-simple analysis") && text.contains("report saved as report/"),
        "{text}"
    );
}

#[test]
fn cluster_ranks_the_odd_hosts_first_and_names_their_rows() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(
        &fleet,
        50,
        40,
        &[
            (17, &["backdoor 6.6.6"]),
            (33, &["miner 0.1", "backdoor 6.6.6"]),
        ],
    );
    let output = env
        .diffy(evidence_args(&fleet, "local-cluster"))
        .output()
        .unwrap();
    let report = report_of(&output);
    let hosts = report["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 50);
    assert_eq!(hosts[0]["target"], "host-033");
    assert_eq!(hosts[1]["target"], "host-017");
    assert_eq!(hosts[2]["score"], 0.0);
    // Stacking: each host's rare rows, rarest first, with how many of the fleet share each.
    let rare = |i: usize| hosts[i]["commands"][0]["rare"].clone();
    assert_eq!(
        rare(0),
        serde_json::json!([{"row": "miner 0.1", "hosts": 1}, {"row": "backdoor 6.6.6", "hosts": 2}])
    );
    assert_eq!(
        rare(1),
        serde_json::json!([{"row": "backdoor 6.6.6", "hosts": 2}])
    );
    assert_eq!(report["fleet_size"], 50);
    assert_eq!(hosts[0]["commands"][0]["removed"], serde_json::json!([]));
    assert!(
        report["warnings"].as_array().unwrap().is_empty(),
        "{report}"
    );
}

#[test]
fn cluster_warns_about_a_small_fleet() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(&fleet, 3, 5, &[(1, &["odd"])]);
    let report = report_of(
        &env.diffy(evidence_args(&fleet, "local-cluster"))
            .output()
            .unwrap(),
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("3 hosts"), "{warnings}");
}

#[test]
fn simple_against_a_baseline_of_the_same_data_reports_nothing() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(&fleet, 10, 30, &[]);
    let mut baseline = evidence_args(&fleet, "local-simple");
    baseline[1] = "baseline".into();
    baseline.truncate(baseline.len() - 4); // no --analysis-plugin or --format for a baseline
    env.diffy(&baseline)
        .assert()
        .success()
        .stdout(predicate::str::contains("from host-000"));
    let report = report_of(
        &env.diffy(evidence_args(&fleet, "local-simple"))
            .output()
            .unwrap(),
    );
    assert_eq!(report["hosts"].as_array().unwrap().len(), 10);
    for host in report["hosts"].as_array().unwrap() {
        assert_eq!(host["score"], 0.0, "{host}");
    }
    // --fail-on-diff with no differences exits 0.
    let mut args = evidence_args(&fleet, "local-simple");
    args.push("--fail-on-diff".into());
    env.diffy(&args).assert().success();
}

#[test]
fn a_failing_command_is_a_failed_record_not_a_failed_run() {
    let env = Env::new();
    let commands = r#"local-command.commands=[{"id":"ok","run":"echo fine"},{"id":"broken","run":"echo partial; echo oops >&2; exit 3"}]"#;
    env.diffy(["new", "baseline", "localhost", "--option", commands])
        .assert()
        .success()
        .stdout(predicate::str::contains("broken").and(predicate::str::contains("failed")));
    let output = env
        .diffy([
            "new",
            "analysis",
            "localhost",
            "--option",
            commands,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let report = report_of(&output);
    let broken = command_diff(&report, "broken");
    assert!(
        broken["error"].as_str().unwrap().contains("exit 3"),
        "{broken}"
    );
    // The saved record keeps the truth: failed, exit code 3, stderr.
    let keys = env
        .diffy(["show", "--prefix", "records/", "--format", "json"])
        .output()
        .unwrap();
    let keys: Vec<String> = serde_json::from_slice(&keys.stdout).unwrap();
    let broken_key = keys
        .iter()
        .find(|k| k.ends_with("/broken"))
        .expect("record saved");
    let record: Value =
        serde_json::from_slice(&env.diffy(["show", broken_key]).output().unwrap().stdout).unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["exit_code"], 3);
    assert_eq!(record["stderr"], "oops\n");
    assert_eq!(record["stdout"], "partial\n");
    assert_eq!(record["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn bad_choices_are_clear_usage_errors() {
    let env = Env::new();
    let fails = |args: &[&str], expected: &str| {
        let output = env.diffy(args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&output)
        );
        let stderr = stderr_of(&output);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    };
    fails(
        &[
            "new",
            "analysis",
            "localhost",
            "--option",
            "local-shell.bogus=1",
        ],
        "local-shell has no option \"bogus\" (known: max_output_mib, timeout_secs)",
    );
    fails(
        &[
            "new",
            "analysis",
            "localhost",
            "--option",
            "local-shell.timeout_secs=soon",
        ],
        "must be integer",
    );
    fails(
        &["new", "analysis", "localhost", "--option", "nope.key=1"],
        "nope is not one of the chosen components",
    );
    fails(
        &["new", "analysis", "localhost", "--option", "novalue"],
        "SLUG.KEY=VALUE",
    );
    fails(
        &[
            "new",
            "analysis",
            "localhost",
            "--analysis-plugin",
            "no-such-analysis",
        ],
        "no plugin provides analysis \"no-such-analysis\"",
    );
    fails(
        &[
            "new",
            "analysis",
            "localhost",
            "--analysis-plugin",
            "local-shell",
        ],
        "no plugin provides analysis \"local-shell\"",
    );
    fails(
        &[
            "new",
            "baseline",
            "localhost",
            "--target-plugin",
            "local-file",
        ],
        "no plugin provides target \"local-file\"",
    );
    fails(
        &["new", "analysis", "never-baselined"],
        "no baseline saved for \"never-baselined\"; run 'diffy new baseline never-baselined' first",
    );
    fails(&["show", "report/none"], "nothing is saved under");
}

#[test]
fn verbose_shows_only_the_five_chosen_components_activated() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(&fleet, 4, 3, &[]);
    // Another installed plugin with components of every kind must stay closed.
    env.install(env.fixture("diffy-bystander", "bystander", "bystander"));
    let mut args = vec!["-v".to_string()];
    args.extend(evidence_args(&fleet, "local-cluster"));
    let output = env.diffy(&args).output().unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    let mut activated: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("activated component"))
        .filter_map(|l| l.split("component=").nth(1))
        .filter_map(|rest| rest.split(" activate_us=").next())
        .collect();
    activated.sort();
    assert_eq!(
        activated,
        vec![
            "analysis local-cluster",
            "collection evidence-dir",
            "payload local-command",
            "persistence local-file",
            "target evidence-dir"
        ],
        "{stderr}"
    );
    let loaded: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("loaded plugin library"))
        .collect();
    assert_eq!(loaded.len(), 1, "only diffy-local is opened: {loaded:?}");
    assert!(loaded[0].contains("libdiffy_local"), "{loaded:?}");
}

#[test]
fn show_lists_and_renders_saved_reports() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    evidence_fleet(&fleet, 12, 5, &[(4, &["strange row"])]);
    let mut args = evidence_args(&fleet, "local-cluster");
    args.extend(["--incident-id".into(), "IR-42".into()]);
    report_of(&env.diffy(&args).output().unwrap());
    // `show` lists the runs: the incident groups them, each has an id of its own.
    let runs: Value = serde_json::from_slice(
        &env.diffy(["show", "--format", "json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["incident"], "IR-42");
    assert_eq!(runs[0]["status"], "complete");
    let run = runs[0]["id"].as_str().unwrap();
    assert_ne!(
        run, "IR-42",
        "the incident groups runs, it does not name one"
    );
    env.diffy(["show"]).assert().success().stdout(
        predicate::str::contains("IR-42")
            .and(predicate::str::contains(run))
            .and(predicate::str::contains("complete")),
    );
    env.diffy(["show", "--prefix", ""])
        .assert()
        .success()
        .stdout(
            predicate::str::contains(format!("report/{run}")).and(predicate::str::contains(
                format!("records/{run}/host-004/packages"),
            )),
        );
    let record: Value = serde_json::from_slice(
        &env.diffy(["show", &format!("records/{run}/host-004/packages")])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(record["stdout"].as_str().unwrap().contains("strange row"));
    env.diffy(["show", &format!("report/{run}")])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("host-004")
                .and(predicate::str::contains(
                    "strange row  (seen on 1 of 12 hosts)",
                ))
                .and(predicate::str::contains("REMOVED").not()),
        );
}
