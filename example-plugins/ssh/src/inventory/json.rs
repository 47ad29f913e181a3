//! The JSON of `ansible-inventory --list` (and of dynamic inventory scripts):
//!
//! ```json
//! {"_meta": {"hostvars": {"web1": {"ansible_host": "192.0.2.4", "ansible_port": 2222}}},
//!  "all": {"children": ["ungrouped", "web"]},
//!  "web": {"hosts": ["web1"], "vars": {"ansible_user": "deploy"}, "children": []}}
//! ```
//!
//! A group may also be a bare list of host names. Host variables come from `_meta.hostvars`
//! (where `ansible-inventory` has already merged the group variables in), group variables from
//! each group's `vars`. JSON has no lines worth naming for a structural fault, so those errors
//! name the JSON path instead; a syntax error names its line and column.

use serde_json::{Map, Value};

use super::{Host, Inventory, Source, UNGROUPED, Vars};
use crate::inventory::address;

pub(crate) fn parse(source: &Source) -> Result<Inventory, String> {
    let document: Value = serde_json::from_str(source.text).map_err(|e| {
        source.error(
            e.line(),
            format!("column {}: not valid JSON: {e}", e.column()),
        )
    })?;
    let Value::Object(groups) = document else {
        return Err(source.whole("the JSON is not an object of groups"));
    };
    let fail = |path: &str, why: String| source.whole(&format!("{path}: {why}"));
    let hostvars = match groups.get("_meta").and_then(|meta| meta.get("hostvars")) {
        None => Map::new(),
        Some(Value::Object(hostvars)) => hostvars.clone(),
        Some(_) => return Err(fail("_meta.hostvars", "not an object".into())),
    };

    let mut inventory = Inventory::default();
    let add = |inventory: &mut Inventory, name: &str, path: &str| -> Result<(), String> {
        address::check_host(name).map_err(|why| fail(path, why))?;
        let vars = match hostvars.get(name) {
            Some(Value::Object(vars)) => {
                read_vars(vars).map_err(|why| fail(&format!("_meta.hostvars.{name}"), why))?
            }
            Some(_) => {
                return Err(fail(
                    &format!("_meta.hostvars.{name}"),
                    "not an object".into(),
                ));
            }
            None => Vars::default(),
        };
        inventory.add_host(Host {
            name: name.to_string(),
            vars,
            line: 0,
        });
        Ok(())
    };
    for (group, body) in groups.iter().filter(|(name, _)| *name != "_meta") {
        let (hosts, children, vars) = match body {
            Value::Array(hosts) => (hosts.as_slice(), &[][..], None),
            Value::Object(body) => (
                list(body, "hosts")
                    .map_err(|()| fail(&format!("{group}.hosts"), NOT_A_LIST.into()))?,
                list(body, "children")
                    .map_err(|()| fail(&format!("{group}.children"), NOT_A_LIST.into()))?,
                body.get("vars"),
            ),
            _ => {
                return Err(fail(
                    group,
                    "a group is a list of hosts or an object".into(),
                ));
            }
        };
        inventory.group_mut(group);
        for (index, name) in hosts.iter().enumerate() {
            let path = format!("{group}.hosts[{index}]");
            let name = name
                .as_str()
                .ok_or_else(|| fail(&path, "not a host name".into()))?;
            add(&mut inventory, name, &path)?;
            inventory.group_mut(group).hosts.push(name.to_string());
        }
        for (index, child) in children.iter().enumerate() {
            let path = format!("{group}.children[{index}]");
            let child = child
                .as_str()
                .ok_or_else(|| fail(&path, "not a group name".into()))?;
            inventory.group_mut(child);
            inventory.group_mut(group).children.push(child.to_string());
        }
        match vars {
            None => {}
            Some(Value::Object(vars)) => {
                inventory.group_mut(group).vars =
                    read_vars(vars).map_err(|why| fail(&format!("{group}.vars"), why))?;
            }
            Some(_) => return Err(fail(&format!("{group}.vars"), "not an object".into())),
        }
    }
    // Hosts with variables but in no group are still hosts, as Ansible sees them.
    for name in hostvars.keys() {
        if inventory.host(name).is_none() {
            add(&mut inventory, name, &format!("_meta.hostvars.{name}"))?;
            inventory.group_mut(UNGROUPED).hosts.push(name.clone());
        }
    }
    Ok(inventory)
}

