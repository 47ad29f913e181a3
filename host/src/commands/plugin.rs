//! `diffy plugin …`: the plugin manager's commands.

use diffy_core::Result;
use diffy_core::catalog::{Catalog, Status};
use diffy_core::config::Settings;
use diffy_core::error::Error;
use diffy_core::inspect;
use diffy_core::install::{self, InstallOptions, InstallOutcome};
use diffy_core::isolation::Isolation;
use diffy_core::package;
use diffy_core::scaffold::{self, NewPlugin};
use diffy_core::workflow;
use diffy_plugin_api::{ComponentKind, Permission};
use serde_json::json;

use crate::cli::{Format, OnOff, PluginCommand};
use crate::output::outln;
use crate::printable::{printable, printable_json};
use crate::table::{add_row, new_table};

/// Run one `diffy plugin` subcommand.
pub fn run(settings: &Settings, command: PluginCommand) -> Result<u8> {
    match command {
        PluginCommand::Install {
            path,
            link,
            force,
            isolate,
        } => {
            let options = InstallOptions {
                link,
                force,
                isolate,
            };
            let outcome = install::install(settings, &path, options)?;
            print_outcome(&outcome)?;
            Ok(0)
        }
        PluginCommand::Isolate { name, mode } => {
            let isolation = match mode {
                OnOff::On => Isolation::Process,
                OnOff::Off => Isolation::InProcess,
            };
            let entry = install::set_isolation(settings, &name, isolation)?;
            let now = entry.isolation.unwrap_or_default();
            outln!("{} now runs {}.", entry.name, mode_line(now));
            Ok(0)
        }
        PluginCommand::Update { name, path } => {
            let outcome = install::update(settings, &name, &path)?;
            print_outcome(&outcome)?;
            Ok(0)
        }
        PluginCommand::Uninstall { name } => {
            let removed = install::uninstall(settings, &name)?;
            outln!(
                "Uninstalled {} ({}).",
                removed.name,
                removed.installation_type.as_str()
            );
            Ok(0)
        }
        PluginCommand::List { format } => list(settings, format),
        PluginCommand::Info { name, format } => info(settings, &name, format),
        PluginCommand::Call {
            kind,
            name,
            method,
            input,
            options,
        } => call(settings, kind, &name, &method, &input, &options),
        PluginCommand::Check { path } => {
            let report = inspect::check(&path)?;
            let m = &report.manifest;
            outln!(
                "{} {} is a valid diffy plugin",
                m.name,
                printable(&m.version)
            );
            outln!("  library:      {}", report.library.display());
            outln!("  sha256:       {}", report.sha256);
            outln!("  api version:  {}", printable(&m.api_version));
            outln!("  host support: {}", printable(&m.host_requirement));
            for c in &m.components {
                let summary = printable(&c.summary);
                outln!("  {:<12}  {:<16} {summary}", c.kind.as_str(), c.name);
            }
            Ok(0)
        }
        PluginCommand::New {
            name,
            dir,
            api_path,
        } => {
            let made = scaffold::new_plugin(&NewPlugin {
                name,
                dir,
                api_path,
            })?;
            let dir = made.dir.display();
            outln!("Created plugin crate {} in {dir}:", made.name);
            for file in &made.files {
                outln!("  {}", file.display());
            }
            outln!("  CLI namespace:   diffy {}", made.namespace);
            outln!("  sample analysis: {}", made.analysis);
            outln!("\nNext, in {dir}:");
            outln!("  cargo test                         # test it through diffy's loader");
            outln!(
                "  cargo build --release && diffy plugin install --link target/release/{}",
                made.library_file
            );
            outln!("  diffy plugin package . --out dist  # an archive for 'diffy plugin install'");
            Ok(0)
        }
        PluginCommand::Package { path, out } => {
            let packaged = package::package(&path, &out)?;
            let info = &packaged.info;
            outln!(
                "Packaged {} {} for {} into {}",
                info.name,
                info.version,
                info.target,
                packaged.archive.display()
            );
            outln!(
                "  library: {} (sha256 {})",
                packaged.library.display(),
                packaged.library_sha256
            );
            outln!("  archive sha256: {}", packaged.archive_sha256);
            Ok(0)
        }
    }
}

