//! The Analysis component `local-cluster`: stacking. Rows are scored by how rare they are across
//! the fleet, and each host lists its rare rows with how many hosts share each.
//!
//! For each command, every distinct normalised row is counted once per host whose collection of
//! that command succeeded and whose output could be read; its *share* is that count over the
//! number of such hosts. On a host:
//!
//! - a row whose share is at most `max_share` is rare: listed in `rare` with its count, rarest
//!   first, with weight `1 - share`;
//! - a failed (or missing, or unreadable) record is listed as an `error`, weighted like a row:
//!   `1 - share` when at most `max_share` of all hosts failed it, else 0 (a command that fails
//!   everywhere says nothing about one host).
//!
//! A row the fleet has and this host lacks is not listed: in a fleet, what a host lacks is what
//! most hosts share, and says little on its own. A command's score is the sum of its weights, a
//! host's the sum of its commands', both rounded to 4 decimals. Each distinct row is kept once in
//! the command's row book; hosts hold row numbers, and only the rows that reach the report are
//! copied.

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::{
    Analysis, AnalysisInput, AnalysisSession, AnalysisStart, Command, CommandDiff, Component,
    OptionSpec, OptionType, RareRow, Record, RecordStatus, Report, Result,
};
use serde::Deserialize;

use super::book::{Read, RowBook, RowId};
use super::rows::{default_ignored_columns, ignore_columns_option};
use super::{BatchEntry, enter_all};
use super::{Index, error_diff, finish, round4, some_of, unreadable, usable};

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
#[derive(Clone)]
pub(crate) struct LocalCluster {
    ignore_columns: Vec<String>,
    max_share: f64,
    min_fleet: usize,
}

impl LocalCluster {
    pub(crate) fn component() -> Component {
        Component::named(
            NAME,
            "Rows that are rare across the fleet, host by host (stacking)",
        )
        .description(
            "Needs no baseline: for each command, counts on how many hosts each distinct row \
                 appears (a text row is its columns, less ignore_columns and the command's own, \
                 joined by single spaces; a row of named columns is its values by column name, \
                 less those columns). A row found on at most max_share of the hosts is rare: each \
                 host lists its rare rows, rarest first, with how many hosts share each, and \
                 scores 1 - share for each; a failed or malformed record weighs like a row. \
                 Hosts are ranked by the sum; every host is listed.",
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
            ignore_columns: options.ignore_columns,
            max_share: options.max_share,
            min_fleet,
        })
    }

    fn is_rare(&self, share: f64) -> bool {
        share <= self.max_share + EPSILON
    }
}

impl Analysis for LocalCluster {
    fn run(&self, input: AnalysisInput, _incident: Option<&str>) -> Result<Report> {
        let mut session = self.session(&input.commands);
        enter_all(&mut session, &input.records);
        Ok(session.report())
    }

    fn begin(
        &self,
        start: AnalysisStart,
        _incident: Option<&str>,
    ) -> Result<Option<Box<dyn AnalysisSession>>> {
        Ok(Some(Box::new(self.session(&start.commands))))
    }
}

impl LocalCluster {
    fn session(&self, commands: &[Command]) -> ClusterSession {
        let index = Index::new(commands);
        let censuses = (0..index.commands.len())
            .map(|command| Census::new(index.spec(command), &self.ignore_columns))
            .collect();
        ClusterSession {
            settings: self.clone(),
            index,
            censuses,
        }
    }

    /// One host's diff: its rare rows among its distinct row numbers `mine`, rarest first.
    fn compare(
        &self,
        command: &str,
        mine: &[u32],
        census: &Census,
        compared: usize,
    ) -> CommandDiff {
        let mut score = 0.0;
        let mut rare = Vec::new();
        for &row in mine {
            let row = row as RowId;
            let count = census.counts[row];
            let share = f64::from(count) / compared as f64;
            if self.is_rare(share) {
                score += 1.0 - share;
                let row = census.book.row(row);
                rare.push((count, row.to_line(), row));
            }
        }
        rare.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        CommandDiff {
            command: command.to_string(),
            score: round4(score),
            rare: rare
                .into_iter()
                .map(|(count, _, row)| RareRow {
                    row,
                    hosts: u64::from(count),
                })
                .collect(),
            ..CommandDiff::default()
        }
    }
}

/// A run of `local-cluster`, fed records as they come: per command, the fleet's distinct rows
/// and how many hosts have each, and per host the numbers of its rows. No record is kept.
struct ClusterSession {
    settings: LocalCluster,
    index: Index,
    /// By command position.
    censuses: Vec<Census>,
}

