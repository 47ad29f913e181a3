//! The Analysis component `local-cluster`: rows scored by how rare they are across the fleet.
//!
//! For each command, every distinct normalised row is counted once per host whose collection of
//! that command succeeded; its *share* is that count over the number of such hosts. On a host:
//!
//! - a row whose share is at most `max_share` is an outlier, listed in `added` with weight
//!   `1 - share`;
//! - a row that at least `1 - max_share` of the hosts have, but this one lacks, is listed in
//!   `removed` with weight `share`;
//! - a failed (or missing) collection is listed as an `error`, weighted like a row: `1 - share`
//!   when at most `max_share` of all hosts failed it, else 0 (a command that fails everywhere
//!   says nothing about one host).
//!
//! A command's score is the sum of its weights, a host's the sum of its commands', both rounded to
//! 4 decimals. Each distinct row is kept once, borrowed from the records where normalisation
//! did not have to build it, and hosts hold row numbers; only the rows that reach the report are
//! copied.

use std::borrow::Cow;
use std::collections::HashMap;

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::{
    Analysis, AnalysisInput, CommandDiff, Component, OptionSpec, OptionType, Report, Result, Row,
};
use serde::Deserialize;

use super::rows::{RowNormaliser, default_ignored_columns, ignore_columns_option};
use super::{Fleet, error_diff, finish, round4, some_of, usable};

/// The slug, also the report's `analysis`.
const NAME: &str = "local-cluster";

const DEFAULT_MAX_SHARE: f64 = 0.1;
const DEFAULT_MIN_FLEET: i64 = 10;

/// Slack for comparing shares with thresholds (`5 / 50 <= 0.1` must hold).
const EPSILON: f64 = 1e-9;

/// The options of `local-cluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default = "default_ignored_columns")]
    pub(crate) ignore_columns: Vec<String>,
    #[serde(default = "default_max_share")]
    pub(crate) max_share: f64,
    #[serde(default = "default_min_fleet")]
    pub(crate) min_fleet: i64,
}

fn default_max_share() -> f64 {
    DEFAULT_MAX_SHARE
}

fn default_min_fleet() -> i64 {
    DEFAULT_MIN_FLEET
}

/// `local-cluster`: rarity across the fleet.
pub(crate) struct LocalCluster {
    rows: RowNormaliser,
    max_share: f64,
    min_fleet: usize,
}

impl LocalCluster {
    pub(crate) fn component() -> Component {
        Component::named(NAME, "Rows that are rare across the fleet, host by host")
            .description(
                "Needs no baseline: for each command, counts on how many hosts each distinct row \
                 (its columns, less ignore_columns, joined by single spaces) appears. A row found \
                 on at most max_share of the hosts is an outlier (added, weight 1 - share); a row \
                 found on at least 1 - max_share of them but missing here is removed (weight \
                 share); a failed collection weighs like a row. Hosts are ranked by the sum of \
                 weights; every host is listed.",
            )
            .option(ignore_columns_option())
            .option(
                OptionSpec::new(
                    "max_share",
                    OptionType::Number,
                    "The largest share of hosts (0 to 0.5) on which a row still counts as rare",
                )
                .default_value(DEFAULT_MAX_SHARE),
            )
            .option(
                OptionSpec::new(
                    "min_fleet",
                    OptionType::Integer,
                    "Below this many hosts, the report warns that rarity means little",
                )
                .default_value(DEFAULT_MIN_FLEET),
            )
    }

    pub(crate) fn new(options: Options) -> Result<Self> {
        if !(0.0..=0.5).contains(&options.max_share) {
            bail!(
                "option max_share must be between 0 and 0.5, not {}",
                options.max_share
            );
        }
        let Ok(min_fleet) = usize::try_from(options.min_fleet) else {
            bail!(
                "option min_fleet must not be negative, not {}",
                options.min_fleet
            );
        };
        Ok(LocalCluster {
            rows: RowNormaliser::new(&options.ignore_columns),
            max_share: options.max_share,
            min_fleet,
        })
    }