/// `diffy plugin call`: one method of one component, its answer as pretty JSON.
fn call(
    settings: &Settings,
    kind: ComponentKind,
    name: &str,
    method: &str,
    input: &str,
    options: &[String],
) -> Result<u8> {
    let input = if input == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Error::Usage(format!("cannot read the input document from stdin: {e}")))?;
        text
    } else {
        input.to_string()
    };
    serde_json::from_str::<serde::de::IgnoredAny>(&input)
        .map_err(|e| Error::Usage(format!("the input document is not JSON: {e}")))?;
    let mut activator = super::activator(settings);
    let component = workflow::open_component(&mut activator, kind, name, options)?;
    let answer = component.call_raw(method, input.as_bytes())?;
    if !answer.is_empty() {
        let value: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|e| component.label.malformed(e))?;
        let json = serde_json::to_string_pretty(&value).expect("JSON serialises");
        // The same value, with nothing in it a terminal would act on: it may quote evidence.
        outln!("{}", printable_json(&json));
    }
    Ok(0)
}

fn print_outcome(outcome: &InstallOutcome) -> Result<()> {
    let granted = match outcome {
        InstallOutcome::Installed {
            name,
            version,
            library,
            granted,
        } => {
            outln!("Installed {name} {version} into {}.", library.display());
            granted
        }
        InstallOutcome::Linked {
            name,
            version,
            library,
            granted,
        } => {
            outln!("Linked {name} {version} from {}.", library.display());
            granted
        }
        InstallOutcome::Unchanged { name, version } => {
            outln!("{name} {version} is already installed; nothing to do.");
            return Ok(());
        }
        InstallOutcome::Replaced {
            name,
            from,
            to,
            library,
            granted,
        } => {
            outln!("Replaced {name} {from} with {to} ({}).", library.display());
            granted
        }
    };
    outln!("  runs:        {}", mode_line(granted.isolation));
    outln!("  permissions: {}", permissions_line(&granted.permissions));
    Ok(())
}

/// How a plugin runs, for people.
fn mode_line(isolation: Isolation) -> &'static str {
    match isolation {
        Isolation::InProcess => "in process (trusted with everything diffy can do)",
        Isolation::Process => "isolated, in a sandboxed child process",
    }
}

/// A manifest's permissions, for people.
fn permissions_line(permissions: &[Permission]) -> String {
    if permissions.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = permissions.iter().map(|p| p.as_str()).collect();
    names.join(", ")
}