/// One command's rows across the fleet: each distinct row entered once in the book, and counted.
struct Census {
    book: RowBook,
    /// On how many hosts each row appears, by row number.
    counts: Vec<u32>,
    /// By host position: the host's distinct row numbers, sorted, or why the host could not be
    /// compared; `None` while no record of the host came.
    hosts: Vec<Option<Result<Box<[u32]>, String>>>,
}

impl Census {
    fn new(spec: Option<&Command>, ignore_columns: &[String]) -> Self {
        Census {
            book: RowBook::new(spec, ignore_columns),
            counts: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl ClusterSession {
    fn report(self) -> Report {
        let settings = &self.settings;
        let size = self.index.hosts.len();
        let mut hosts = self.index.empty_reports();
        let mut failed = Vec::new();
        for (command, census) in self.censuses.iter().enumerate() {
            let id = &self.index.commands[command];
            let cell = |host: usize| census.hosts.get(host).and_then(Option::as_ref);
            let compared = (0..size)
                .filter(|&h| cell(h).is_some_and(|c| c.is_ok()))
                .count();
            let failure_share = (size - compared) as f64 / size as f64;
            let failure_weight = if settings.is_rare(failure_share) {
                1.0 - failure_share
            } else {
                0.0
            };
            for (host, report) in hosts.iter_mut().enumerate() {
                let diff = match cell(host).map(Result::as_ref) {
                    Some(Ok(mine)) => settings.compare(id, mine, census, compared),
                    outcome => {
                        let error = match outcome {
                            Some(Err(error)) => error.clone(),
                            _ => usable(None, id).err().unwrap_or_default(),
                        };
                        failed.push(format!("{}/{id}", self.index.hosts[host]));
                        error_diff(id, error, round4(failure_weight))
                    }
                };
                report.commands.push(diff);
            }
        }
        finish(&mut hosts);

        let mut warnings = Vec::new();
        if size < settings.min_fleet {
            let hosts = if size == 1 { "host" } else { "hosts" };
            warnings.push(format!(
                "only {size} {hosts}: too few for rarity to mean much (min_fleet is {})",
                settings.min_fleet
            ));
        }
        if !failed.is_empty() {
            warnings.push(format!(
                "{} record(s) failed collection or could not be read, and were left out of the \
                 counts: {}",
                failed.len(),
                some_of(failed)
            ));
        }
        Report {
            analysis: NAME.to_string(),
            warnings,
            fleet_size: Some(size as u64),
            hosts,
        }
    }
}

impl BatchEntry for ClusterSession {
    /// Where `record` is counted, by host and command position; none for a second record of one
    /// host and command, which is ignored.
    fn place(&mut self, record: &Record) -> Option<(usize, usize)> {
        let host = self.index.host(&record.target);
        let command = self.index.command(&record.command);
        while self.censuses.len() <= command {
            let spec = self.index.spec(self.censuses.len());
            let census = Census::new(spec, &self.settings.ignore_columns);
            self.censuses.push(census);
        }
        let census = &mut self.censuses[command];
        if census.hosts.len() <= host {
            census.hosts.resize(host + 1, None);
        }
        if census.hosts[host].is_some() {
            return None;
        }
        // Taken, so that a second record of the host in the same batch is ignored too.
        census.hosts[host] = Some(Err(String::new()));
        Some((host, command))
    }

    /// Only outputs of successful collections are read.
    fn reader(&self, record: &Record, command: usize) -> Option<&RowBook> {
        (record.status == RecordStatus::Ok).then(|| &self.censuses[command].book)
    }

    /// Count the rows read from `record` (none: its collection failed) on `host`.
    fn enter(&mut self, host: usize, command: usize, record: &Record, rows: Option<Read<'_>>) {
        let spec = self.index.spec(command);
        let id = &self.index.commands[command];
        let census = &mut self.censuses[command];
        let mine = match rows {
            None => usable(Some(record), id).map(|_| Box::default()),
            Some(Err(error)) => Err(unreadable(id, spec, &error)),
            Some(Ok(rows)) => {
                let mine: Result<Box<[u32]>, _> = census
                    .book
                    .enter_rows(rows)
                    .into_iter()
                    .map(u32::try_from)
                    .collect();
                mine.map_err(|_| format!("command {id} has too many distinct rows to count"))
                    .inspect(|mine| {
                        census.counts.resize(census.book.len(), 0);
                        for &row in mine.iter() {
                            census.counts[row as RowId] += 1;
                        }
                    })
            }
        };
        census.hosts[host] = Some(mine);
    }
}

impl AnalysisSession for ClusterSession {
    fn feed(&mut self, records: Vec<Record>) -> Result<()> {
        enter_all(self, &records);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Report> {
        Ok(self.report())
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

    /// A diff's rare rows as `(line, hosts)`.
    fn rare(diff: &CommandDiff) -> Vec<(String, u64)> {
        diff.rare
            .iter()
            .map(|rare| (rare.row.to_line(), rare.hosts))
            .collect()
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
        assert_eq!(
            rare(&first.commands[0]),
            [("www nc nc -l -p 4444".to_string(), 2)]
        );
        assert_eq!(rare(&first.commands[1]), [("rootkit".to_string(), 1)]);
        assert_eq!(first.score, 1.94);
        let second = &report.hosts[1];
        assert_eq!(second.target, "web-07");
        assert_eq!(
            rare(&second.commands[0]),
            [("www nc nc -l -p 4444".to_string(), 2)]
        );
        assert_eq!(second.score, 0.96);
        for host in &report.hosts[2..] {
            assert_eq!(host.score, 0.0, "{}", host.target);
            assert!(host.commands.iter().all(|c| !c.differs()));
        }
        assert!(report.has_differences());
        assert_eq!(report.fleet_size, Some(50));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["hosts"][0]["commands"][1]["rare"][0]["hosts"], 1);
        assert!(json["hosts"][0]["commands"][0].get("removed").unwrap() == &serde_json::json!([]));
    }

    #[test]
    fn a_missing_common_row_is_not_listed_and_failures_are_rare_rows() {
        let mut records: Vec<Record> = (0..20).flat_map(host_records).collect();
        records[1].stdout = "ext4\n".into(); // web-00 lacks xfs
        records[5].status = RecordStatus::Failed; // web-02's modules failed
        records[5].exit_code = Some(1);
        records[5].stderr = "cannot open /proc/modules".into();
        let report = cluster().run(input(records), None).unwrap();
        let web00 = report.hosts.iter().find(|h| h.target == "web-00").unwrap();
        assert!(!web00.commands[1].differs());
        assert_eq!(web00.score, 0.0);
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

    /// osquery writes every value as a string, and a pid differs on every host: ignored by
    /// default, it makes no host odd; a malformed output is one failed record.
    #[test]
    fn osquery_shaped_rows_with_volatile_pids_give_no_false_positives() {
        let command = Command::new("listening", "osqueryi --json …").parse(Parser::Json);
        let mut records: Vec<Record> = (0..20)
            .map(|host| {
                let stdout = format!(
                    "[\n  {{\"name\":\"sshd\",\"pid\":\"{}\",\"port\":\"22\"}},\n  \
                     {{\"port\":\"80\",\"name\":\"nginx\",\"pid\":\"{}\"}}\n]\n",
                    1000 + host,
                    2000 + host
                );
                Record::new(
                    format!("web-{host:02}"),
                    "listening",
                    RecordStatus::Ok,
                    stdout,
                )
            })
            .collect();
        let input = |records| AnalysisInput {
            commands: vec![command.clone()],
            records,
            baseline: None,
        };
        let report = cluster().run(input(records.clone()), None).unwrap();
        assert!(!report.has_differences(), "{report:?}");

        records[3].stdout = "[{\"name\":\"sshd\",\"port\" \"22\"}]".into();
        let report = cluster().run(input(records), None).unwrap();
        assert_eq!(report.hosts[0].target, "web-03");
        assert_eq!(
            report.hosts[0].commands[0].error.as_deref(),
            Some("cannot read listening as json: line 1 column 24: expected `:`")
        );
        assert!(
            report.warnings[0].contains("web-03/listening"),
            "{:?}",
            report.warnings
        );
    }

    #[test]
    fn records_fed_in_batches_give_the_report_of_one_run() {
        let mut records: Vec<Record> = (0..25).flat_map(host_records).collect();
        records[7].stdout.push_str("root 666 1 nc nc -l 4444\n");
        records[30].status = RecordStatus::Failed;
        let whole = cluster().run(input(records.clone()), None).unwrap();
        let start = AnalysisStart {
            commands: commands(),
            baseline: None,
        };
        let mut session = cluster().begin(start, None).unwrap().unwrap();
        for batch in records.chunks(6) {
            session.feed(batch.to_vec()).unwrap();
        }
        assert_eq!(session.finish().unwrap(), whole);
        assert_eq!(whole.hosts[0].target, "web-03");
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
        assert_eq!(
            rare(&report.hosts[0].commands[0]),
            [("evil".to_string(), 1)]
        );
        assert_eq!(report.hosts[1].score, 0.0);
    }
}