    fn is_rare(&self, share: f64) -> bool {
        share <= self.max_share + EPSILON
    }

    fn is_common(&self, share: f64) -> bool {
        share + EPSILON >= 1.0 - self.max_share
    }
}

impl Analysis for LocalCluster {
    fn run(&self, input: AnalysisInput, _incident: Option<&str>) -> Result<Report> {
        let fleet = Fleet::new(&input);
        let mut hosts = fleet.empty_reports();
        let mut failed = Vec::new();
        for (command, &id) in fleet.commands.iter().enumerate() {
            let census = Census::take(&fleet, command, &self.rows);
            let share = |count: usize| count as f64 / census.compared as f64;
            // Common rows that some host lacks, sorted by text.
            let mut common: Vec<(usize, f64)> = (0..census.rows.len())
                .map(|row| (row, census.counts[row]))
                .filter(|&(_, count)| count < census.compared && self.is_common(share(count)))
                .map(|(row, count)| (row, share(count)))
                .collect();
            common.sort_unstable_by(|a, b| census.rows[a.0].cmp(&census.rows[b.0]));

            let failures = fleet.hosts.len() - census.compared;
            let failure_share = failures as f64 / fleet.hosts.len() as f64;
            let failure_weight = if self.is_rare(failure_share) {
                1.0 - failure_share
            } else {
                0.0
            };
            for (host, mine) in census.hosts.iter().enumerate() {
                let diff = match mine {
                    Err(error) => {
                        failed.push(format!("{}/{id}", fleet.hosts[host]));
                        error_diff(id, error.clone(), round4(failure_weight))
                    }
                    Ok(mine) => self.compare(id, mine, &census, &common),
                };
                hosts[host].commands.push(diff);
            }
        }
        finish(&mut hosts);

        let mut warnings = Vec::new();
        let size = fleet.hosts.len();
        if size < self.min_fleet {
            let hosts = if size == 1 { "host" } else { "hosts" };
            warnings.push(format!(
                "only {size} {hosts}: too few for rarity to mean much (min_fleet is {})",
                self.min_fleet
            ));
        }
        if !failed.is_empty() {
            warnings.push(format!(
                "{} record(s) failed collection and were left out of the counts: {}",
                failed.len(),
                some_of(failed)
            ));
        }
        Ok(Report {
            analysis: NAME.to_string(),
            warnings,
            hosts,
            ..Report::default()
        })
    }
}

impl LocalCluster {
    /// One host's diff: its distinct row numbers `mine` against the `census`, and the `common`
    /// rows (number and share) that some host lacks.
    fn compare(
        &self,
        command: &str,
        mine: &[usize],
        census: &Census<'_>,
        common: &[(usize, f64)],
    ) -> CommandDiff {
        let mut score = 0.0;
        let mut added = Vec::new();
        for &row in mine {
            let share = census.counts[row] as f64 / census.compared as f64;
            if self.is_rare(share) {
                score += 1.0 - share;
                added.push(census.rows[row].to_string());
            }
        }
        added.sort_unstable();
        let mut removed = Vec::new();
        for &(row, share) in common {
            if mine.binary_search(&row).is_err() {
                score += share;
                removed.push(census.rows[row].to_string());
            }
        }
        CommandDiff {
            command: command.to_string(),
            score: round4(score),
            added: added.into_iter().map(Row::Text).collect(),
            removed: removed.into_iter().map(Row::Text).collect(),
            error: None,
            ..CommandDiff::default()
        }
    }
}

/// One command's rows across the fleet. Each distinct row is stored once and known by its number;
/// rows are borrowed from the records unless normalisation had to build them.
struct Census<'a> {
    /// Each distinct row, by number.
    rows: Vec<Cow<'a, str>>,
    /// On how many compared hosts each row appears, by number.
    counts: Vec<usize>,
    /// Each host's distinct row numbers, sorted, or why the host could not be compared.
    hosts: Vec<Result<Vec<usize>, String>>,
    /// How many hosts could be compared (their collection succeeded).
    compared: usize,
}

