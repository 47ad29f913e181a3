//! The sandbox an isolated plugin runs in, applied by the runner to itself before the library is
//! opened (Linux): Landlock filesystem rules, no TCP, scoped signals and abstract sockets,
//! `no_new_privs`, resource limits, and death with the parent.
//!
//! | access | without permissions | widened by |
//! |---|---|---|
//! | read | system paths (`/usr`, `/lib*`, `/bin`, `/sbin`, `/etc`), the library, `/dev/null`, `/dev/urandom`, `/dev/zero` | `read-all`: the whole filesystem |
//! | write | the plugin's data directory, a private temporary directory, `/dev/null` | nothing |
//! | run programs | nothing | `exec`: programs under the system paths |
//! | TCP connect and bind | nothing | `network`: everything |
//! | signals, abstract Unix sockets outside the sandbox | nothing | nothing |
//!
//! Limits: address space [`MAX_ADDRESS_SPACE`], open files [`MAX_OPEN_FILES`], CPU time
//! [`MAX_CPU_SECONDS`], no core dumps. What Landlock does not cover (UDP on this kernel, an
//! inherited descriptor, the CPU a plugin burns within its limit) is listed in `docs/security.md`.

use std::path::{Path, PathBuf};

use diffy_plugin_api::Permission;
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde::{Deserialize, Serialize};

/// The address space an isolated plugin may map (8 GiB).
pub const MAX_ADDRESS_SPACE: u64 = 8 << 30;

/// The files an isolated plugin may have open at once.
pub const MAX_OPEN_FILES: u64 = 1024;

/// The CPU time an isolated plugin may use in one run (one hour).
pub const MAX_CPU_SECONDS: u64 = 3600;

/// Read-only system paths: libraries, the dynamic loader's configuration, system programs.
const SYSTEM_PATHS: &[&str] = &["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc"];

/// Devices a program expects to open.
const DEVICES_READ: &[&str] = &["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"];

/// The Landlock features diffy asks for; an older kernel enforces what it can ("partly").
const WANTED_ABI: ABI = ABI::V6;

/// How much of the sandbox the kernel enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxStatus {
    /// Every rule is enforced.
    Enforced,
    /// The kernel enforces an older set of Landlock features (some rules are not).
    Partly,
    /// The kernel has no Landlock: the plugin runs out of process, but not sandboxed.
    NotAvailable,
}

/// What the runner's sandbox turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxReport {
    /// How much the kernel enforces.
    pub status: SandboxStatus,
    /// The permissions granted (the plugin's declared ones).
    pub permissions: Vec<Permission>,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
}

impl std::fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.status {
            SandboxStatus::Enforced => "sandboxed (Landlock fully enforced)",
            SandboxStatus::Partly => "sandboxed, partly (this kernel's Landlock lacks some rules)",
            SandboxStatus::NotAvailable => "not sandboxed (this kernel has no Landlock)",
        })?;
        if !self.permissions.is_empty() {
            let granted: Vec<&str> = self.permissions.iter().map(|p| p.as_str()).collect();
            write!(f, "; granted: {}", granted.join(", "))?;
        }
        Ok(())
    }
}

/// The places a sandboxed plugin may use besides the system's.
pub struct Places<'a> {
    /// The library (read).
    pub library: &'a Path,
    /// The plugin's data directory (read and write).
    pub data_dir: &'a Path,
    /// Its private temporary directory (read and write).
    pub temp_dir: &'a Path,
}

/// Restrict this process for good: limits, death with the parent, then Landlock. Fails only when
/// a rule cannot be built (a path it must open is unreadable), never because the kernel is old.
pub fn enter(places: &Places<'_>, permissions: &[Permission]) -> Result<SandboxReport, String> {
    limit_resources()?;
    // The runner must not outlive the diffy that started it, whatever ends that diffy.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("cannot tie the runner to its parent: {e}"))?;
    let granted = |p: Permission| permissions.contains(&p);
    let abi = WANTED_ABI;
    let read = AccessFs::from_read(abi) & !AccessFs::Execute;
    let everything = AccessFs::from_all(abi);
    let mut ruleset = Ruleset::default()
        .handle_access(everything)
        .map_err(|e| e.to_string())?
        .scope(Scope::from_all(abi))
        .map_err(|e| e.to_string())?;
    if !granted(Permission::Network) {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| e.to_string())?;
    }
    let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = Vec::new();
    let system = if granted(Permission::Exec) {
        read | AccessFs::Execute
    } else {
        read
    };
    rules.extend(SYSTEM_PATHS.iter().map(|p| (PathBuf::from(p), system)));
    rules.extend(DEVICES_READ.iter().map(|p| (PathBuf::from(p), read)));
    rules.push((PathBuf::from("/dev/null"), everything));
    if granted(Permission::ReadAll) {
        rules.push((PathBuf::from("/"), read));
    }
    rules.push((places.library.to_path_buf(), read));
    rules.push((places.data_dir.to_path_buf(), everything));
    rules.push((places.temp_dir.to_path_buf(), everything));

    let mut created = ruleset.create().map_err(|e| e.to_string())?;
    for (path, access) in rules {
        // A system path this machine does not have (`/lib32`) needs no rule.
        let Ok(fd) = PathFd::new(&path) else {
            continue;
        };
        // Rights that make no sense on a file (listing it, creating in it) are dropped for files.
        let access = if path.is_dir() {
            access
        } else {
            access & AccessFs::from_file(abi)
        };
        created = created
            .add_rule(PathBeneath::new(fd, access))
            .map_err(|e| format!("cannot allow {}: {e}", path.display()))?;
    }
    let status = created
        .restrict_self()
        .map_err(|e| format!("cannot enter the sandbox: {e}"))?;
    let no_new_privs = status.no_new_privs || set_no_new_privs();
    Ok(SandboxReport {
        status: match status.ruleset {
            RulesetStatus::FullyEnforced => SandboxStatus::Enforced,
            RulesetStatus::PartiallyEnforced => SandboxStatus::Partly,
            RulesetStatus::NotEnforced => SandboxStatus::NotAvailable,
        },
        permissions: permissions.to_vec(),
        no_new_privs,
    })
}

/// `no_new_privs` without Landlock (which sets it itself where it is enforced).
fn set_no_new_privs() -> bool {
    rustix::thread::set_no_new_privs(true).is_ok()
}

/// Lower each limit to diffy's (never raise one the user set lower).
fn limit_resources() -> Result<(), String> {
    let limit = |resource, value: u64, what: &str| {
        let value = getrlimit(resource)
            .maximum
            .map_or(value, |max| max.min(value));
        let rlimit = Rlimit {
            current: Some(value),
            maximum: Some(value),
        };
        setrlimit(resource, rlimit).map_err(|e| format!("cannot limit {what}: {e}"))
    };
    limit(Resource::As, MAX_ADDRESS_SPACE, "the address space")?;
    limit(Resource::Nofile, MAX_OPEN_FILES, "open files")?;
    limit(Resource::Cpu, MAX_CPU_SECONDS, "CPU time")?;
    limit(Resource::Core, 0, "core dumps")
}
