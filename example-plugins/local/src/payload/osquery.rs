//! The Payload component `osquery`: osquery queries, as Netflix Diffy's default payload was, each
//! run with `osqueryi --json` so that its rows are JSON objects of named columns.
//!
//! Every query names its key columns (what identifies a row, so that a row whose other values
//! differ is reported as changed) and its volatile columns (process ids, times, load addresses),
//! which analyses leave out. The binary is looked up on the target's `PATH` when the command runs
//! there; where it is missing the command fails with exit status 127 and says so.

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::{Command, Component, OptionSpec, OptionType, Parser, Payload, Result};
use serde::Deserialize;

const DEFAULT_BINARY: &str = "osqueryi";

/// One osquery query of the payload.
pub(crate) struct Query {
    /// The command id.
    pub(crate) id: &'static str,
    /// The SQL; it must not hold `"`, `$`, `` ` `` or `\`, since it is double-quoted for `sh`.
    sql: &'static str,
    /// The columns that identify a row.
    pub(crate) key: &'static [&'static str],
    /// The columns whose values change from run to run.
    pub(crate) volatile: &'static [&'static str],
}

/// The queries, in the order of the payload.
const QUERIES: [Query; 7] = [
    Query {
        id: "listening-ports",
        sql: "SELECT l.pid, p.name, p.path, l.protocol, l.address, l.port \
              FROM listening_ports AS l JOIN processes AS p USING (pid) WHERE l.port != 0",
        key: &["protocol", "address", "port"],
        volatile: &["pid"],
    },
    Query {
        id: "processes",
        sql: "SELECT pid, parent, uid, name, path, cmdline, start_time FROM processes",
        key: &["name", "path"],
        volatile: &["pid", "parent", "start_time"],
    },
    Query {
        id: "kernel-modules",
        sql: "SELECT name, size, status, address FROM kernel_modules",
        key: &["name"],
        volatile: &["address"],
    },
    Query {
        id: "users",
        sql: "SELECT uid, gid, username, directory, shell FROM users \
              WHERE shell NOT LIKE '%nologin' AND shell NOT LIKE '%false'",
        key: &["username"],
        volatile: &[],
    },
    Query {
        id: "crontab",
        sql: "SELECT event, minute, hour, day_of_month, month, day_of_week, command, path \
              FROM crontab",
        key: &[],
        volatile: &[],
    },
    Query {
        id: "startup-items",
        sql: "SELECT name, path, args, type, source, username FROM startup_items",
        key: &["name", "source"],
        volatile: &[],
    },
    Query {
        id: "authorized-keys",
        sql: "SELECT u.username, k.key_file, k.algorithm, k.key \
              FROM users AS u JOIN authorized_keys AS k USING (uid)",
        key: &[],
        volatile: &[],
    },
];

/// The query whose id is `id`: evidence saved under that name gets its key and volatile
/// columns.
pub(crate) fn query(id: &str) -> Option<&'static Query> {
    QUERIES.iter().find(|query| query.id == id)
}

/// The options of `osquery`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default = "default_binary")]
    pub(crate) binary: String,
}

fn default_binary() -> String {
    DEFAULT_BINARY.to_string()
}

/// `osquery`: the queries, as commands for the binary in the options.
pub(crate) struct Osquery {
    commands: Vec<Command>,
}

impl Osquery {
    pub(crate) fn component() -> Component {
        let ids: Vec<&str> = QUERIES.iter().map(|query| query.id).collect();
        Component::named(
            "osquery",
            "osquery queries as JSON rows (needs osqueryi on the target)",
        )
        .description(format!(
            "Runs osquery queries with `osqueryi --json` on each target: {}. Rows are JSON \
                 objects; each query names its key columns (a row with the same key and other \
                 values is reported as changed) and leaves out its volatile columns (pids, times, \
                 load addresses). A target without the binary on its PATH gets failed records \
                 saying so (exit status 127).",
            ids.join(", ")
        ))
        .option(
            OptionSpec::new(
                "binary",
                OptionType::String,
                "The osquery shell to run: a name looked up on the target's PATH, or a path",
            )
            .default_value(DEFAULT_BINARY),
        )
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        let shell_safe = |c: char| c.is_ascii_alphanumeric() || "/._-+".contains(c);
        if options.binary.is_empty() || !options.binary.chars().all(shell_safe) {
            bail!(
                "option binary {:?}: use letters, digits and / . _ - + only",
                options.binary
            );
        }
        let commands = QUERIES
            .iter()
            .map(|query| command(query, &options.binary))
            .collect();
        Ok(Osquery { commands })
    }
}

impl Payload for Osquery {
    fn generate(&self, _incident: Option<&str>) -> Result<Vec<Command>> {
        Ok(self.commands.clone())
    }
}

/// `query` as a command line for `sh`: first a check that `binary` is there, which says so on
/// stderr and exits 127 (as the shell does for a missing command) when it is not.
fn command(query: &Query, binary: &str) -> Command {
    let run = format!(
        "command -v {binary} >/dev/null 2>&1 || \
         {{ echo \"osquery is not installed: {binary} is not on PATH\" >&2; exit 127; }}; \
         exec {binary} --json \"{}\"",
        query.sql
    );
    Command::new(query.id, run)
        .parse(Parser::Json)
        .key_columns(query.key.iter().copied())
        .ignore_columns(query.volatile.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osquery(binary: &str) -> Result<Osquery> {
        Osquery::new(Options {
            binary: binary.to_string(),
        })
    }

    #[test]
    fn every_query_is_a_json_command_with_its_columns() {
        let commands = osquery(DEFAULT_BINARY).unwrap().generate(None).unwrap();
        let ids: Vec<&str> = commands.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "listening-ports",
                "processes",
                "kernel-modules",
                "users",
                "crontab",
                "startup-items",
                "authorized-keys"
            ]
        );
        for (command, query) in commands.iter().zip(&QUERIES) {
            assert_eq!(command.parse, Some(Parser::Json));
            assert!(!query.sql.contains(['"', '$', '`', '\\']), "{}", query.id);
            assert!(
                command.run.contains("osqueryi --json \"SELECT "),
                "{}",
                command.run
            );
        }
        assert_eq!(commands[1].ignore_columns, ["pid", "parent", "start_time"]);
        assert_eq!(commands[0].key_columns, ["protocol", "address", "port"]);
        assert!(query("processes").is_some() && query("nope").is_none());
    }

    #[test]
    fn a_missing_binary_fails_the_command_and_says_so() {
        let payload = osquery("osqueryi-that-is-not-installed").unwrap();
        let command = &payload.generate(None).unwrap()[0];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command.run)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "osquery is not installed: osqueryi-that-is-not-installed is not on PATH\n"
        );
    }

    #[test]
    fn a_binary_that_the_shell_would_misread_is_refused() {
        assert!(osquery("/opt/osquery/bin/osqueryi").is_ok());
        for bad in ["", "osqueryi; rm -rf /", "$(id)", "a b"] {
            assert!(osquery(bad).is_err(), "{bad}");
        }
    }
}
