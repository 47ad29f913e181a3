//! The Payload component `local-command`: a default Linux triage set, or the user's own commands.
//!
//! Every command has a stable id (results are stored and replayed under it) and a parser chosen so
//! that rows compare well across hosts: columns that change from run to run, such as process ids,
//! are either dropped by the command itself or named in a header so analyses can ignore them.

use std::collections::HashSet;

use diffy_plugin_api::anyhow::{anyhow, bail};
use diffy_plugin_api::{Command, Component, OptionSpec, OptionType, Parser, Payload, Result};
use serde::Deserialize;
use serde_json::Value;

/// The options of `local-command`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    /// The commands to run; the default triage set when not given.
    #[serde(default = "default_commands")]
    pub(crate) commands: Value,
}

/// `local-command`: returns its validated commands.
pub(crate) struct LocalCommands {
    commands: Vec<Command>,
}

impl LocalCommands {
    pub(crate) fn component() -> Component {
        Component::named(
            "local-command",
            "A Linux triage set: sockets, processes, modules, accounts, cron",
        )
        .description(
            "Commands for a Linux host under suspicion: listening-sockets (ss, else netstat; \
                 process ids removed), processes (ps without kernel threads, with a header so \
                 pid and ppid can be ignored), kernel-modules (/proc/modules), login-accounts (/etc/passwd entries \
                 with a login shell) and cron-entries (/etc/crontab, /etc/cron.d, user crontabs). \
                 Option `commands` replaces the whole set.",
        )
        .option(
            OptionSpec::new(
                "commands",
                OptionType::Array,
                "The commands to run, replacing the default set: objects {id, run, parse?} \
                     where id is unique and made of lowercase letters, digits, '-', '_' and '.' \
                     (starting with a letter or digit), run is a sh command line, and parse is \
                     {format: lines} or {format: columns, header?, separator?, max_columns?}",
            )
            .default_value(default_commands()),
        )
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        let commands: Vec<Command> = serde_json::from_value(options.commands).map_err(|e| {
            anyhow!("option commands: not a list of {{id, run, parse?}} objects: {e}")
        })?;
        if commands.is_empty() {
            bail!("option commands is empty: give at least one command");
        }
        let mut seen = HashSet::new();
        for command in &commands {
            check_command_id(&command.id)?;
            if !seen.insert(command.id.as_str()) {
                bail!("option commands: command id {:?} is used twice", command.id);
            }
            if command.run.trim().is_empty() {
                bail!(
                    "option commands: command {:?} has nothing to run",
                    command.id
                );
            }
        }
        Ok(LocalCommands { commands })
    }
}

impl Payload for LocalCommands {
    fn generate(&self, _incident: Option<&str>) -> Result<Vec<Command>> {
        Ok(self.commands.clone())
    }
}

/// Check that a command id is usable as a file and key name: lowercase letters, digits, `-`, `_`
/// and `.`, starting with a letter or digit.
fn check_command_id(id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c);
    let starts_well = id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if starts_well && id.chars().all(allowed) {
        Ok(())
    } else {
        bail!(
            "option commands: invalid command id {id:?}: use lowercase letters, digits, '-', '_' \
             and '.', starting with a letter or digit"
        )
    }
}

/// The default triage set.
pub(crate) fn default_commands() -> Value {
    serde_json::to_value(triage_set()).unwrap_or(Value::Null)
}

fn triage_set() -> Vec<Command> {
    let columns =
        |header: bool, separator: Option<&str>, max_columns: Option<usize>| Parser::Columns {
            header,
            separator: separator.map(str::to_string),
            max_columns,
        };
    vec![
        // Protocol, local address and process names; queue sizes, pids and fds change between
        // runs, so they are left out. `out=$(…) || exit` keeps a failure of ss visible.
        Command::new(
            "listening-sockets",
            "if command -v ss >/dev/null 2>&1; then \
             out=$(ss -H -tulpn) || exit $?; \
             printf '%s\\n' \"$out\" | awk '{print $1, $5, $7}' | sed -E 's/,(pid|fd)=[0-9]+//g'; \
             else \
             out=$(netstat -tulpn) || exit $?; \
             printf '%s\\n' \"$out\" | awk 'NR > 2 {p = $NF; sub(/^[0-9]+\\//, \"\", p); print $1, $4, p}'; \
             fi",
        )
        .parse(columns(false, None, Some(3))),
        // Every process but the kernel's threads (kthreadd, pid 2, and its children), whose names
        // change all the time, and but the collector itself ($PPID is diffy; its children are the
        // shells running this payload), which differs between a baseline and an analysis.
        Command::new(
            "processes",
            "ps --deselect --pid 2 --ppid 2 --pid \"$PPID\" --ppid \"$PPID\" --ppid \"$$\" -o user,pid,ppid,comm,args",
        )
            .parse(columns(true, None, Some(5))),
        Command::new("kernel-modules", "cut -d' ' -f1 /proc/modules").parse(Parser::Lines),
        Command::new(
            "login-accounts",
            "awk -F: 'BEGIN {print \"user:password:uid:gid:gecos:home:shell\"} \
             $7 !~ /(nologin|false)$/' /etc/passwd",
        )
        .parse(columns(true, Some(":"), None)),
        // No cron entries is a valid answer, and missing or unreadable files are normal.
        Command::new(
            "cron-entries",
            "grep -sHv -e '^[[:space:]]*#' -e '^[[:space:]]*$' \
             /etc/crontab /etc/cron.d/* /var/spool/cron/crontabs/* || true",
        )
        .parse(Parser::Lines),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with(commands: Value) -> Result<LocalCommands> {
        LocalCommands::new(Options { commands })
    }

    #[test]
    fn default_set_is_valid() {
        let payload = with(default_commands()).unwrap();
        let ids: Vec<String> = payload
            .generate(None)
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(
            ids,
            [
                "listening-sockets",
                "processes",
                "kernel-modules",
                "login-accounts",
                "cron-entries"
            ]
        );
    }

    #[test]
    fn commands_option_replaces_the_set() {
        let payload = with(json!([
            {"id": "uname", "run": "uname -a"},
            {"id": "mounts", "run": "cat /proc/mounts", "parse": {"format": "columns"}}
        ]))
        .unwrap();
        let commands = payload.generate(None).unwrap();
        assert_eq!(commands.len(), 2);
        assert!(matches!(commands[1].parse, Some(Parser::Columns { .. })));
    }

    #[test]
    fn bad_commands_are_refused() {
        let duplicate = with(json!([{"id": "a", "run": "x"}, {"id": "a", "run": "y"}]));
        assert!(duplicate.err().unwrap().to_string().contains("used twice"));
        for id in ["", "../x", "Upper", "a/b", ".hidden", "with space"] {
            let bad = with(json!([{"id": id, "run": "true"}]));
            assert!(
                bad.err()
                    .unwrap()
                    .to_string()
                    .contains("invalid command id"),
                "{id}"
            );
        }
        assert!(with(json!([])).is_err());
        assert!(with(json!([{"id": "a"}])).is_err());
        assert!(with(json!([{"id": "a", "run": " "}])).is_err());
        assert!(with(json!("not a list")).is_err());
    }

    #[test]
    fn sockets_command_keeps_stable_columns() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&triage_set()[0].run)
            .output()
            .unwrap();
        // ss may be missing on a build machine; when it ran, pids and fds must be gone.
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!text.contains("pid="), "{text}");
        }
    }
}