fn list(settings: &Settings, format: Format) -> Result<u8> {
    for leftover in install::leftovers(settings)? {
        eprintln!(
            "note: {} was left by an interrupted plugin operation; the next 'diffy plugin \
             install', 'update' or 'uninstall' removes it",
            leftover.display()
        );
    }
    let catalog = Catalog::build(settings)?;
    let conflicts = catalog.conflicts();
    let rows = catalog.plugins.iter().map(|p| {
        let manifest = p.manifest.as_ref();
        (
            p,
            manifest.map(|m| m.api_version.clone()).unwrap_or_default(),
            manifest.map(|m| m.description.clone()).unwrap_or_default(),
            Status::of(p, &conflicts).to_string(),
            settings.isolation_of(p),
        )
    });
    match format {
        Format::Json => {
            let items: Vec<_> = rows
                .map(|(p, api, description, status, isolation)| {
                    json!({
                        "name": p.name, "version": p.version(), "via": p.source.as_str(),
                        "api_version": api, "status": status, "description": description,
                        "library": p.library, "isolation": isolation,
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&items).expect("JSON serialises")
            );
        }
        Format::Table => {
            let mut table = new_table(&[
                "NAME",
                "VERSION",
                "VIA",
                "API",
                "RUNS",
                "STATUS",
                "DESCRIPTION",
            ]);
            for (p, api, description, status, isolation) in rows {
                add_row(
                    &mut table,
                    [
                        p.name.clone(),
                        p.version().unwrap_or("-").to_string(),
                        p.source.as_str().to_string(),
                        api,
                        isolation.as_str().to_string(),
                        status,
                        description,
                    ],
                );
            }
            outln!("{table}");
        }
    }
    Ok(0)
}

fn info(settings: &Settings, name: &str, format: Format) -> Result<u8> {
    let catalog = Catalog::build(settings)?;
    let plugin = catalog.get(name).cloned().ok_or_else(|| {
        Error::Usage(format!("no plugin named {name:?}; run 'diffy plugin list'"))
    })?;
    let mut activator = super::activator(settings);
    let isolation = settings.isolation_of(&plugin);
    let (load, loaded_manifest, actual_sha256, sandbox) = match activator.verify(&plugin) {
        Ok(verified) => (
            Ok(()),
            Some(verified.manifest),
            verified.sha256,
            verified.sandbox,
        ),
        Err(e) => (Err(e.to_string()), None, None, None),
    };
    let runs = match (&sandbox, isolation) {
        (Some(sandbox), _) => format!("isolated: {sandbox}"),
        (None, Isolation::Process) => "isolated (its runner did not start)".to_string(),
        (None, Isolation::InProcess) => mode_line(Isolation::InProcess).to_string(),
    };
    let status = Status::after_load(&plugin, &catalog.conflicts(), load).to_string();
    let manifest = loaded_manifest.or(plugin.manifest.clone());
    let manifest_file = (plugin.source == diffy_core::catalog::Source::Installed)
        .then(|| plugin.library.with_file_name("manifest.json"));
    match format {
        Format::Json => {
            let value = json!({
                "name": plugin.name, "via": plugin.source.as_str(), "library": plugin.library,
                "manifest_file": manifest_file, "sha256": plugin.sha256.clone().or(actual_sha256),
                "status": status, "isolation": isolation, "sandbox": sandbox,
                "manifest": manifest,
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).expect("JSON serialises")
            );
        }
        Format::Table => {
            let mut table = new_table(&["FIELD", "VALUE"]);
            let m = manifest.as_ref();
            let mut row = |name: &str, value: &str| add_row(&mut table, [name, value]);
            let field = |f: fn(&diffy_plugin_api::Manifest) -> &str| m.map(f).unwrap_or("-");
            row("name", &plugin.name);
            row("version", field(|m| &m.version));
            row("description", field(|m| &m.description));
            row("author", field(|m| &m.author));
            row("author url", field(|m| &m.author_url));
            row("license", field(|m| &m.license));
            row("api version", field(|m| &m.api_version));
            row("host support", field(|m| &m.host_requirement));
            row("via", plugin.source.as_str());
            row("runs", &runs);
            let permissions = m.map(|m| permissions_line(&m.permissions));
            row("permissions", permissions.as_deref().unwrap_or("-"));
            row("library", &plugin.library.display().to_string());
            if let Some(file) = &manifest_file {
                row("manifest file", &file.display().to_string());
            }
            if let Some(digest) = plugin.sha256.as_ref().or(actual_sha256.as_ref()) {
                row("sha256", digest);
            }
            row("status", &status);
            outln!("{table}");
            if let Some(m) = m {
                let mut components = new_table(&["KIND", "NAME", "METHODS", "SUMMARY"]);
                for c in &m.components {
                    add_row(
                        &mut components,
                        [
                            c.kind.to_string(),
                            c.name.clone(),
                            c.methods.join(", "),
                            c.summary.clone(),
                        ],
                    );
                }
                outln!("\nComponents:\n{components}");
            }
        }
    }
    Ok(0)
}
