//! `diffy-ssh-lab --hosts N`: start an SSH lab of N healthy hosts (`host-01` …), print its
//! directory (holding `hosts.ini`, `hosts.txt` and `ssh_config`), and keep it up until stdin
//! closes. For `scripts/bench-ssh.sh`; the tests use [`diffy_e2e::ssh_lab`] directly.

use std::io::Read;
use std::process::ExitCode;

use diffy_e2e::ssh_lab::{HostSpec, Lab, Role};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hosts = match args.as_slice() {
        [flag, count] if flag == "--hosts" => count.parse::<usize>().ok().filter(|&n| n > 0),
        _ => None,
    };
    let Some(hosts) = hosts else {
        eprintln!("usage: diffy-ssh-lab --hosts N   (then close stdin to stop the lab)");
        return ExitCode::from(2);
    };
    let specs: Vec<HostSpec> = (1..=hosts)
        .map(|n| HostSpec::new(format!("host-{n:02}"), Role::Healthy))
        .collect();
    let lab = match Lab::start(&specs) {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!("error: cannot start the SSH lab: {why}");
            return ExitCode::from(1);
        }
    };
    let list: String = lab
        .names()
        .iter()
        .map(|name| format!("127.0.0.1:{}\n", lab.port(name)))
        .collect();
    if let Err(e) = std::fs::write(lab.dir().join("hosts.txt"), list) {
        eprintln!("error: cannot write hosts.txt: {e}");
        return ExitCode::from(1);
    }
    println!("{}", lab.dir().display());
    // Until whoever started the lab closes our stdin (or dies).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    ExitCode::SUCCESS
}
