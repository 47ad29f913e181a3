//! The Target component `ssh-inventory`: the key is an inventory file, recognised by its content
//! ([`Format::detect`]), optionally followed by `#GROUP`.
//!
//! Each format's parser ([`plain`], [`ssh_config`], [`ini`], [`json`]) produces the same
//! [`Inventory`]: hosts in file order with the variables that say how to reach them, and groups
//! with their hosts, child groups and variables. [`Inventory::targets`] then resolves a group and
//! each host's address, port and user: the host's own value, else that of its nearest group (its
//! own groups first, then their parents, `all` last).

pub(crate) mod address;
mod ini;
mod json;
mod plain;
mod ranges;
mod ssh_config;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use diffy_plugin_api::anyhow::{Context, anyhow};
use diffy_plugin_api::{Component, Host as Services, Result, Target, TargetInfo};

/// Ansible's group of every host.
const ALL: &str = "all";
/// Ansible's group of the hosts listed in no other group.
const UNGROUPED: &str = "ungrouped";

/// The label holding a target's groups, comma-separated.
pub(crate) const GROUPS_LABEL: &str = "groups";
/// The label naming the OpenSSH configuration a target's alias comes from.
pub(crate) const SSH_CONFIG_LABEL: &str = "ssh_config";

/// An inventory file's text, for parsers and their error messages.
pub(crate) struct Source<'a> {
    name: String,
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(name: impl Into<String>, text: &'a str) -> Self {
        Source {
            name: name.into(),
            text,
        }
    }

    /// The lines, numbered from 1.
    fn lines(&self) -> impl Iterator<Item = (usize, &'a str)> {
        self.text.lines().enumerate().map(|(i, line)| (i + 1, line))
    }

    /// `file:line: why`.
    fn error(&self, line: usize, why: String) -> String {
        format!("{}:{line}: {why}", self.name)
    }

    /// `file: why`, for faults that belong to no one line.
    fn whole(&self, why: &str) -> String {
        format!("{}: {why}", self.name)
    }
}

/// How to reach a host, as far as the inventory says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Vars {
    pub(crate) address: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
}

impl Vars {
    /// Fill what `self` lacks from `other`.
    fn inherit(&mut self, other: &Vars) {
        self.address = self.address.take().or_else(|| other.address.clone());
        self.port = self.port.or(other.port);
        self.user = self.user.take().or_else(|| other.user.clone());
    }
}

/// One host of an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    /// Its name in the inventory, which becomes the target id.
    pub(crate) name: String,
    /// Its own variables.
    pub(crate) vars: Vars,
    /// The line it was first listed on (0 where the format has no lines).
    pub(crate) line: usize,
}

/// A group: its hosts and child groups, by name, and its variables.
#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub(crate) hosts: Vec<String>,
    pub(crate) children: Vec<String>,
    pub(crate) vars: Vars,
}

/// What a parser makes of an inventory file.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Hosts in the order they first appear.
    pub(crate) hosts: Vec<Host>,
    /// Groups by name.
    pub(crate) groups: BTreeMap<String, Group>,
    /// Things the user should know that do not stop the run (an `Include` not followed).
    pub(crate) warnings: Vec<String>,
}

