//! Structured evidence rows through the built binary: osquery JSON, JSON Lines and CSV fleets read
//! with no options, stacking with fleet counts, changed rows under key columns, the osquery
//! payload (with a stand-in `osqueryi` on PATH), and evidence that must be refused or reported.

use std::path::{Path, PathBuf};

use diffy_e2e::{Env, stderr_of, stdout_of};
use serde_json::{Value, json};

/// `diffy new analysis DIR` with the evidence-dir target and collection and no other option but
/// the analysis (and, when given, the output format).
fn analyse_evidence(env: &Env, dir: &Path, analysis: &str, json: bool) -> std::process::Output {
    let mut args = vec![
        "new".to_string(),
        "analysis".into(),
        dir.to_string_lossy().into_owned(),
        "--target-plugin".into(),
        "evidence-dir".into(),
        "--collection-plugin".into(),
        "evidence-dir".into(),
        "--analysis-plugin".into(),
        analysis.into(),
    ];
    if json {
        args.extend(["--format".into(), "json".into()]);
    }
    env.diffy(&args).output().unwrap()
}

fn report_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr_of(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout_of(output)))
}

/// The diff of `command` on `host` in `report`.
fn diff<'r>(report: &'r Value, host: &str, command: &str) -> &'r Value {
    let host = report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == host)
        .unwrap_or_else(|| panic!("no host {host} in {report}"));
    host["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == command)
        .unwrap_or_else(|| panic!("no command {command} on {host}"))
}

fn write(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// `osqueryi --json` output: an array of objects whose values are all strings, one per line.
fn osquery_json(rows: &[Value]) -> String {
    let lines: Vec<String> = rows.iter().map(|row| format!("  {row}")).collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

/// Host `i`'s processes and listening sockets as osquery reports them: the same everywhere but
/// for the pids (and start times), which differ on every host.
fn osquery_host(dir: &Path, i: usize, extra_listener: bool) {
    let processes = osquery_json(&[
        json!({"pid": format!("{}", 1000 + i), "parent": "1", "name": "sshd",
               "path": "/usr/sbin/sshd", "start_time": format!("{}", 1_700_000_000 + i)}),
        json!({"pid": format!("{}", 2000 + i), "parent": "1", "name": "nginx",
               "path": "/usr/sbin/nginx", "start_time": format!("{}", 1_700_000_100 + i)}),
    ]);
    let mut listening = vec![
        json!({"pid": format!("{}", 1000 + i), "name": "sshd", "port": "22", "address": "0.0.0.0"}),
        json!({"pid": format!("{}", 2000 + i), "name": "nginx", "port": "80", "address": "0.0.0.0"}),
    ];
    if extra_listener {
        listening.push(
            json!({"pid": format!("{}", 6000 + i), "name": "nc", "port": "4444", "address": "0.0.0.0"}),
        );
    }
    let host = dir.join(format!("host-{i:02}"));
    write(host.join("processes.json"), &processes);
    write(host.join("listening.json"), &osquery_json(&listening));
}

#[test]
fn a_fleet_of_osquery_json_ranks_the_tampered_hosts_first_with_fleet_counts() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    for i in 0..50 {
        osquery_host(&fleet, i, i == 12 || i == 37);
    }
    let report = report_of(&analyse_evidence(&env, &fleet, "local-cluster", true));
    assert_eq!(report["fleet_size"], 50);
    assert_eq!(report["warnings"], json!([]), "{report}");
    let hosts = report["hosts"].as_array().unwrap();
    let first_two: Vec<&str> = hosts[..2]
        .iter()
        .map(|h| h["target"].as_str().unwrap())
        .collect();
    assert_eq!(first_two, ["host-12", "host-37"]);
    for host in ["host-12", "host-37"] {
        let listening = diff(&report, host, "listening.json");
        assert_eq!(
            listening["rare"],
            json!([{"row": {"name": "nc", "port": "4444", "address": "0.0.0.0"}, "hosts": 2}])
        );
        assert_eq!(listening["removed"], json!([]));
    }
    // Pids and start times differ on every host, and make no host odd.
    for host in &hosts[2..] {
        assert_eq!(host["score"], 0.0, "{host}");
    }

    // The table says the same, with the counts and without a removed column.
    let output = analyse_evidence(&env, &fleet, "local-cluster", false);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let table = stdout_of(&output);
    assert!(
        table.contains("local-cluster analysis: 2 of 50 hosts differ"),
        "{table}"
    );
    assert!(
        table.contains("    name=nc port=4444 address=0.0.0.0  (seen on 2 of 50 hosts)\n"),
        "{table}"
    );
    assert!(
        table.contains("RARE") && !table.contains("REMOVED"),
        "{table}"
    );
}

#[test]
fn csv_and_json_lines_evidence_are_rows_of_named_columns() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    for i in 0..12 {
        let host = fleet.join(format!("web-{i:02}"));
        let mut users =
            "username,uid,shell\nroot,0,/bin/bash\n\"deploy user\",1000,/bin/sh\n".to_string();
        let mut sockets =
            "{\"port\":22,\"proto\":\"tcp\"}\n{\"port\":53,\"proto\":\"udp\"}\n".to_string();
        if i == 5 {
            users.push_str("toor,0,/bin/bash\n");
            sockets.push_str("{\"port\":31337,\"proto\":\"tcp\",\"open\":true}\n");
        }
        write(host.join("users.csv"), &users);
        write(host.join("sockets.jsonl"), &sockets);
    }
    let report = report_of(&analyse_evidence(&env, &fleet, "local-cluster", true));
    assert_eq!(report["hosts"][0]["target"], "web-05");
    assert_eq!(
        diff(&report, "web-05", "users.csv")["rare"],
        json!([{"row": {"username": "toor", "uid": "0", "shell": "/bin/bash"}, "hosts": 1}])
    );
    assert_eq!(
        diff(&report, "web-05", "sockets.jsonl")["rare"],
        json!([{"row": {"port": "31337", "proto": "tcp", "open": "true"}, "hosts": 1}])
    );
    assert_eq!(report["hosts"][1]["score"], 0.0, "{report}");
}

