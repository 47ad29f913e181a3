//! The bundled diffy-ssh plugin against real OpenSSH servers ([`diffy_e2e::ssh_lab`]), through
//! the built binary: `ssh-inventory` targets, the `ssh` collection, `local-cluster` and
//! `local-simple` analyses.
//!
//! Where the lab cannot run (not root, no sshd, no namespaces) each test says `skipped: …` on
//! stderr, past the test harness's capture, and passes.

use std::io::Write;
use std::path::Path;
use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diffy_e2e::ssh_lab::{BACKDOOR_ACCOUNT, HANG_COMMAND, HostSpec, Lab, MALICIOUS_CRON, Role};
use diffy_e2e::{Env, stderr_of, stdout_of};
use serde_json::{Value, json};

/// One lab at a time: every lab host sees the machine's listening sockets, so a lab starting
/// while another collects would show up as a difference.
static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn lab_or_skip(test: &str, hosts: &[HostSpec]) -> Option<(Lab, MutexGuard<'static, ()>)> {
    let guard = ONE_LAB_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    match Lab::start(hosts) {
        Ok(lab) => Some((lab, guard)),
        Err(why) => {
            // Straight to stderr: the harness captures only print! and eprint!.
            let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
            None
        }
    }
}

/// `diffy ARGS…` with the lab's ssh_config, its temporary files (control sockets) under
/// `scratch/tmp`, and a deadline well past anything a test expects.
fn diffy(env: &Env, lab: &Lab, args: &[&str]) -> Output {
    let tmp = env.scratch.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let config = format!("ssh.ssh_config={}", lab.ssh_config().display());
    env.diffy(args)
        .args(["--option", &config])
        .env("TMPDIR", &tmp)
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(output)))
}

