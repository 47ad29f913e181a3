//! Structured rows through the built binary: the osquery payload (with a stand-in `osqueryi` on
//! PATH) and changed rows under key columns.

use std::path::{Path, PathBuf};

use diffy_e2e::{Env, stderr_of, stdout_of};
use serde_json::{Value, json};

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
