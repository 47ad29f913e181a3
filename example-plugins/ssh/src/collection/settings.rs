//! The options of the `ssh` collection, their schema, and their checked form ([`Settings`]).

use std::path::PathBuf;
use std::time::Duration;

use diffy_plugin_api::anyhow::bail;
use diffy_plugin_api::{OptionSpec, OptionType, Result};
use serde::Deserialize;

use crate::inventory::address;

const DEFAULT_CONNECT_TIMEOUT_SECS: i64 = 10;
const DEFAULT_COMMAND_TIMEOUT_SECS: i64 = 60;

/// Hosts per core worked on at once by default: ssh mostly waits on the network.
const JOBS_PER_CORE: usize = 8;
/// The most hosts worked on at once by default (each holds a connection and a few descriptors).
const MAX_DEFAULT_JOBS: usize = 64;

/// The options, as the host hands them over (checked against the schema, defaults filled).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Options {
    #[serde(default)]
    pub(crate) ssh_config: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<String>,
    #[serde(default)]
    pub(crate) port: Option<i64>,
    #[serde(default)]
    pub(crate) identity_file: Option<String>,
    #[serde(default)]
    pub(crate) jobs: Option<i64>,
    #[serde(default = "default_connect_timeout")]
    pub(crate) connect_timeout: i64,
    #[serde(default = "default_command_timeout")]
    pub(crate) command_timeout: i64,
    #[serde(default = "default_host_key_checking")]
    pub(crate) host_key_checking: String,
}

fn default_connect_timeout() -> i64 {
    DEFAULT_CONNECT_TIMEOUT_SECS
}

fn default_command_timeout() -> i64 {
    DEFAULT_COMMAND_TIMEOUT_SECS
}

fn default_host_key_checking() -> String {
    HostKeyChecking::Strict.as_str().to_string()
}

/// The schema entries, in the order `diffy plugin info` shows them.
pub(crate) fn option_specs() -> Vec<OptionSpec> {
    vec![
        OptionSpec::new(
            "ssh_config",
            OptionType::String,
            "An OpenSSH client configuration file, passed to ssh with -F (default: ssh's own, \
             ~/.ssh/config, or the inventory itself when it is an ssh config)",
        ),
        OptionSpec::new(
            "user",
            OptionType::String,
            "The login user for targets whose inventory names none (default: ssh's)",
        ),
        OptionSpec::new(
            "port",
            OptionType::Integer,
            "The port for targets whose inventory names none (default: ssh's)",
        ),
        OptionSpec::new(
            "identity_file",
            OptionType::String,
            "A private key file, passed to ssh with -i (the agent and ssh_config keys still apply)",
        ),
        OptionSpec::new(
            "jobs",
            OptionType::Integer,
            "Hosts worked on at once within one call (default: 8 per core, at most 64); diffy's \
             workflow calls the collection once per host, --jobs at a time",
        ),
        OptionSpec::new(
            "connect_timeout",
            OptionType::Integer,
            "Seconds to wait for a host to answer (ssh's ConnectTimeout); the whole login may \
             take 10 s more before the host is recorded as timed out",
        )
        .default_value(DEFAULT_CONNECT_TIMEOUT_SECS),
        OptionSpec::new(
            "command_timeout",
            OptionType::Integer,
            "Seconds each command may run before it is killed and recorded as timed out",
        )
        .default_value(DEFAULT_COMMAND_TIMEOUT_SECS),
        OptionSpec::new(
            "host_key_checking",
            OptionType::String,
            "strict: only hosts already in known_hosts; accept-new: also add unknown hosts to \
             known_hosts. A changed key is refused either way",
        )
        .default_value(default_host_key_checking()),
    ]
}

/// Which host keys ssh accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostKeyChecking {
    /// `StrictHostKeyChecking=yes`: known hosts only.
    Strict,
    /// `StrictHostKeyChecking=accept-new`: unknown hosts are added, changed keys still refused.
    AcceptNew,
}

