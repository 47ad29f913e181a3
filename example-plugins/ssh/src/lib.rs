//! `diffy-ssh`: the plugin bundled with `diffy` for fleets. Its targets come from an inventory
//! file, and its collection runs the payload's commands through the system OpenSSH client, so the
//! user's `~/.ssh/config`, agent, certificates, `ProxyJump` and `known_hosts` all apply.
//!
//! | kind       | slug            | what it does                                                   |
//! |------------|-----------------|----------------------------------------------------------------|
//! | target     | `ssh-inventory` | the hosts of a host list, ssh config or Ansible inventory file |
//! | collection | `ssh`           | the payload's commands over one OpenSSH connection per host    |
//!
//! Each component's constructor takes typed options, so the components can be built and tested
//! without a host; [`plugin`] adapts them to the host's [`Activation`].

#![deny(unsafe_code)]

mod collection;
mod inventory;

use diffy_plugin_api::{Activation, Permission, Plugin};

use collection::SshCollection;
use inventory::SshInventory;

/// The plugin's declaration: cheap to build, with no side effects; every component does its work
/// only once activated.
fn plugin() -> Plugin {
    Plugin::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        .description("Fleets over SSH: hosts from inventory files, commands run with OpenSSH")
        .author("The diffy developers")
        .license("MIT OR Apache-2.0")
        // Isolated, the collection still runs `ssh`, which connects out and reads the user's
        // ssh configuration, keys and known_hosts; the target reads inventories anywhere.
        .permission(Permission::Exec)
        .permission(Permission::Network)
        .permission(Permission::ReadAll)
        .target(SshInventory::component(), |activation: Activation| {
            Ok(SshInventory::new(Some(activation.host().clone())))
        })
        .collection(SshCollection::component(), |activation: Activation| {
            SshCollection::new(activation.options_as()?, Some(activation.host().clone()))
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
        assert_eq!(manifest.name, "diffy-ssh");
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
    }

    /// The schema defaults the host fills in must deserialise into the options and build the
    /// component.
    #[test]
    fn schema_defaults_build_the_collection() {
        let plugin = plugin();
        let component = plugin
            .manifest()
            .component(ComponentKind::Collection, "ssh")
            .unwrap();
        let defaults = Value::Object(component.resolve_options(&Map::new()).unwrap());
        SshCollection::new(serde_json::from_value(defaults).unwrap(), None).unwrap();
        let unknown = component.resolve_options(&Map::from_iter([("bogus".into(), Value::Null)]));
        assert!(unknown.is_err());
    }
}
