//! `diffy-ssh-lab --hosts N [--prefix NAME] [--tampered I]… [--down NAME]…`: start an SSH lab of
//! N hosts (`host-01` …, or `NAME-01` …), host I of them tampered with (the lab's backdoor account
//! and cron line), plus a host NAME whose port has nothing listening for each `--down`; print its
//! directory (holding `hosts.ini`, `hosts.txt` and `ssh_config`), and keep it up until stdin
//! closes. For `scripts/bench-ssh.sh` and the README's fleet example; the tests use
//! [`diffy_e2e::ssh_lab`] directly.

use std::io::Read;
use std::process::ExitCode;

use diffy_e2e::ssh_lab::{HostSpec, Lab, Role};

const USAGE: &str = "usage: diffy-ssh-lab --hosts N [--prefix NAME] [--tampered I]... [--down NAME]...   (then close stdin to stop the lab)";

/// The hosts the command line asks for, or why it is wrong.
fn specs(args: &[String]) -> Result<Vec<HostSpec>, String> {
    let mut hosts = None;
    let mut prefix = "host".to_string();
    let mut tampered = Vec::new();
    let mut down = Vec::new();
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--hosts" => {
                hosts = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| format!("--hosts: {value:?} is not a positive number"))?,
                )
            }
            "--prefix" => prefix = value.clone(),
            "--tampered" => tampered.push(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("--tampered: {value:?} is not a host number"))?,
            ),
            "--down" => down.push(value.clone()),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let hosts = hosts.ok_or("--hosts is required")?;
    if let Some(n) = tampered.iter().find(|&&n| n == 0 || n > hosts) {
        return Err(format!("--tampered {n}: the lab has hosts 1 to {hosts}"));
    }
    let mut specs: Vec<HostSpec> = (1..=hosts)
        .map(|n| {
            let role = if tampered.contains(&n) {
                Role::Tampered
            } else {
                Role::Healthy
            };
            HostSpec::new(format!("{prefix}-{n:02}"), role)
        })
        .collect();
    specs.extend(down.into_iter().map(|name| HostSpec::new(name, Role::Down)));
    Ok(specs)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let specs = match specs(&args) {
        Ok(specs) => specs,
        Err(why) => {
            eprintln!("error: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