impl<'a> Census<'a> {
    /// Count the rows of command `command` (a position in `fleet.commands`) on every host.
    fn take(fleet: &Fleet<'a>, command: usize, normaliser: &RowNormaliser) -> Self {
        let id = fleet.commands[command];
        let parser = fleet.parser(command);
        let mut numbers: HashMap<Cow<'a, str>, usize> = HashMap::new();
        let mut counts: Vec<usize> = Vec::new();
        let hosts: Vec<Result<Vec<usize>, String>> = (0..fleet.hosts.len())
            .map(|host| {
                let record = usable(fleet.record(host, command), id)?;
                let mut mine: Vec<usize> = normaliser
                    .rows(parser, &record.stdout)
                    .into_iter()
                    .map(|row| {
                        let next = numbers.len();
                        *numbers.entry(row).or_insert(next)
                    })
                    .collect();
                mine.sort_unstable();
                mine.dedup();
                counts.resize(numbers.len(), 0);
                for &row in &mine {
                    counts[row] += 1;
                }
                Ok(mine)
            })
            .collect();
        let mut rows = vec![Cow::Borrowed(""); numbers.len()];
        for (row, number) in numbers {
            rows[number] = row;
        }
        Census {
            compared: hosts.iter().filter(|mine| mine.is_ok()).count(),
            rows,
            counts,
            hosts,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use diffy_plugin_api::{Command, Parser, Record, RecordStatus};

    use super::*;

    fn cluster() -> LocalCluster {
        LocalCluster::new(Options {
            ignore_columns: default_ignored_columns(),
            max_share: DEFAULT_MAX_SHARE,
            min_fleet: DEFAULT_MIN_FLEET,
        })
        .unwrap()
    }

    fn commands() -> Vec<Command> {
        vec![
            Command::new("processes", "ps").parse(Parser::Columns {
                header: true,
                separator: None,
                max_columns: Some(5),
            }),
            Command::new("modules", "lsmod"),
        ]
    }

    /// Host `i` of a fleet: the same processes (with its own pids) and modules everywhere.
    fn host_records(i: usize) -> Vec<Record> {
        let processes = format!(
            "USER PID PPID COMMAND COMMAND\nroot 1 0 init /sbin/init\nroot {} 1 sshd sshd -D\n\
             www {} 1 nginx nginx: worker process\n",
            100 + i,
            200 + i
        );
        vec![
            Record::new(
                format!("web-{i:02}"),
                "processes",
                RecordStatus::Ok,
                processes,
            ),
            Record::new(
                format!("web-{i:02}"),
                "modules",
                RecordStatus::Ok,
                "ext4\nxfs\n".into(),
            ),
        ]
    }

    fn input(records: Vec<Record>) -> AnalysisInput {
        AnalysisInput {
            commands: commands(),
            records,
            baseline: None,
        }
    }

    #[test]
    fn the_hosts_with_rare_rows_rank_first() {
        let mut records: Vec<Record> = (0..50).flat_map(host_records).collect();
        // web-07 runs a listener; web-31 runs it too and loaded a module.
        records[14].stdout.push_str("www 4242 1 nc nc -l -p 4444\n");
        records[62].stdout.push_str("www 999 1 nc nc -l -p 4444\n");
        records[63].stdout.push_str("rootkit\n");
        let report = cluster().run(input(records), None).unwrap();
        assert_eq!(report.analysis, "local-cluster");
        assert_eq!(report.hosts.len(), 50);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);

        let first = &report.hosts[0];
        assert_eq!(first.target, "web-31");
        assert_eq!(first.commands[0].added, ["www nc nc -l -p 4444"]);
        assert_eq!(first.commands[1].added, ["rootkit"]);
        assert_eq!(first.score, 1.94);
        let second = &report.hosts[1];
        assert_eq!(second.target, "web-07");
        assert_eq!(second.commands[0].added, ["www nc nc -l -p 4444"]);
        assert_eq!(second.score, 0.96);
        for host in &report.hosts[2..] {
            assert_eq!(host.score, 0.0, "{}", host.target);
            assert!(
                host.commands
                    .iter()
                    .all(|c| c.added.is_empty() && c.removed.is_empty())
            );
        }
        assert!(report.has_differences());
        serde_json::to_string(&report).unwrap();
    }

    #[test]
    fn a_common_row_missing_is_removed_and_failures_are_rare_rows() {
        let mut records: Vec<Record> = (0..20).flat_map(host_records).collect();
        records[1].stdout = "ext4\n".into(); // web-00 lacks xfs
        records[5].status = RecordStatus::Failed; // web-02's modules failed
        records[5].exit_code = Some(1);
        records[5].stderr = "cannot open /proc/modules".into();
        let report = cluster().run(input(records), None).unwrap();
        let web00 = report.hosts.iter().find(|h| h.target == "web-00").unwrap();
        assert_eq!(web00.commands[1].removed, ["xfs"]);
        assert_eq!(web00.score, round4(18.0 / 19.0));
        let web02 = report.hosts.iter().find(|h| h.target == "web-02").unwrap();
        assert_eq!(
            web02.commands[1].error.as_deref(),
            Some("collection failed: exit 1: cannot open /proc/modules")
        );
        assert_eq!(web02.score, 0.95);
        let order: Vec<&str> = report.hosts[..3]
            .iter()
            .map(|h| h.target.as_str())
            .collect();
        assert_eq!(order, ["web-02", "web-00", "web-01"]);
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0].starts_with("1 record(s) failed collection"));
        assert!(report.warnings[0].contains("web-02/modules"));
    }

    #[test]
    fn a_small_fleet_gets_a_warning() {
        let records: Vec<Record> = (0..3).flat_map(host_records).collect();
        let report = cluster().run(input(records), None).unwrap();
        assert_eq!(
            report.warnings,
            ["only 3 hosts: too few for rarity to mean much (min_fleet is 10)"]
        );
        assert_eq!(report.hosts.len(), 3);
        assert!(!report.has_differences());
    }

    #[test]
    fn an_empty_fleet_gives_an_empty_report() {
        let report = cluster().run(input(Vec::new()), None).unwrap();
        assert!(report.hosts.is_empty());
        assert_eq!(report.warnings.len(), 1);
        serde_json::to_string(&report).unwrap();
    }

    #[test]
    fn options_are_checked() {
        let with = |max_share, min_fleet| {
            LocalCluster::new(Options {
                ignore_columns: Vec::new(),
                max_share,
                min_fleet,
            })
        };
        assert!(with(0.6, 10).is_err());
        assert!(with(-0.1, 10).is_err());
        assert!(with(0.1, -1).is_err());
        assert!(with(0.0, 0).is_ok());
    }

    /// 1,000 hosts × 1,000 rows in a debug build: a loose bound that still catches quadratic work.
    #[test]
    fn a_large_fleet_is_fast() {
        let stdout: String = (0..1000).map(|i| format!("module_{i}\n")).collect();
        let mut records: Vec<Record> = (0..1000)
            .map(|h| {
                Record::new(
                    format!("h{h:04}"),
                    "modules",
                    RecordStatus::Ok,
                    stdout.clone(),
                )
            })
            .collect();
        records[500].stdout.push_str("evil\n");
        let started = Instant::now();
        let report = cluster()
            .run(
                AnalysisInput {
                    commands: vec![Command::new("modules", "lsmod")],
                    records,
                    baseline: None,
                },
                None,
            )
            .unwrap();
        assert!(started.elapsed().as_secs() < 20);
        assert_eq!(report.hosts[0].target, "h0500");
        assert_eq!(report.hosts[0].commands[0].added, ["evil"]);
        assert_eq!(report.hosts[1].score, 0.0);
    }
}
