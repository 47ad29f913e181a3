//! An Ansible INI inventory, read as Ansible reads it:
//!
//! ```ini
//! mail.example.com                    # before any section: the group "ungrouped"
//! [web]
//! web[01:20].example.com ansible_user=deploy
//! web-legacy:2222 ansible_host=192.0.2.7
//! [prod:children]
//! web
//! [prod:vars]
//! ansible_port=2200
//! ```
//!
//! Of the variables, only those that say how to reach a host matter here: `ansible_host`,
//! `ansible_port` and `ansible_user` (and their older `ansible_ssh_*` spellings); the others are
//! accepted and ignored.

use super::address;
use super::ranges;
use super::{Host, Inventory, Source, UNGROUPED, Vars};

/// What the lines of the current section are.
enum Section {
    /// Host lines of a group.
    Hosts(String),
    /// Names of child groups.
    Children(String),
    /// `key=value` variables of a group.
    Vars(String),
}

pub(crate) fn parse(source: &Source) -> Result<Inventory, String> {
    let mut inventory = Inventory::default();
    let mut section = Section::Hosts(UNGROUPED.to_string());
    for (number, line) in source.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        let fail = |why: String| source.error(number, why);
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = parse_header(header).map_err(fail)?;
            let (Section::Hosts(group) | Section::Children(group) | Section::Vars(group)) =
                &section;
            inventory.group_mut(group);
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                for host in parse_host_line(line, number).map_err(fail)? {
                    inventory.group_mut(group).hosts.push(host.name.clone());
                    inventory.add_host(host);
                }
            }
            Section::Children(group) => {
                let child = strip_comment(line).trim();
                check_group_name(child).map_err(fail)?;
                inventory.group_mut(child);
                inventory.group_mut(group).children.push(child.to_string());
            }
            Section::Vars(group) => {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(fail(format!("expected key=value, found {line:?}")));
                };
                let value = unquote(strip_comment(value).trim());
                let vars = &mut inventory.group_mut(group).vars;
                set_var(vars, key.trim(), &value).map_err(fail)?;
            }
        }
    }
    Ok(inventory)
}

fn parse_header(header: &str) -> Result<Section, String> {
    let section = match header.split_once(':') {
        None => Section::Hosts(header.to_string()),
        Some((group, "children")) => Section::Children(group.to_string()),
        Some((group, "vars")) => Section::Vars(group.to_string()),
        Some((_, other)) => {
            return Err(format!(
                "section [{header}]: expected [group], [group:children] or [group:vars], not \
                 :{other}"
            ));
        }
    };
    let (Section::Hosts(group) | Section::Children(group) | Section::Vars(group)) = &section;
    check_group_name(group)?;
    Ok(section)
}

fn check_group_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_-.".contains(c);
    if !name.is_empty() && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a group name (letters, digits, '_', '-' and '.')"
        ))
    }
}

/// `pattern[:port] [key=value …]`: one host, or several with a range.
fn parse_host_line(line: &str, number: usize) -> Result<Vec<Host>, String> {
    let tokens = shlex::split(strip_comment(line))
        .ok_or_else(|| format!("unbalanced quotes in {line:?}"))?;
    let Some((pattern, assignments)) = tokens.split_first() else {
        return Ok(Vec::new());
    };
    let (pattern, port) = split_port(pattern)?;
    let mut vars = Vars {
        port,
        ..Vars::default()
    };
    for assignment in assignments {
        let Some((key, value)) = assignment.split_once('=') else {
            return Err(format!(
                "expected key=value after the host, found {assignment:?}"
            ));
        };
        set_var(&mut vars, key, value)?;
    }
    ranges::expand(pattern)?
        .into_iter()
        .map(|name| {
            address::check_host(&name)?;
            Ok(Host {
                name,
                vars: vars.clone(),
                line: number,
            })
        })
        .collect()
}