impl Inventory {
    pub(crate) fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.name == name)
    }

    /// Add `host`, or merge it into the host of that name: a value given again replaces the
    /// earlier one, as in Ansible.
    pub(crate) fn add_host(&mut self, host: Host) {
        match self.hosts.iter_mut().find(|known| known.name == host.name) {
            Some(known) => {
                let earlier = std::mem::replace(&mut known.vars, host.vars);
                known.vars.inherit(&earlier);
            }
            None => self.hosts.push(host),
        }
    }

    pub(crate) fn group_mut(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    /// The targets of `group` (every host when `None` or `all`), in inventory order.
    fn targets(&self, group: Option<&str>) -> Result<Vec<TargetInfo>, String> {
        let parents = self.parents();
        let members = match group {
            None | Some(ALL) => None,
            Some(group) if self.groups.contains_key(group) => Some(self.members(group)),
            Some(group) if self.groups.is_empty() => {
                return Err(format!(
                    "this inventory has no groups, so it has no group {group:?}"
                ));
            }
            Some(group) => {
                let known: Vec<&str> = self.groups.keys().map(String::as_str).collect();
                return Err(format!(
                    "no group {group:?} in this inventory (groups: {})",
                    known.join(", ")
                ));
            }
        };
        let direct = self.direct_groups();
        let mut targets = Vec::new();
        for host in &self.hosts {
            if members.as_ref().is_some_and(|m| !m.contains(&host.name)) {
                continue;
            }
            let own = direct.get(host.name.as_str()).cloned().unwrap_or_default();
            let groups = ancestors(&own, &parents);
            let mut vars = host.vars.clone();
            for group in &groups {
                vars.inherit(&self.groups[*group].vars);
            }
            if let Some(all) = self.groups.get(ALL) {
                vars.inherit(&all.vars);
            }
            let mut target = TargetInfo::new(&host.name);
            target.address = vars.address;
            target.port = vars.port;
            target.user = vars.user;
            let mut names: Vec<&str> = groups
                .into_iter()
                .filter(|g| ![ALL, UNGROUPED].contains(g))
                .collect();
            names.sort_unstable();
            if !names.is_empty() {
                target
                    .labels
                    .insert(GROUPS_LABEL.to_string(), names.join(","));
            }
            targets.push(target);
        }
        Ok(targets)
    }

    /// The hosts of `group` and of its descendants.
    fn members(&self, group: &str) -> BTreeSet<String> {
        let mut members = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([group]);
        while let Some(name) = queue.pop_front() {
            if !seen.insert(name) {
                continue;
            }
            if let Some(group) = self.groups.get(name) {
                members.extend(group.hosts.iter().cloned());
                queue.extend(group.children.iter().map(String::as_str));
            }
        }
        members
    }

    /// Each host's own groups, by name.
    fn direct_groups(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut direct: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, group) in &self.groups {
            for host in &group.hosts {
                direct.entry(host.as_str()).or_default().push(name);
            }
        }
        direct
    }

    /// Each group's parents, by name.
    fn parents(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut parents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, group) in &self.groups {
            for child in &group.children {
                parents.entry(child.as_str()).or_default().push(name);
            }
        }
        parents
    }
}

/// `groups`, then their parents, then theirs…, each once: the order in which their variables
/// apply (nearest first).
fn ancestors<'a>(groups: &[&'a str], parents: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<&'a str> {
    let mut order = Vec::new();
    let mut queue: VecDeque<&str> = groups.iter().copied().collect();
    while let Some(group) = queue.pop_front() {
        if order.contains(&group) {
            continue;
        }
        order.push(group);
        if let Some(up) = parents.get(group) {
            queue.extend(up.iter().copied());
        }
    }
    order
}

/// The inventory formats, told apart by content rather than by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `ansible-inventory --list` JSON.
    AnsibleJson,
    /// An Ansible INI inventory.
    AnsibleIni,
    /// An OpenSSH client configuration.
    SshConfig,
    /// One `[user@]host[:port]` per line.
    PlainList,
}

