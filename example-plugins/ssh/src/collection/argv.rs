//! The `ssh` command lines, built as argument vectors: nothing from a target, the incident or the
//! options ever passes through a local shell.
//!
//! Every invocation for a host (the control master, each command, `-O check` and `-O exit`)
//! carries the same options, so a command that finds no master (and so connects by itself)
//! behaves exactly as the master would. Options given with `-o` win over any `ssh_config`, which
//! is how diffy keeps its promises whatever the user's configuration says:
//!
//! - `BatchMode=yes`: never a prompt (a password, a passphrase, an unknown key);
//! - `StrictHostKeyChecking` from `host_key_checking`, and `UpdateHostKeys=no`, so `known_hosts`
//!   only ever changes when accept-new adds a host;
//! - no agent, X11 or port forwarding, no local command and no terminal: a host under suspicion
//!   gets nothing to borrow;
//! - `ConnectTimeout`, and `ServerAliveInterval` so a connection that dies is noticed;
//! - `LogLevel=ERROR`, so a command's stderr holds what the command wrote, not ssh's notes.
//!
//! ssh runs with `LC_ALL=C`: the locale a responder's ssh forwards (Debian's `SendEnv LANG LC_*`)
//! then cannot make outputs differ between responders. The incident id travels as
//! `DIFFY_INCIDENT` through `SendEnv`, which the server applies only if its `AcceptEnv` allows.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process;
use std::time::Duration;

use diffy_plugin_api::TargetInfo;

use super::settings::Settings;
use crate::inventory::{SSH_CONFIG_LABEL, address};

/// The environment variable that carries the incident id.
pub(crate) const INCIDENT_VARIABLE: &str = "DIFFY_INCIDENT";

/// How long an idle master outlives its last command: it ends by itself soon after a diffy that
/// was killed before it could send `-O exit`.
const CONTROL_PERSIST_SECS: u64 = 10;

/// Seconds between keepalives, and how many may go unanswered before ssh gives up.
const SERVER_ALIVE_INTERVAL_SECS: u64 = 5;
const SERVER_ALIVE_COUNT_MAX: u64 = 3;

/// Where and as whom to log in, for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
    /// The configuration for `-F`: the `ssh_config` option, else the inventory's own.
    pub(crate) ssh_config: Option<PathBuf>,
}

impl Destination {
    /// The destination of `target`: its address (else its id), its port and user (else the
    /// options'). Refuses what ssh would misread, whatever target plugin produced it.
    pub(crate) fn of(target: &TargetInfo, settings: &Settings) -> Result<Destination, String> {
        let host = target.address.as_deref().unwrap_or(&target.id);
        let host = address::check_host(host)?.to_string();
        let user = match target.user.as_deref() {
            Some(user) => Some(address::check_user(user)?),
            None => settings.user.clone(),
        };
        let ssh_config = settings
            .ssh_config
            .clone()
            .or_else(|| target.labels.get(SSH_CONFIG_LABEL).map(PathBuf::from));
        Ok(Destination {
            host,
            port: target.port.or(settings.port),
            user,
            ssh_config,
        })
    }
}

/// The ssh invocations for one host, sharing one control socket.
pub(crate) struct Invocation<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) destination: &'a Destination,
    pub(crate) control_path: &'a Path,
    /// The incident id to offer the server, if any.
    pub(crate) incident: Option<&'a str>,
}