const NOT_A_LIST: &str = "not a list of names";

/// The list under `key` (empty when there is none), or `Err` when it is not a list.
fn list<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ()> {
    match body.get(key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(()),
    }
}

/// The variables that say how to reach a host: strings, and a port as a number or a string.
fn read_vars(vars: &Map<String, Value>) -> Result<Vars, String> {
    let text = |keys: [&str; 2]| -> Result<Option<String>, String> {
        match keys.iter().find_map(|key| vars.get(*key).map(|v| (key, v))) {
            None => Ok(None),
            Some((_, Value::String(text))) => Ok(Some(text.clone())),
            Some((_, Value::Number(number))) => Ok(Some(number.to_string())),
            Some((key, other)) => Err(format!("{key} is {other}, not a string")),
        }
    };
    Ok(Vars {
        address: text(["ansible_host", "ansible_ssh_host"])?
            .map(|host| address::check_host(&host).map(str::to_string))
            .transpose()?,
        port: text(["ansible_port", "ansible_ssh_port"])?
            .map(|port| address::parse_port(&port))
            .transpose()
            .map_err(|why| format!("ansible_port: {why}"))?,
        user: text(["ansible_user", "ansible_ssh_user"])?
            .map(|user| address::check_user(&user))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Result<Inventory, String> {
        parse(&Source::new("hosts.json", text))
    }

    #[test]
    fn ansible_inventory_list_output() {
        let inventory = inventory(
            r#"{
              "_meta": {"hostvars": {
                "web1": {"ansible_host": "192.0.2.4", "ansible_port": 2222, "role": "x"},
                "db1": {"ansible_user": "dba", "ansible_port": "5522"},
                "lonely": {}
              }},
              "all": {"children": ["ungrouped", "web", "db"]},
              "web": {"hosts": ["web1", "web2"], "vars": {"ansible_user": "deploy"}},
              "db": ["db1"],
              "ungrouped": {}
            }"#,
        )
        .unwrap();
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web1", "web2", "db1", "lonely"]);
        let web1 = inventory.host("web1").unwrap();
        assert_eq!(web1.vars.address.as_deref(), Some("192.0.2.4"));
        assert_eq!(web1.vars.port, Some(2222));
        assert_eq!(inventory.host("db1").unwrap().vars.port, Some(5522));
        assert_eq!(inventory.groups["all"].children, ["ungrouped", "web", "db"]);
        assert_eq!(inventory.groups["web"].vars.user.as_deref(), Some("deploy"));
        assert_eq!(inventory.groups[UNGROUPED].hosts, ["lonely"]);
    }

    #[test]
    fn faults_name_the_line_or_the_path() {
        let error = |text| inventory(text).unwrap_err();
        assert!(
            error("{\n  \"web\": [\"a\",]\n}").starts_with("hosts.json:2: column"),
            "{}",
            error("{\n  \"web\": [\"a\",]\n}")
        );
        assert_eq!(
            error(r#"{"web": {"hosts": "web1"}}"#),
            "hosts.json: web.hosts: not a list of names"
        );
        assert_eq!(
            error(r#"{"web": 3}"#),
            "hosts.json: web: a group is a list of hosts or an object"
        );
        assert_eq!(
            error(r#"{"_meta": {"hostvars": {"a": {"ansible_port": 0}}}, "web": ["a"]}"#),
            "hosts.json: _meta.hostvars.a: ansible_port: port \"0\" is not a number from 1 to 65535"
        );
        assert!(error(r#"{"web": ["-oProxyCommand=x"]}"#).starts_with("hosts.json: web.hosts[0]"));
        assert_eq!(
            error("[1]"),
            "hosts.json: the JSON is not an object of groups"
        );
    }
}