impl HostKeyChecking {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HostKeyChecking::Strict => "strict",
            HostKeyChecking::AcceptNew => "accept-new",
        }
    }

    /// The value of ssh's `StrictHostKeyChecking`.
    pub(crate) fn ssh_value(self) -> &'static str {
        match self {
            HostKeyChecking::Strict => "yes",
            HostKeyChecking::AcceptNew => "accept-new",
        }
    }
}

/// The options, checked.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) ssh_config: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) identity_file: Option<PathBuf>,
    pub(crate) jobs: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) host_key_checking: HostKeyChecking,
}

impl Settings {
    pub(crate) fn new(options: Options) -> Result<Settings> {
        let file = |key: &str, path: Option<String>| -> Result<Option<PathBuf>> {
            match path {
                Some(path) if !std::path::Path::new(&path).is_file() => {
                    bail!("option {key}: {path} is not a file")
                }
                path => Ok(path.map(PathBuf::from)),
            }
        };
        let seconds = |key: &str, value: i64| -> Result<Duration> {
            match u64::try_from(value) {
                Ok(secs @ 1..) => Ok(Duration::from_secs(secs)),
                _ => bail!("option {key} must be at least 1 second, not {value}"),
            }
        };
        let host_key_checking = match options.host_key_checking.as_str() {
            "strict" => HostKeyChecking::Strict,
            "accept-new" => HostKeyChecking::AcceptNew,
            other => bail!("option host_key_checking must be strict or accept-new, not {other:?}"),
        };
        let jobs = match options.jobs {
            None => default_jobs(),
            Some(jobs @ 1..=1024) => jobs as usize,
            Some(jobs) => bail!("option jobs must be from 1 to 1024, not {jobs}"),
        };
        Ok(Settings {
            ssh_config: file("ssh_config", options.ssh_config)?,
            user: options
                .user
                .map(|user| address::check_user(&user))
                .transpose()
                .map_err(|why| diffy_plugin_api::anyhow::anyhow!("option user: {why}"))?,
            port: options
                .port
                .map(|port| address::parse_port(&port.to_string()))
                .transpose()
                .map_err(|why| diffy_plugin_api::anyhow::anyhow!("option port: {why}"))?,
            identity_file: file("identity_file", options.identity_file)?,
            jobs,
            connect_timeout: seconds("connect_timeout", options.connect_timeout)?,
            command_timeout: seconds("command_timeout", options.command_timeout)?,
            host_key_checking,
        })
    }
}

fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores * JOBS_PER_CORE).min(MAX_DEFAULT_JOBS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Options {
        Options {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT_SECS,
            command_timeout: DEFAULT_COMMAND_TIMEOUT_SECS,
            host_key_checking: default_host_key_checking(),
            ..Options::default()
        }
    }

    #[test]
    fn defaults_are_strict_and_sized_for_the_machine() {
        let settings = Settings::new(defaults()).unwrap();
        assert_eq!(settings.host_key_checking, HostKeyChecking::Strict);
        assert!((JOBS_PER_CORE..=MAX_DEFAULT_JOBS).contains(&settings.jobs));
        assert_eq!(settings.command_timeout, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let error = |options: Options| Settings::new(options).unwrap_err().to_string();
        assert_eq!(
            error(Options {
                host_key_checking: "no".into(),
                ..defaults()
            }),
            "option host_key_checking must be strict or accept-new, not \"no\""
        );
        assert_eq!(
            error(Options {
                command_timeout: 0,
                ..defaults()
            }),
            "option command_timeout must be at least 1 second, not 0"
        );
        assert!(
            error(Options {
                port: Some(70_000),
                ..defaults()
            })
            .starts_with("option port: port \"70000\"")
        );
        assert!(
            error(Options {
                ssh_config: Some("/no/such/config".into()),
                ..defaults()
            })
            .contains("/no/such/config is not a file")
        );
        assert!(
            error(Options {
                jobs: Some(0),
                ..defaults()
            })
            .contains("jobs must be from 1")
        );
    }
}