impl Format {
    /// Which format `text` is in: JSON when it is an object; INI when it has a `[section]` line
    /// or a host line with a `key=value`; an OpenSSH configuration when a line starts with
    /// `Host` or `Match`; else a plain list. A YAML inventory is refused with a way out.
    pub(crate) fn detect(text: &str) -> Result<Format, String> {
        if text.trim_start().starts_with('{') {
            return Ok(Format::AnsibleJson);
        }
        let significant: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(['#', ';']))
            .collect();
        if significant
            .first()
            .is_some_and(|l| *l == "---" || l.ends_with(':'))
        {
            return Err(
                "this looks like a YAML inventory, which ssh-inventory does not read; \
                        convert it with 'ansible-inventory -i FILE --list > hosts.json'"
                    .into(),
            );
        }
        let is_ini_line = |line: &&str| {
            line.strip_prefix('[')
                .and_then(|l| l.strip_suffix(']'))
                .is_some_and(|inner| {
                    inner.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                })
                || line.split_whitespace().nth(1).is_some_and(|word| {
                    word.split_once('=').is_some_and(|(key, _)| {
                        !key.is_empty()
                            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
                })
        };
        if significant.iter().any(is_ini_line) {
            return Ok(Format::AnsibleIni);
        }
        let is_ssh_line = |line: &&str| {
            let (keyword, rest) = ssh_config::split_keyword(line);
            ["host", "match"]
                .iter()
                .any(|k| keyword.eq_ignore_ascii_case(k))
                && !rest.is_empty()
        };
        if significant.iter().any(is_ssh_line) {
            return Ok(Format::SshConfig);
        }
        Ok(Format::PlainList)
    }

    fn parse(self, source: &Source) -> Result<Inventory, String> {
        match self {
            Format::AnsibleJson => json::parse(source),
            Format::AnsibleIni => ini::parse(source),
            Format::SshConfig => ssh_config::parse(source),
            Format::PlainList => plain::parse(source),
        }
    }
}

/// `FILE` or `FILE#GROUP`: a key that names an existing file is a file, whatever it holds.
fn split_key(key: &str) -> Result<(PathBuf, Option<&str>), String> {
    if key.is_empty() {
        return Err("the target key must be an inventory file (FILE or FILE#GROUP)".into());
    }
    if Path::new(key).is_file() {
        return Ok((PathBuf::from(key), None));
    }
    match key.rsplit_once('#') {
        Some((file, group)) if Path::new(file).is_file() && !group.is_empty() => {
            Ok((PathBuf::from(file), Some(group)))
        }
        _ => Err(format!(
            "inventory {:?} is not a file (the key is FILE or FILE#GROUP)",
            key.split('#').next().unwrap_or(key)
        )),
    }
}

/// `ssh-inventory`: the hosts of an inventory file.
pub(crate) struct SshInventory {
    services: Option<Services>,
}

impl SshInventory {
    pub(crate) fn component() -> Component {
        Component::named(
            "ssh-inventory",
            "The hosts of an inventory file: a host list, ssh config or Ansible inventory",
        )
        .description(
            "The key is an inventory file, optionally followed by #GROUP. Its format is told by \
             its content: a plain list (one [user@]host[:port] per line, # comments), an OpenSSH \
             client config (every Host alias without wildcards; the file is then given to ssh \
             with -F unless the ssh collection's ssh_config option names another), an Ansible \
             INI inventory (groups, :children, :vars, host ranges, ansible_host, ansible_port, \
             ansible_user) or the JSON of ansible-inventory --list. #GROUP keeps the hosts of \
             that group and of its children. Each target gets its address, port and user, and \
             its groups in the label `groups`. A bad line is an error naming the file and line.",
        )
    }