/// The saved record of `target` and `command` in the latest run of incident `incident`.
fn record(env: &Env, incident: &str, target: &str, command: &str) -> Value {
    let runs = json_of(
        &env.diffy(["show", "--incident-id", incident, "--format", "json"])
            .output()
            .unwrap(),
    );
    let latest = runs.as_array().and_then(|runs| runs.last());
    let run = latest.unwrap_or_else(|| panic!("no run of {incident}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let key = format!("records/{run}/{target}/{command}");
    let output = env.diffy(["show", &key]).output().unwrap();
    json_of(&output)
}

/// diffy-local's default triage set, as its schema declares it, and `extra` after it.
fn triage_set_and(env: &Env, extra: Value) -> String {
    let info = json_of(
        &env.diffy(["plugin", "info", "diffy-local", "--format", "json"])
            .output()
            .unwrap(),
    );
    let payload = info["manifest"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "local-command")
        .unwrap()
        .clone();
    let mut commands = payload["options"][0]["default"].as_array().unwrap().clone();
    assert_eq!(commands.len(), 5, "{payload}");
    commands.extend(extra.as_array().unwrap().iter().cloned());
    format!("local-command.commands={}", Value::Array(commands))
}

/// ssh processes of this lab still running, and control directories left in `scratch/tmp`.
fn leftovers(env: &Env, lab: &Lab) -> Vec<String> {
    let pgrep = std::process::Command::new("pgrep")
        .arg("-af")
        .arg(format!("ssh .*{}", lab.ssh_config().display()))
        .output()
        .unwrap();
    let mut left: Vec<String> = stdout_of(&pgrep).lines().map(str::to_string).collect();
    let tmp = env.scratch.path().join("tmp");
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        left.extend(
            entries
                .flatten()
                .map(|e| e.path().display().to_string())
                .filter(|p| p.contains("diffy-ssh-")),
        );
    }
    left
}

fn rows(diff: &Value, side: &str) -> Vec<String> {
    diff[side]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The rows a cluster analysis found on this host and on few others, with how many hosts have each.
fn rare_rows(diff: &Value) -> Vec<(String, u64)> {
    diff["rare"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["row"].as_str().unwrap_or("").to_string(),
                        r["hosts"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn command_diff<'a>(host: &'a Value, command: &str) -> &'a Value {
    host["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == command)
        .unwrap_or_else(|| panic!("no {command} in {host}"))
}

fn error_of(record: &Value) -> &str {
    record["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {record}"))
}

#[test]
fn a_fleet_over_ssh_ranks_the_tampered_host_first_and_names_every_failure() {
    let mut hosts: Vec<HostSpec> = (1..=9)
        .map(|n| HostSpec::new(format!("web-{n:02}"), Role::Healthy))
        .collect();
    hosts.extend([
        HostSpec::new("tampered", Role::Tampered),
        HostSpec::new("hangs", Role::Hangs),
        HostSpec::new("changed-key", Role::ChangedKey),
        HostSpec::new("down", Role::Down),
    ]);
    let Some((lab, _guard)) = lab_or_skip("ssh fleet", &hosts) else {
        return;
    };
    let env = Env::new();
    let known_hosts_before = std::fs::read(lab.known_hosts()).unwrap();
    let commands = triage_set_and(&env, json!([{"id": "lab-hang", "run": HANG_COMMAND}]));
    let inventory = lab.inventory();
    let started = Instant::now();
    let output = diffy(
        &env,
        &lab,
        &[
            "new",
            "analysis",
            inventory.to_str().unwrap(),
            "--target-plugin",
            "ssh-inventory",
            "--collection-plugin",
            "ssh",
            "--analysis-plugin",
            "local-cluster",
            "--option",
            &commands,
            "--option",
            "ssh.command_timeout=3",
            "--option",
            "ssh.connect_timeout=5",
            "--jobs",
            "13",
            "--incident-id",
            "IR-LAB",
            "--format",
            "json",
        ],
    );
    let took = started.elapsed();
    let report = json_of(&output);

    // The tampered host comes first, for its account and its cron line, each found on it alone.
    let ranked = report["hosts"].as_array().unwrap();
    assert_eq!(ranked.len(), 13, "{report}");
    let first = &ranked[0];
    assert_eq!(first["target"], "tampered", "{report}");
    let backdoor = BACKDOOR_ACCOUNT.replace(':', " ");
    assert_eq!(
        rare_rows(command_diff(first, "login-accounts")),
        [(backdoor, 1)],
        "{first}"
    );
    let cron = rare_rows(command_diff(first, "cron-entries"));
    assert_eq!(
        cron,
        [(format!("/etc/crontab:{MALICIOUS_CRON}"), 1)],
        "{first}"
    );
    // The healthy hosts, alike on every command collected over SSH, are not suspects.
    for host in ranked
        .iter()
        .filter(|h| h["target"].as_str().unwrap().starts_with("web-"))
    {
        assert_eq!(host["score"], 0.0, "{host}");
    }

    // Each failure is a failed record of its class.
    let down = record(&env, "IR-LAB", "down", "processes");
    assert_eq!(down["status"], "error");
    assert!(error_of(&down).starts_with("unreachable: "), "{down}");
    assert!(
        down["stderr"]
            .as_str()
            .unwrap()
            .starts_with("unreachable: ")
    );
    let changed = record(&env, "IR-LAB", "changed-key", "processes");
    assert_eq!(changed["status"], "error");
    assert!(
        error_of(&changed).starts_with("host key changed: "),
        "{changed}"
    );
    let hang = record(&env, "IR-LAB", "hangs", "lab-hang");
    assert_eq!(hang["status"], "timeout");
    assert!(error_of(&hang).starts_with("timed out: "), "{hang}");
    assert!(hang["duration_ms"].as_u64().unwrap() < 6_000, "{hang}");
    // …and only the hanging command failed there: the host was not given up.
    let after_hang = record(&env, "IR-LAB", "hangs", "login-accounts");
    assert_eq!(after_hang["status"], "ok", "{after_hang}");
    let ok = record(&env, "IR-LAB", "web-01", "login-accounts");
    assert_eq!(ok["status"], "ok");
    assert_eq!(ok["exit_code"], 0);
    assert_eq!(ok["sha256"].as_str().unwrap().len(), 64);
    assert!(ok["duration_ms"].is_u64());

    // The hanging host cost one command_timeout, not the run's.
    assert!(took < Duration::from_secs(60), "took {took:?}");
    assert_eq!(
        std::fs::read(lab.known_hosts()).unwrap(),
        known_hosts_before
    );
    assert_eq!(leftovers(&env, &lab), Vec::<String>::new());
}

#[test]
fn every_failure_class_is_named_and_the_incident_goes_only_where_accepted() {
    let hosts = [
        HostSpec::new("accepts", Role::Healthy),
        HostSpec::new("declines", Role::Healthy).refusing_incident(),
        HostSpec::new("unknown-key", Role::UnknownKey),
        HostSpec::new("changed-key", Role::ChangedKey),
        HostSpec::new("refuses-login", Role::RefusesLogin),
        HostSpec::new("tarpit", Role::Tarpit),
        HostSpec::new("down", Role::Down),
    ];
    let Some((lab, _guard)) = lab_or_skip("ssh failure classes", &hosts) else {
        return;
    };
    let env = Env::new();
    let commands = json!([
        {"id": "incident", "run": "echo \"${DIFFY_INCIDENT-unset}\""},
        {"id": "fails", "run": "echo partial; echo oops >&2; exit 3"},
        {"id": "after", "run": "echo still here"}
    ]);
    let commands = format!("local-command.commands={commands}");
    let run = |extra: &[&str], incident: &str| {
        let inventory = lab.inventory();
        let mut args = vec![
            "new",
            "analysis",
            inventory.to_str().unwrap(),
            "--target-plugin",
            "ssh-inventory",
            "--collection-plugin",
            "ssh",
            "--analysis-plugin",
            "local-cluster",
            "--option",
            &commands,
            "--option",
            "ssh.connect_timeout=2",
            "--jobs",
            "7",
            "--incident-id",
            incident,
            "--format",
            "json",
        ];
        args.extend(extra);
        json_of(&diffy(&env, &lab, &args))
    };
    let known_hosts_before = std::fs::read(lab.known_hosts()).unwrap();
    // An incident id a shell would act on, to show it is never spliced into a command line.
    let incident = "IR-9;touch /tmp/diffy-lab-pwned";
    run(&[], incident);
    let saved = |target: &str, command: &str| record(&env, incident, target, command);

    let accepted = saved("accepts", "incident");
    assert_eq!(accepted["stdout"], format!("{incident}\n"));
    assert_eq!(saved("declines", "incident")["stdout"], "unset\n");
    assert!(!Path::new("/tmp/diffy-lab-pwned").exists());

    let failed = saved("accepts", "fails");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["exit_code"], 3);
    assert_eq!(error_of(&failed), "command failed: exit 3");
    assert_eq!(failed["stdout"], "partial\n");
    assert_eq!(failed["stderr"], "oops\n");
    assert_eq!(saved("accepts", "after")["stdout"], "still here\n");

    for (target, class, status) in [
        ("unknown-key", "host key unknown: ", "error"),
        ("changed-key", "host key changed: ", "error"),
        ("refuses-login", "authentication refused: ", "error"),
        ("tarpit", "timed out: ", "timeout"),
        ("down", "unreachable: ", "error"),
    ] {
        for command in ["incident", "fails", "after"] {
            let failed = saved(target, command);
            assert_eq!(failed["status"], status, "{target}: {failed}");
            assert!(error_of(&failed).starts_with(class), "{target}: {failed}");
            assert_eq!(failed["stderr"], failed["error"], "{target}: {failed}");
            assert!(!error_of(&failed).contains('\n'), "{target}: {failed}");
        }
    }
    assert_eq!(
        std::fs::read(lab.known_hosts()).unwrap(),
        known_hosts_before
    );

    // accept-new adds the unknown host, and still refuses the changed key.
    run(&["--option", "ssh.host_key_checking=accept-new"], "IR-10");
    let saved = |target: &str, command: &str| record(&env, "IR-10", target, command);
    assert_eq!(saved("unknown-key", "after")["status"], "ok");
    assert!(error_of(&saved("changed-key", "after")).starts_with("host key changed: "));
    let known_hosts = std::fs::read_to_string(lab.known_hosts()).unwrap();
    let port = lab.port("unknown-key");
    assert!(
        known_hosts.contains(&format!("[127.0.0.1]:{port} ")),
        "{known_hosts}"
    );
    assert_eq!(leftovers(&env, &lab), Vec::<String>::new());
}

#[test]
fn baseline_then_analysis_of_an_unchanged_host_over_ssh_reports_nothing() {
    let Some((lab, _guard)) =
        lab_or_skip("ssh baseline", &[HostSpec::new("steady", Role::Healthy)])
    else {
        return;
    };
    let env = Env::new();
    let list = env.scratch.path().join("hosts.txt");
    std::fs::write(&list, format!("root@127.0.0.1:{}\n", lab.port("steady"))).unwrap();
    let list = list.to_str().unwrap();
    let choices = [
        "--target-plugin",
        "ssh-inventory",
        "--collection-plugin",
        "ssh",
    ];
    let mut baseline = vec!["new", "baseline", list];
    baseline.extend(choices);
    let output = diffy(&env, &lab, &baseline);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let mut analysis = vec!["new", "analysis", list, "--format", "json"];
    analysis.extend(choices);
    let report = json_of(&diffy(&env, &lab, &analysis));
    assert_eq!(report["analysis"], "local-simple");
    let host = &report["hosts"][0];
    for diff in host["commands"].as_array().unwrap() {
        assert_eq!(rows(diff, "added"), Vec::<String>::new(), "{host}");
        assert_eq!(rows(diff, "removed"), Vec::<String>::new(), "{host}");
        // A command may fail the same way twice (no /proc/modules in some VMs): that is no
        // difference, but it must be one that also failed in the baseline.
        if let Some(error) = diff["error"].as_str() {
            assert!(error.contains("exit"), "{host}");
        }
    }
    assert_eq!(leftovers(&env, &lab), Vec::<String>::new());
}

#[test]
fn a_host_past_the_target_timeout_leaves_no_ssh_process_behind() {
    let hosts = [HostSpec::new("hangs", Role::Hangs)];
    let Some((lab, _guard)) = lab_or_skip("ssh target timeout", &hosts) else {
        return;
    };
    let env = Env::new();
    let commands = json!([{"id": "lab-hang", "run": HANG_COMMAND}]);
    let inventory = lab.inventory();
    let output = diffy(
        &env,
        &lab,
        &[
            "new",
            "analysis",
            inventory.to_str().unwrap(),
            "--target-plugin",
            "ssh-inventory",
            "--collection-plugin",
            "ssh",
            "--analysis-plugin",
            "local-cluster",
            "--option",
            &format!("local-command.commands={commands}"),
            "--option",
            "ssh.command_timeout=300",
            "--target-timeout",
            "3",
            "--incident-id",
            "IR-TIMEOUT",
            "--format",
            "json",
        ],
    );
    json_of(&output);
    let hang = record(&env, "IR-TIMEOUT", "hangs", "lab-hang");
    assert_eq!(hang["status"], "timeout", "{hang}");
    let stderr = hang["stderr"].as_str().unwrap();
    assert!(stderr.contains("did not finish within 3s"), "{stderr}");
    assert!(stderr.contains("it had started was killed"), "{stderr}");
    let left: Vec<String> = leftovers(&env, &lab)
        .into_iter()
        .filter(|left| !left.contains("diffy-ssh-"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}
