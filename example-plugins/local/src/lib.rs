//! `diffy-local`: the plugin bundled with `diffy`, carrying one implementation of each of the five
//! Diffy interfaces that needs nothing but this machine.
//!
//! | kind        | slug            | what it does                                                     |
//! |-------------|-----------------|------------------------------------------------------------------|
//! | target      | `local`         | this host                                                        |
//! | target      | `evidence-dir`  | one host per subdirectory of a directory of saved outputs        |
//! | payload     | `local-command` | a Linux triage set (sockets, processes, modules, accounts, cron) |
//! | payload     | `osquery`       | osquery queries as JSON rows (ports, processes, modules, …)      |
//! | payload     | `evidence`      | one command per evidence file an evidence directory holds        |
//! | collection  | `local-shell`   | runs the commands with `sh -c` here, with a timeout              |
//! | collection  | `evidence-dir`  | replays saved outputs from `<dir>/<host>/<file>`                 |
//! | persistence | `local-file`    | JSON documents in files under a directory                        |
//! | analysis    | `local-simple`  | rows added, removed and changed against a saved baseline         |
//! | analysis    | `local-cluster` | rows that are rare across the fleet, with their host counts      |
//!
//! Each component's constructor takes a typed options struct, so the components can be built and
//! tested without a host; [`plugin`] adapts them to the host's [`Activation`].

#![deny(unsafe_code)]

mod analysis;
mod collection;
mod evidence;
mod payload;
mod persistence;
mod targets;
mod timestamp;

use diffy_plugin_api::{Activation, Permission, Plugin};

use analysis::cluster::LocalCluster;
use analysis::simple::LocalSimple;
use collection::evidence::EvidenceCollection;
use collection::shell::LocalShell;
use payload::evidence::EvidencePayload;
use payload::local_command::LocalCommands;
use payload::osquery::Osquery;
use persistence::LocalFile;
use targets::{EvidenceDirTarget, LocalTarget};

/// The plugin's declaration: cheap to build, with no side effects; every component does its work
/// only once activated.
fn plugin() -> Plugin {
    Plugin::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .description(
            "Triage this host or saved evidence: local targets, commands, files and analyses",
        )
        .author("The diffy developers")
        .license("MIT OR Apache-2.0")
        // Isolated, local-shell runs the triage commands and the evidence components read
        // directories anywhere.
        .permission(Permission::Exec)
        .permission(Permission::ReadAll)
        .target(LocalTarget::component(), |_: Activation| Ok(LocalTarget))
        .target(EvidenceDirTarget::component(), |_: Activation| {
            Ok(EvidenceDirTarget)
        })
        .payload(LocalCommands::component(), |activation: Activation| {
            LocalCommands::new(activation.options_as()?)
        })
        .payload(Osquery::component(), |activation: Activation| {
            Osquery::new(activation.options_as()?)
        })
        .payload(EvidencePayload::component(), |activation: Activation| {
            EvidencePayload::new(activation.options_as()?)
        })
        .collection(LocalShell::component(), |activation: Activation| {
            LocalShell::new(activation.options_as()?)
        })
        .collection(EvidenceCollection::component(), |activation: Activation| {
            EvidenceCollection::new(activation.options_as()?)
        })
        .persistence(LocalFile::component(), |activation: Activation| {
            LocalFile::new(activation.options_as()?, activation.host().data_dir())
        })
        .analysis(LocalSimple::component(), |activation: Activation| {
            LocalSimple::new(activation.options_as()?)
        })
        .analysis(LocalCluster::component(), |activation: Activation| {
            LocalCluster::new(activation.options_as()?)
        })
}

diffy_plugin_api::export_plugin!(plugin);

#[cfg(test)]
mod tests {
    use diffy_plugin_api::ComponentKind;
    use serde_json::{Map, Value};

    use super::*;

    #[test]
    fn manifest_is_valid_and_complete() {
        let plugin = plugin();
        let manifest = plugin.manifest();
        manifest.validate().unwrap();
        assert_eq!(manifest.name, "diffy-local");
        assert_eq!(manifest.components.len(), 10);
        for component in &manifest.components {
            assert!(!component.summary.is_empty(), "{}", component.name);
            assert!(!component.description.is_empty(), "{}", component.name);
            for option in &component.options {
                assert!(
                    !option.description.is_empty(),
                    "{}.{}",
                    component.name,
                    option.key
                );
            }
        }
        let simple = manifest
            .component(ComponentKind::Analysis, "local-simple")
            .unwrap();
        assert!(simple.uses_baseline);
        let cluster = manifest
            .component(ComponentKind::Analysis, "local-cluster")
            .unwrap();
        assert!(!cluster.uses_baseline);
    }

    /// The schema defaults the host fills in must deserialise into each component's options, and
    /// build the component.
    #[test]
    fn schema_defaults_build_every_component() {
        let plugin = plugin();
        let manifest = plugin.manifest();
        let defaults = |kind, name| {
            let component = manifest.component(kind, name).unwrap();
            Value::Object(component.resolve_options(&Map::new()).unwrap())
        };
        fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
            serde_json::from_value(value).unwrap()
        }
        LocalCommands::new(from(defaults(ComponentKind::Payload, "local-command"))).unwrap();
        Osquery::new(from(defaults(ComponentKind::Payload, "osquery"))).unwrap();
        EvidencePayload::new(from(defaults(ComponentKind::Payload, "evidence"))).unwrap();
        LocalShell::new(from(defaults(ComponentKind::Collection, "local-shell"))).unwrap();
        EvidenceCollection::new(from(defaults(ComponentKind::Collection, "evidence-dir"))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        LocalFile::new(
            from(defaults(ComponentKind::Persistence, "local-file")),
            dir.path().to_path_buf(),
        )
        .unwrap();
        LocalSimple::new(from(defaults(ComponentKind::Analysis, "local-simple"))).unwrap();
        LocalCluster::new(from(defaults(ComponentKind::Analysis, "local-cluster"))).unwrap();
    }
}