    pub(crate) fn new(services: Option<Services>) -> Self {
        SshInventory { services }
    }
}

impl Target for SshInventory {
    fn get(&self, key: &str, _incident: Option<&str>) -> Result<Vec<TargetInfo>> {
        let (file, group) = split_key(key).map_err(|why| anyhow!(why))?;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read inventory {}", file.display()))?;
        let name = file.display().to_string();
        let format = Format::detect(&text).map_err(|why| anyhow!("{name}: {why}"))?;
        let inventory = format
            .parse(&Source::new(&name, &text))
            .map_err(|why| anyhow!(why))?;
        if let Some(services) = &self.services {
            inventory.warnings.iter().for_each(|w| services.warn(w));
        }
        let mut targets = inventory
            .targets(group)
            .map_err(|why| anyhow!("{name}: {why}"))?;
        if targets.is_empty() {
            return Err(anyhow!(
                "{name}{}: no hosts",
                group.map(|g| format!("#{g}")).unwrap_or_default()
            ));
        }
        if format == Format::SshConfig {
            let config = std::path::absolute(&file)
                .with_context(|| format!("cannot resolve {}", file.display()))?;
            for target in &mut targets {
                target.labels.insert(
                    SSH_CONFIG_LABEL.to_string(),
                    config.to_string_lossy().into_owned(),
                );
            }
        }
        Ok(targets)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn formats_are_told_by_content() {
        let detect = |text| Format::detect(text).unwrap();
        assert_eq!(detect("  {\"all\": {}}"), Format::AnsibleJson);
        assert_eq!(detect("# fleet\n[web]\nweb1\n"), Format::AnsibleIni);
        assert_eq!(detect("web1 ansible_host=10.0.0.1\n"), Format::AnsibleIni);
        assert_eq!(
            detect("Host web1\n  HostName 10.0.0.1\n"),
            Format::SshConfig
        );
        assert_eq!(
            detect("host=web1\n  HostName = 10.0.0.1\n"),
            Format::SshConfig
        );
        assert_eq!(
            detect("web1\nroot@web2:2222\n[::1]:22\n"),
            Format::PlainList
        );
        assert!(
            Format::detect("all:\n  hosts:\n    web1:\n")
                .unwrap_err()
                .contains("ansible-inventory -i FILE --list")
        );
    }

    fn targets_of(text: &str, group: Option<&str>) -> Vec<TargetInfo> {
        let source = Source::new("inv", text);
        Format::detect(text)
            .unwrap()
            .parse(&source)
            .unwrap()
            .targets(group)
            .unwrap()
    }

    const FLEET: &str = "\
[web]
web1 ansible_host=192.0.2.1
web2 ansible_host=192.0.2.2 ansible_user=root
[db]
db1 ansible_host=192.0.2.3
[prod:children]
web
[prod:vars]
ansible_user=deploy
ansible_port=2200
[all:vars]
ansible_port=22
ansible_user=nobody
";

    #[test]
    fn variables_come_from_the_host_then_the_nearest_group() {
        let targets = targets_of(FLEET, None);
        let web1 = &targets[0];
        assert_eq!(web1.id, "web1");
        assert_eq!(web1.address.as_deref(), Some("192.0.2.1"));
        assert_eq!(web1.port, Some(2200));
        assert_eq!(web1.user.as_deref(), Some("deploy"));
        assert_eq!(web1.labels[GROUPS_LABEL], "prod,web");
        assert_eq!(targets[1].user.as_deref(), Some("root"));
        let db1 = &targets[2];
        assert_eq!((db1.port, db1.user.as_deref()), (Some(22), Some("nobody")));
        assert_eq!(db1.labels[GROUPS_LABEL], "db");
    }

    #[test]
    fn a_group_selects_its_hosts_and_its_childrens() {
        let ids = |group| -> Vec<String> {
            targets_of(FLEET, Some(group))
                .into_iter()
                .map(|t| t.id)
                .collect()
        };
        assert_eq!(ids("prod"), ["web1", "web2"]);
        assert_eq!(ids("db"), ["db1"]);
        assert_eq!(ids("all"), ["web1", "web2", "db1"]);
        let source = Source::new("inv", FLEET);
        let error = ini::parse(&source)
            .unwrap()
            .targets(Some("nope"))
            .unwrap_err();
        assert_eq!(
            error,
            "no group \"nope\" in this inventory (groups: all, db, prod, web)"
        );
        let plain = plain::parse(&Source::new("list", "a\nb\n")).unwrap();
        assert!(
            plain
                .targets(Some("web"))
                .unwrap_err()
                .contains("no groups")
        );
    }

    #[test]
    fn child_cycles_end() {
        let targets = targets_of("[a]\nh1\n[a:children]\nb\n[b:children]\na\n", Some("b"));
        assert_eq!(targets.len(), 1);
        assert_eq!(targets[0].labels[GROUPS_LABEL], "a,b");
    }

    #[test]
    fn the_component_reads_files_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("hosts.ini");
        fs::write(&ini, FLEET).unwrap();
        let inventory = SshInventory::new(None);
        let key = format!("{}#db", ini.display());
        let targets = inventory.get(&key, None).unwrap();
        assert_eq!(targets.len(), 1);

        let config = dir.path().join("fleet.conf");
        fs::write(&config, "Host web-a web-b\n  User admin\n").unwrap();
        let targets = inventory.get(config.to_str().unwrap(), None).unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[0].labels[SSH_CONFIG_LABEL],
            config.to_str().unwrap()
        );
        assert!(targets[0].address.is_none());

        let missing = dir.path().join("missing.ini");
        let error = inventory.get(missing.to_str().unwrap(), None).unwrap_err();
        assert!(error.to_string().contains("is not a file"), "{error}");
        let empty = dir.path().join("empty");
        fs::write(&empty, "# nobody\n").unwrap();
        let error = inventory.get(empty.to_str().unwrap(), None).unwrap_err();
        assert!(error.to_string().ends_with("empty: no hosts"), "{error}");
        let bad = dir.path().join("bad.txt");
        fs::write(&bad, "web1\nweb 2\n").unwrap();
        let error = inventory.get(bad.to_str().unwrap(), None).unwrap_err();
        assert!(
            error.to_string().contains("bad.txt:2: expected one"),
            "{error}"
        );
    }
}
