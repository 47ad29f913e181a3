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

    let output = env.diffy(["show"]).output().unwrap();
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
