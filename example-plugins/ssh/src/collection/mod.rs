//! The Collection component `ssh`: runs the payload's commands on each target through the system
//! OpenSSH client, one connection per host ([`master`]) and one session per command, so every
//! command keeps its own exit status, stdout, stderr, duration and digest.
//!
//! Why a control master rather than one framed script per host: each command stays a plain ssh
//! session, so its stdout and stderr are exactly what it wrote and its exit status is the
//! server's own report, with no markers to parse, no remote shell dialect to rely on for timing,
//! and nothing written on the host; a command that hangs can be killed alone while the others
//! still run. The price is one local `ssh` process per command, a few milliseconds each.
//!
//! Every failure is a record, never an error of the call: one failed host never fails a run.

mod argv;
mod failure;
mod host;
mod master;
mod process;
mod settings;

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use diffy_plugin_api::anyhow::Context;
use diffy_plugin_api::{
    Collection, Command, Component, Host as Services, Record, Result, TargetInfo,
};

pub(crate) use settings::Options;
use settings::Settings;

/// The longest temporary directory path used for control sockets: a socket's path must fit in
/// 108 bytes, and ssh adds a random suffix while it creates one.
const MAX_SOCKET_DIR_LEN: usize = 60;

/// `ssh`: the payload's commands over OpenSSH.
pub(crate) struct SshCollection {
    settings: Settings,
    services: Option<Services>,
}

impl SshCollection {
    pub(crate) fn component() -> Component {
        let component = Component::named("ssh", "Run the commands on each host through OpenSSH")
            .description(
                "Runs each command through the system ssh client, so ~/.ssh/config, the agent, \
                 certificates, ProxyJump and known_hosts apply. One connection per host (an \
                 OpenSSH control master in a private directory, ended on every way out), one \
                 session per command with its own exit status, stdout, stderr and duration. \
                 BatchMode: never a prompt. No agent, X11 or port forwarding; no terminal; \
                 nothing is written on the hosts. The incident id is offered as DIFFY_INCIDENT \
                 (SendEnv), which a server uses only if it accepts it. A failure is a record whose \
                 error starts with its class: unreachable, timed out, authentication refused, \
                 host key unknown, host key changed (never accepted), command failed: exit N, \
                 ssh failed, invalid target.",
            );
        settings::option_specs()
            .into_iter()
            .fold(component, Component::option)
    }

    pub(crate) fn new(options: Options, services: Option<Services>) -> Result<Self> {
        Ok(SshCollection {
            settings: Settings::new(options)?,
            services,
        })
    }

    fn info(&self, message: String) {
        if let Some(services) = &self.services {
            services.info(message);
        }
    }
}

impl Collection for SshCollection {
    fn get(
        &self,
        targets: &[TargetInfo],
        commands: &[Command],
        incident: Option<&str>,
    ) -> Result<Vec<Record>> {
        // A NUL cannot travel in an environment variable; such an id is not offered at all.
        let incident = incident.filter(|id| !id.contains('\0'));
        let dir = tempfile::Builder::new()
            .prefix("diffy-ssh-")
            .permissions(Permissions::from_mode(0o700))
            .tempdir_in(socket_parent())
            .context("cannot create a private directory for the ssh control sockets")?;
        // diffy's workflow calls once per target and draws its own bar; a call with many draws one.
        let progress = self
            .services
            .as_ref()
            .filter(|_| targets.len() > 1)
            .map(|services| services.progress(targets.len() as u64, "ssh"));

        let workers = self.settings.jobs.clamp(1, targets.len().max(1));
        if workers == 1 {
            // One at a time (diffy's workflow calls once per target): on the calling thread,
            // whose processes diffy ends when it abandons the call at its deadline.
            let mut records = Vec::new();
            for (slot, target) in targets.iter().enumerate() {
                let outcome =
                    host::collect(target, commands, &self.settings, dir.path(), slot, incident);
                self.info(format!("{}: {}", target.id, outcome.summary));
                records.extend(outcome.records);
                if let Some(progress) = &progress {
                    progress.advance(1);
                }
            }
            return Ok(records);
        }
        let next = AtomicUsize::new(0);
        let mut per_target: Vec<Vec<Record>> = vec![Vec::new(); targets.len()];
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::channel();
            for _ in 0..workers {
                let sender = sender.clone();
                let (next, dir) = (&next, dir.path());
                scope.spawn(move || {
                    loop {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        let Some(target) = targets.get(slot) else {
                            break;
                        };
                        let outcome =
                            host::collect(target, commands, &self.settings, dir, slot, incident);
                        if sender.send((slot, outcome)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(sender);
            for (slot, outcome) in receiver {
                self.info(format!("{}: {}", targets[slot].id, outcome.summary));
                per_target[slot] = outcome.records;
                if let Some(progress) = &progress {
                    progress.advance(1);
                }
            }
        });
        Ok(per_target.into_iter().flatten().collect())
    }
}

/// The system's temporary directory, or `/tmp` when that path is too long for sockets.
fn socket_parent() -> PathBuf {
    let temp = std::env::temp_dir();
    if temp.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}

#[cfg(test)]
mod tests {
    use diffy_plugin_api::RecordStatus;

    use super::*;

    fn collection(connect_timeout: i64) -> SshCollection {
        SshCollection::new(
            Options {
                connect_timeout,
                command_timeout: 5,
                host_key_checking: "strict".into(),
                ..Options::default()
            },
            None,
        )
        .unwrap()
    }

    /// A port nothing listens on: the connection is refused at once, with no server needed.
    #[test]
    fn an_unreachable_host_is_failed_records_of_its_class() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut target = TargetInfo::new("down");
        target.address = Some("127.0.0.1".into());
        target.port = Some(port);
        let commands = [Command::new("a", "true"), Command::new("b", "true")];
        let records = collection(2).get(&[target], &commands, None).unwrap();
        assert_eq!(records.len(), 2);
        for record in records {
            assert_eq!(record.status, RecordStatus::Error);
            let error = record.error.unwrap();
            assert!(error.starts_with("unreachable: "), "{error}");
            assert!(error.contains("Connection refused"), "{error}");
            assert_eq!(record.stderr, error);
            assert!(record.duration_ms.is_some());
        }
    }

    #[test]
    fn a_target_ssh_would_misread_is_never_handed_to_it() {
        let mut target = TargetInfo::new("evil");
        target.address = Some("-oProxyCommand=touch /tmp/diffy-ssh-pwned".into());
        let records = collection(2)
            .get(&[target], &[Command::new("a", "true")], None)
            .unwrap();
        assert!(
            records[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("invalid target: ")
        );
        assert!(!std::path::Path::new("/tmp/diffy-ssh-pwned").exists());
    }
}