/// `pattern:port` → the pattern and the port. A colon inside a range's brackets is the range's.
fn split_port(pattern: &str) -> Result<(&str, Option<u16>), String> {
    let mut depth = 0usize;
    let colons: Vec<usize> = pattern
        .char_indices()
        .filter_map(|(at, c)| {
            match c {
                '[' => depth += 1,
                ']' => depth = depth.saturating_sub(1),
                ':' if depth == 0 => return Some(at),
                _ => {}
            }
            None
        })
        .collect();
    match colons[..] {
        [at] => Ok((
            &pattern[..at],
            Some(address::parse_port(&pattern[at + 1..])?),
        )),
        _ => Ok((pattern, None)),
    }
}

/// Record the variables that say how to reach a host; ignore the rest.
fn set_var(vars: &mut Vars, key: &str, value: &str) -> Result<(), String> {
    match key {
        "ansible_host" | "ansible_ssh_host" => {
            vars.address = Some(address::check_host(value)?.to_string());
        }
        "ansible_port" | "ansible_ssh_port" => {
            vars.port = Some(address::parse_port(value).map_err(|why| format!("{key}: {why}"))?);
        }
        "ansible_user" | "ansible_ssh_user" => vars.user = Some(address::check_user(value)?),
        _ => {}
    }
    Ok(())
}

/// `line` without a trailing `# comment` (a `#` inside quotes, or glued to a word, is kept).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '#') if previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

/// A variable's value without its quotes (as written, when it is not one quoted word).
fn unquote(value: &str) -> String {
    match shlex::split(value).as_deref() {
        Some([one]) => one.clone(),
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Result<Inventory, String> {
        parse(&Source::new("hosts.ini", text))
    }

    const FLEET: &str = "\
mail.example.com
; a comment
[web]
web[01:03] ansible_user=deploy  # three of them
legacy:2222 ansible_host=192.0.2.7 note=\"a # in quotes\"

[db]
db-1 ansible_ssh_host=192.0.2.9 ansible_ssh_port=5522

[prod:children]
web
db

[prod:vars]
ansible_user = \"admin\"
ansible_port=2200
";

    #[test]
    fn hosts_groups_children_and_vars() {
        let inventory = inventory(FLEET).unwrap();
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mail.example.com",
                "web01",
                "web02",
                "web03",
                "legacy",
                "db-1"
            ]
        );
        let legacy = inventory.host("legacy").unwrap();
        assert_eq!(legacy.vars.address.as_deref(), Some("192.0.2.7"));
        assert_eq!(legacy.vars.port, Some(2222));
        assert_eq!(legacy.line, 5);
        let db = inventory.host("db-1").unwrap();
        assert_eq!(db.vars.port, Some(5522));
        let prod = &inventory.groups["prod"];
        assert_eq!(prod.children, ["web", "db"]);
        assert_eq!(prod.vars.user.as_deref(), Some("admin"));
        assert_eq!(prod.vars.port, Some(2200));
        assert_eq!(inventory.groups["web"].hosts.len(), 4);
        assert_eq!(inventory.groups[UNGROUPED].hosts, ["mail.example.com"]);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let error = |text| inventory(text).unwrap_err();
        assert_eq!(
            error("[web]\nweb1 ansible_port=ssh\n"),
            "hosts.ini:2: ansible_port: port \"ssh\" is not a number from 1 to 65535"
        );
        assert_eq!(
            error("[web]\nweb1 stray\n"),
            "hosts.ini:2: expected key=value after the host, found \"stray\""
        );
        assert!(error("[web:hosts]\n").starts_with("hosts.ini:1: section [web:hosts]"));
        assert!(error("[a b]\n").starts_with("hosts.ini:1: \"a b\" is not a group name"));
        assert!(error("[web]\nw[3:1]\n").starts_with("hosts.ini:2: host range [3:1]"));
        assert!(error("[web]\n\"-oProxyCommand=x\"\n").starts_with("hosts.ini:2: host"));
        assert!(error("[web:vars]\nnovalue\n").starts_with("hosts.ini:2: expected key=value"));
        assert!(error("[web]\nw1 'open\n").starts_with("hosts.ini:2: unbalanced quotes"));
    }
}
