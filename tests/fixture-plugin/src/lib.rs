//! A plugin for diffy's end-to-end tests and benchmarks.
//!
//! Its name, CLI namespace, interface slug and host requirement live in fixed-width "slots":
//! string constants padded with `_`. Tests copy the built library and overwrite a slot's bytes
//! (same length) to make distinct plugins from one build: many plugins for benchmarks, two
//! plugins claiming one namespace, a namespace shadowing a built-in, an unsupported host
//! requirement. Its components misbehave on request, to test fault isolation.

use std::hint::black_box;

use diffy_plugin_api::{
    Activation, Analysis, AnalysisInput, CliCommand, Collection, Command, Component, OptionSpec,
    OptionType, Payload, Persistence, Plugin, Record, Report, Result, Target, TargetInfo, anyhow,
};

/// Slots: each is exactly 40 bytes; trailing `_` are trimmed.
const NAME_SLOT: &str = "diffy-fixture___________________________";
const NAMESPACE_SLOT: &str = "fixture_________________________________";
const SLUG_SLOT: &str = "fixture-slug____________________________";
const VERSION_SLOT: &str = "0.1.0-fixture___________________________";
const HOST_REQUIREMENT_SLOT: &str = "^0.2____________________________________";

fn slot(text: &'static str) -> &'static str {
    black_box(text).trim_end_matches('_')
}

fn plugin() -> Plugin {
    let mode_option = || {
        OptionSpec::new(
            "mode",
            OptionType::String,
            "ok, error, panic, activate-panic, malformed, hang, or a fault: segfault, abort, \
             stack-overflow, out-of-memory",
        )
        .default_value("ok")
    };
    Plugin::new(slot(NAME_SLOT), slot(VERSION_SLOT))
        .description("Test fixture: misbehaves on request")
        .host_requirement(slot(HOST_REQUIREMENT_SLOT))
        .cli_command(
            Component::named(slot(NAMESPACE_SLOT), "Echo, exit, fail or panic on request")
                .usage("diffy <namespace> <echo|exit N|error|panic|count>")
                .subcommand("echo", "Print the arguments")
                .subcommand("exit", "Exit with the given code")
                .subcommand("error", "Return an error")
                .subcommand("panic", "Panic")
                .subcommand("count", "Print 0 (a command as cheap as sweeten count)"),
            |_| Ok(Fixture),
        )
        .target(
            Component::named(slot(SLUG_SLOT), "Targets that misbehave").option(mode_option()),
            Misbehave::new,
        )
        .payload(
            Component::named(slot(SLUG_SLOT), "A payload that misbehaves").option(mode_option()),
            Misbehave::new,
        )
        .collection(
            Component::named(slot(SLUG_SLOT), "A collection that misbehaves").option(mode_option()),
            Misbehave::new,
        )
        .persistence(
            Component::named(slot(SLUG_SLOT), "A persistence that misbehaves")
                .option(mode_option()),
            Misbehave::new,
        )
        .analysis(
            Component::named(slot(SLUG_SLOT), "An analysis that misbehaves").option(mode_option()),
            Misbehave::new,
        )
}

diffy_plugin_api::export_plugin!(plugin);

mod faults;

struct Fixture;

impl CliCommand for Fixture {
    fn run(&self, args: Vec<String>) -> Result<i32> {
        match args.first().map(String::as_str) {
            Some("echo") => {
                println!("{}", args[1..].join(" "));
                Ok(0)
            }
            Some("exit") => Ok(args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0)),
            Some("error") => anyhow::bail!("the fixture was asked to fail"),
            Some("panic") => panic!("the fixture was asked to panic"),
            Some("count") => {
                println!("0");
                Ok(0)
            }
            Some(fault) if faults::is_fault(fault) => {
                faults::commit(fault, args.get(1).map(String::as_str))?;
                println!("done");
                Ok(0)
            }
            _ => {
                eprintln!(
                    "usage: diffy {} <echo|exit N|error|panic|count|{}>",
                    slot(NAMESPACE_SLOT),
                    faults::FAULTS.join("|")
                );
                Ok(2)
            }
        }
    }
}

/// Every interface, behaving as its `mode` option says.
struct Misbehave {
    mode: String,
}

impl Misbehave {
    fn new(activation: Activation) -> Result<Self> {
        let mode = activation.options()["mode"]
            .as_str()
            .unwrap_or("ok")
            .to_string();
        if mode == "activate-panic" {
            panic!("the fixture was asked to panic at activation");
        }
        Ok(Misbehave { mode })
    }

    /// Misbehave as asked, or return `value`.
    fn answer<T>(&self, value: T) -> Result<T> {
        match self.mode.as_str() {
            "error" => anyhow::bail!("the fixture was asked to fail"),
            "panic" => panic!("the fixture was asked to panic"),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            fault if faults::is_fault(fault) => {
                faults::commit(fault, None)?;
                Ok(value)
            }
            _ => Ok(value),
        }
    }
}

impl Target for Misbehave {
    fn get(&self, key: &str, _incident: Option<&str>) -> Result<Vec<TargetInfo>> {
        if self.mode == "malformed" {
            return Ok(vec![TargetInfo::new("")]);
        }
        self.answer(vec![TargetInfo::new(key)])
    }
}

impl Payload for Misbehave {
    fn generate(&self, _incident: Option<&str>) -> Result<Vec<Command>> {
        if self.mode == "malformed" {
            return Ok(vec![
                Command::new("same", "true"),
                Command::new("same", "false"),
            ]);
        }
        self.answer(vec![Command::new("echo", "echo fixture")])
    }
}

impl Collection for Misbehave {
    fn get(
        &self,
        targets: &[TargetInfo],
        commands: &[Command],
        _incident: Option<&str>,
    ) -> Result<Vec<Record>> {
        let records = targets
            .iter()
            .flat_map(|t| {
                commands.iter().map(|c| {
                    // A malformed answer: records for a target nobody asked about.
                    let target = if self.mode == "malformed" {
                        "stranger"
                    } else {
                        t.id.as_str()
                    };
                    let mut record = Record::new(
                        target,
                        &c.id,
                        diffy_plugin_api::RecordStatus::Ok,
                        "fixture\n".into(),
                    );
                    record.exit_code = Some(0);
                    record.collected_at = "1970-01-01T00:00:00Z".into();
                    record
                })
            })
            .collect();
        self.answer(records)
    }
}

impl Persistence for Misbehave {
    fn get(&self, _key: &str) -> Result<Option<String>> {
        self.answer(None)
    }
    fn save(&self, _key: &str, _document: &str) -> Result<()> {
        self.answer(())
    }
    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if self.mode == "malformed" {
            return Ok(vec![format!("elsewhere/{prefix}")]);
        }
        self.answer(Vec::new())
    }
}

impl Analysis for Misbehave {
    fn run(&self, input: AnalysisInput, _incident: Option<&str>) -> Result<Report> {
        let mut report = Report {
            analysis: slot(SLUG_SLOT).to_string(),
            warnings: vec![format!("{} records seen", input.records.len())],
            ..Report::default()
        };
        if self.mode == "malformed" {
            // NaN cannot be represented in JSON: it crosses as null, which is not a score.
            report.hosts.push(diffy_plugin_api::HostReport {
                target: "anyone".into(),
                score: f64::NAN,
                commands: Vec::new(),
            });
        }
        self.answer(report)
    }
}