#[test]
fn malformed_json_is_a_failed_record_naming_the_file_and_the_position() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    for i in 0..12 {
        osquery_host(&fleet, i, false);
    }
    write(
        fleet.join("host-03/processes.json"),
        "[\n  {\"name\":\"sshd\",\n   \"path\" \"/usr/sbin/sshd\"}\n]\n",
    );
    let report = report_of(&analyse_evidence(&env, &fleet, "local-cluster", true));
    assert_eq!(report["hosts"][0]["target"], "host-03");
    assert_eq!(
        diff(&report, "host-03", "processes.json")["error"],
        "cannot read processes.json as json: line 3 column 11: expected `:`"
    );
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("host-03/processes.json"), "{warnings}");
}

#[test]
fn evidence_that_leaves_the_directory_or_is_missing_is_reported() {
    let env = Env::new();
    let fleet = env.scratch.path().join("fleet");
    for i in 0..12 {
        osquery_host(&fleet, i, false);
    }
    // host-04's processes.json points at a file outside the evidence directory.
    let secret = env.scratch.path().join("secret.json");
    write(&secret, "[{\"password\":\"hunter2\"}]");
    let link = fleet.join("host-04/processes.json");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    // host-07 lacks listening.json; host-99 holds no evidence at all.
    std::fs::remove_file(fleet.join("host-07/listening.json")).unwrap();
    write(fleet.join("host-99/.notes"), "nothing collected");

    let output = analyse_evidence(&env, &fleet, "local-cluster", true);
    let text = stdout_of(&output);
    assert!(!text.contains("hunter2"), "{text}");
    let report = report_of(&output);
    let refused = diff(&report, "host-04", "processes.json")["error"]
        .as_str()
        .unwrap();
    assert!(
        refused.contains("outside the evidence directory"),
        "{refused}"
    );
    let missing = diff(&report, "host-07", "listening.json")["error"]
        .as_str()
        .unwrap();
    assert!(
        missing.contains("no evidence for command listening.json"),
        "{missing}"
    );
    for command in ["processes.json", "listening.json"] {
        let empty = diff(&report, "host-99", command)["error"].as_str().unwrap();
        assert!(empty.contains("no evidence: the host directory"), "{empty}");
        assert!(empty.contains("holds no evidence file"), "{empty}");
    }
}