impl Invocation<'_> {
    /// `ssh … -f -N`: log in, start the control master, and return once it is ready.
    pub(crate) fn master(&self) -> process::Command {
        let persist = format!("ControlPersist={CONTROL_PERSIST_SECS}");
        self.command(
            &["-o", "ControlMaster=yes", "-o", &persist, "-f", "-N"],
            None,
        )
    }

    /// `ssh … -O OPERATION`: ask the master (`check`, `exit`).
    pub(crate) fn control(&self, operation: &str) -> process::Command {
        self.command(&["-O", operation], None)
    }

    /// `ssh … -T DESTINATION RUN`: one command over the master's connection.
    pub(crate) fn remote(&self, run: &str) -> process::Command {
        self.command(&["-o", "ControlMaster=no", "-T"], Some(run))
    }

    fn command(&self, mode: &[&str], run: Option<&str>) -> process::Command {
        let mut command = process::Command::new("ssh");
        command.args(self.arguments(mode, run));
        command.env("LC_ALL", "C").env("LANG", "C");
        match self.incident {
            Some(incident) => command.env(INCIDENT_VARIABLE, incident),
            None => command.env_remove(INCIDENT_VARIABLE),
        };
        command
    }

    /// The argument vector after `ssh`.
    pub(crate) fn arguments(&self, mode: &[&str], run: Option<&str>) -> Vec<OsString> {
        let settings = self.settings;
        let mut args: Vec<OsString> = Vec::new();
        let mut option = |value: String| {
            args.push("-o".into());
            args.push(value.into());
        };
        let connect = settings.connect_timeout.as_secs().max(1);
        option("BatchMode=yes".into());
        option(format!("ConnectTimeout={connect}"));
        option(format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL_SECS}"));
        option(format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"));
        option(format!(
            "StrictHostKeyChecking={}",
            settings.host_key_checking.ssh_value()
        ));
        option("UpdateHostKeys=no".into());
        option("ForwardAgent=no".into());
        option("ForwardX11=no".into());
        option("ClearAllForwardings=yes".into());
        option("PermitLocalCommand=no".into());
        option("RequestTTY=no".into());
        option("LogLevel=ERROR".into());
        // ssh expands % tokens in ControlPath; a temporary directory may contain a '%'.
        let control = self.control_path.to_string_lossy().replace('%', "%%");
        option(format!("ControlPath={control}"));
        if self.incident.is_some() {
            option(format!("SendEnv={INCIDENT_VARIABLE}"));
        }
        let destination = self.destination;
        if let Some(config) = &destination.ssh_config {
            args.push("-F".into());
            args.push(config.into());
        }
        if let Some(identity) = &settings.identity_file {
            args.push("-i".into());
            args.push(identity.into());
        }
        if let Some(user) = &destination.user {
            args.extend(["-l".into(), user.into()]);
        }
        if let Some(port) = destination.port {
            args.extend(["-p".into(), port.to_string().into()]);
        }
        args.extend(mode.iter().map(OsString::from));
        // `--` ends ssh's options: nothing after it is read as one.
        args.push("--".into());
        args.push(destination.host.as_str().into());
        if let Some(run) = run {
            args.push(run.into());
        }
        args
    }

    /// How long the master may take to log in: ssh's own ConnectTimeout covers the connection and
    /// the banner; key exchange and authentication get this much more.
    pub(crate) fn login_deadline(&self) -> Duration {
        self.settings.connect_timeout + Duration::from_secs(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::settings::{HostKeyChecking, Options};

    fn settings() -> Settings {
        Settings::new(Options {
            connect_timeout: 7,
            command_timeout: 30,
            host_key_checking: "strict".into(),
            user: Some("ops".into()),
            ..Options::default()
        })
        .unwrap()
    }

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn destinations_take_the_target_first_then_the_options() {
        let settings = settings();
        let mut target = TargetInfo::new("web-1");
        let plain = Destination::of(&target, &settings).unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.user.as_deref(), plain.port),
            ("web-1", Some("ops"), None)
        );
        target.address = Some("192.0.2.1".into());
        target.port = Some(2222);
        target.user = Some("root".into());
        target
            .labels
            .insert(SSH_CONFIG_LABEL.into(), "/inventory/fleet.conf".into());
        let full = Destination::of(&target, &settings).unwrap();
        assert_eq!(full.host, "192.0.2.1");
        assert_eq!(
            (full.user.as_deref(), full.port),
            (Some("root"), Some(2222))
        );
        assert_eq!(
            full.ssh_config,
            Some(PathBuf::from("/inventory/fleet.conf"))
        );

        target.address = Some("-oProxyCommand=sh".into());
        assert!(Destination::of(&target, &settings).is_err());
    }

    #[test]
    fn the_argv_keeps_every_promise_and_ends_options_before_the_host() {
        let settings = settings();
        let destination = Destination {
            host: "web-1".into(),
            port: Some(2201),
            user: Some("root".into()),
            ssh_config: Some("/lab/ssh_config".into()),
        };
        let invocation = Invocation {
            settings: &settings,
            destination: &destination,
            control_path: Path::new("/tmp/diffy-ssh-x%y/0"),
            incident: Some("IR-7; rm -rf /"),
        };
        let run = "ps -eo user,args | grep -v \"$$\"";
        let args = strings(invocation.arguments(&["-T"], Some(run)));
        let joined = args.join(" ");
        for expected in [
            "-o BatchMode=yes",
            "-o ConnectTimeout=7",
            "-o StrictHostKeyChecking=yes",
            "-o UpdateHostKeys=no",
            "-o ForwardAgent=no",
            "-o ControlPath=/tmp/diffy-ssh-x%%y/0",
            "-o SendEnv=DIFFY_INCIDENT",
            "-F /lab/ssh_config",
            "-l root",
            "-p 2201",
        ] {
            assert!(
                joined.contains(expected),
                "{expected} missing from {joined}"
            );
        }
        // The incident id is an environment variable, never an argument.
        assert!(!joined.contains("IR-7"));
        let tail = &args[args.len() - 4..];
        assert_eq!(tail, ["-T", "--", "web-1", run]);

        let accept = Settings {
            host_key_checking: HostKeyChecking::AcceptNew,
            ..settings.clone()
        };
        let invocation = Invocation {
            settings: &accept,
            incident: None,
            ..invocation
        };
        let joined = strings(invocation.arguments(&[], None)).join(" ");
        assert!(joined.contains("StrictHostKeyChecking=accept-new"));
        assert!(!joined.contains("SendEnv"));
        let command = invocation.remote("true");
        let incident: Vec<_> = command
            .get_envs()
            .filter(|(key, _)| *key == INCIDENT_VARIABLE)
            .collect();
        assert_eq!(incident, [(std::ffi::OsStr::new(INCIDENT_VARIABLE), None)]);
    }
}
