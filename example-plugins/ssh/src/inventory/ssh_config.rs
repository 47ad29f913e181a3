//! An OpenSSH client configuration: every `Host` alias without wildcards is a host.
//!
//! Only the aliases are read. Everything else (HostName, Port, User, ProxyJump, …) stays ssh's to
//! resolve, so the targets carry no address: the `ssh` collection hands ssh the alias together
//! with this very file (`-F`, through the target's `ssh_config` label) unless its own
//! `ssh_config` option names another. `Include` is not followed: the hosts of included files are
//! not targets, and the inventory says so in a warning.

use super::{Host, Inventory, Source, Vars};
use crate::inventory::address;

pub(crate) fn parse(source: &Source) -> Result<Inventory, String> {
    let mut inventory = Inventory::default();
    for (number, line) in source.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, arguments) = split_keyword(line);
        if keyword.eq_ignore_ascii_case("include") {
            inventory.warnings.push(source.error(
                number,
                format!("Include {arguments} is not followed: its hosts are not targets"),
            ));
        }
        if !keyword.eq_ignore_ascii_case("host") {
            continue;
        }
        let patterns = shlex::split(arguments)
            .ok_or_else(|| source.error(number, "unbalanced quotes in a Host line".into()))?;
        if patterns.is_empty() {
            return Err(source.error(number, "Host needs at least one pattern".into()));
        }
        for alias in patterns.iter().filter(|p| !p.contains(['*', '?', '!'])) {
            address::check_host(alias).map_err(|why| source.error(number, why))?;
            if inventory.host(alias).is_none() {
                inventory.add_host(Host {
                    name: alias.clone(),
                    vars: Vars::default(),
                    line: number,
                });
            }
        }
    }
    Ok(inventory)
}

/// `Keyword arguments` or `Keyword=arguments`, as ssh reads a configuration line.
pub(crate) fn split_keyword(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (keyword, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Result<Inventory, String> {
        parse(&Source::new("config", text))
    }

    #[test]
    fn aliases_without_wildcards_in_order() {
        let inventory = inventory(
            "Host *\n  ServerAliveInterval 10\n\
             # bastions\nHost bastion jump-?\n  HostName 203.0.113.1\n\
             host=web1\nHost web2 \"web3\" !web4 *.internal\n  ProxyJump bastion\n\
             Match host web1\n  User admin\nHost web1\n",
        )
        .unwrap();
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["bastion", "web1", "web2", "web3"]);
        assert!(inventory.hosts.iter().all(|h| h.vars == Vars::default()));
        assert_eq!(inventory.hosts[1].line, 6);
        assert!(inventory.warnings.is_empty());
    }

    #[test]
    fn includes_are_reported_and_bad_lines_refused() {
        let inventory = inventory("Include config.d/*\nHost a\n").unwrap();
        assert_eq!(
            inventory.warnings,
            ["config:1: Include config.d/* is not followed: its hosts are not targets"]
        );
        assert_eq!(
            parse(&Source::new("config", "Host a\nHost\n")).unwrap_err(),
            "config:2: Host needs at least one pattern"
        );
        assert!(
            parse(&Source::new("config", "Host -oProxyCommand=x\n"))
                .unwrap_err()
                .starts_with("config:1: host \"-oProxyCommand=x\" starts with '-'")
        );
    }
}