/// A directory for PATH holding `sh` and `cat` and, when given, a stand-in `osqueryi` that
/// answers each query with osquery-shaped JSON: its pid is the shell's own (new on every run),
/// and the path of the process listening on port 22 is read from `sshd_path`.
fn fake_path(env: &Env, name: &str, sshd_path: Option<&Path>) -> PathBuf {
    let bin = env.scratch.path().join(name);
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["sh", "cat"] {
        let real = ["/bin", "/usr/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(tool))
            .find(|path| path.exists())
            .expect("sh and cat exist");
        std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
    }
    if let Some(sshd_path) = sshd_path {
        let script = format!(
            r#"#!/bin/sh
[ "$1" = --json ] || exit 2
case "$2" in
  *listening_ports*)
    printf '[\n  {{"pid":"%s","name":"sshd","path":"%s","protocol":"6","address":"0.0.0.0","port":"22"}}\n]\n' "$$" "$(cat {})" ;;
  *"FROM processes"*)
    printf '[\n  {{"pid":"%s","parent":"1","uid":"0","name":"sshd","path":"/usr/sbin/sshd","cmdline":"sshd -D","start_time":"%s"}}\n]\n' "$$" "$$" ;;
  *) printf '[\n\n]\n' ;;
esac
"#,
            sshd_path.display()
        );
        let osqueryi = bin.join("osqueryi");
        std::fs::write(&osqueryi, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&osqueryi, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn the_osquery_payload_runs_osqueryi_from_path_and_reports_a_changed_row() {
    let env = Env::new();
    let sshd_path = env.scratch.path().join("sshd-path");
    std::fs::write(&sshd_path, "/usr/sbin/sshd").unwrap();
    let bin = fake_path(&env, "bin", Some(&sshd_path));
    let diffy = |args: &[&str]| {
        let mut command = env.diffy(args);
        command.env("PATH", &bin);
        command.output().unwrap()
    };
    let baseline = diffy(&[
        "new",
        "baseline",
        "localhost",
        "--payload-plugin",
        "osquery",
    ]);
    assert!(baseline.status.success(), "{}", stderr_of(&baseline));
    assert!(
        stdout_of(&baseline).contains("(0 failed)"),
        "{}",
        stdout_of(&baseline)
    );
    let analysis = [
        "new",
        "analysis",
        "localhost",
        "--payload-plugin",
        "osquery",
    ];

    // Every pid is new, and nothing else changed.
    let same = report_of(&diffy(&[&analysis[..], &["--format", "json"]].concat()));
    assert_eq!(same["hosts"][0]["score"], 0.0, "{same}");

    // The process listening on port 22 is another binary: one changed row, under its key.
    std::fs::write(&sshd_path, "/tmp/.x/sshd").unwrap();
    let changed = report_of(&diffy(&[&analysis[..], &["--format", "json"]].concat()));
    let host = changed["hosts"][0]["target"].as_str().unwrap().to_string();
    let ports = diff(&changed, &host, "listening-ports");
    assert_eq!(ports["added"], json!([]));
    assert_eq!(ports["removed"], json!([]));
    assert_eq!(
        ports["changed"],
        json!([{
            "key": {"protocol": "6", "address": "0.0.0.0", "port": "22"},
            "before": {"name": "sshd", "path": "/usr/sbin/sshd", "protocol": "6",
                       "address": "0.0.0.0", "port": "22"},
            "after": {"name": "sshd", "path": "/tmp/.x/sshd", "protocol": "6",
                      "address": "0.0.0.0", "port": "22"},
            "columns": ["path"],
        }])
    );
    assert_eq!(ports["score"], 1.0);
    let table = stdout_of(&diffy(&analysis));
    assert!(
        table.contains(
            "    ~ protocol=6 address=0.0.0.0 port=22  path: /usr/sbin/sshd → /tmp/.x/sshd\n"
        ),
        "{table}"
    );
}

#[test]
fn without_osqueryi_on_path_every_query_is_a_failed_record_saying_so() {
    let env = Env::new();
    let bin = fake_path(&env, "bare-bin", None);
    let output = env
        .diffy([
            "new",
            "baseline",
            "localhost",
            "--payload-plugin",
            "osquery",
        ])
        .env("PATH", &bin)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stdout_of(&output).contains("7 commands (7 failed)"),
        "{}",
        stdout_of(&output)
    );
    let keys = env
        .diffy(["show", "--prefix", "baseline/", "--format", "json"])
        .output()
        .unwrap();
    let keys: Vec<String> = serde_json::from_slice(&keys.stdout).unwrap();
    assert_eq!(keys.len(), 7, "{keys:?}");
    let record: Value =
        serde_json::from_slice(&env.diffy(["show", &keys[0]]).output().unwrap().stdout).unwrap();
    assert_eq!(record["status"], "failed");
    assert_eq!(record["exit_code"], 127);
    assert_eq!(
        record["stderr"],
        "osquery is not installed: osqueryi is not on PATH\n"
    );
}
