//! A plain host list: one `[user@]host[:port]` per line; `#` starts a comment, on a line of its
//! own or after the entry.

use super::address;
use super::{Host, Inventory, Source, Vars};

pub(crate) fn parse(source: &Source) -> Result<Inventory, String> {
    let mut inventory = Inventory::default();
    for (number, line) in source.lines() {
        let entry = line.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        if entry.split_whitespace().nth(1).is_some() {
            return Err(source.error(
                number,
                format!("expected one [user@]host[:port] per line, found {entry:?}"),
            ));
        }
        let address = address::parse(entry).map_err(|why| source.error(number, why))?;
        let host = Host {
            name: address.id(),
            vars: Vars {
                address: Some(address.host),
                port: address.port,
                user: address.user,
            },
            line: number,
        };
        if let Some(first) = inventory.host(&host.name) {
            return Err(source.error(
                number,
                format!(
                    "{} is listed twice (first on line {})",
                    host.name, first.line
                ),
            ));
        }
        inventory.add_host(host);
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Result<Inventory, String> {
        parse(&Source::new("hosts.txt", text))
    }

    #[test]
    fn entries_comments_and_blank_lines() {
        let inventory =
            inventory("# the fleet\nweb-1\n\n  admin@db:2222   # primary\n127.0.0.1:2201\n")
                .unwrap();
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web-1", "db:2222", "127.0.0.1:2201"]);
        let db = &inventory.hosts[1];
        assert_eq!(db.vars.address.as_deref(), Some("db"));
        assert_eq!(db.vars.port, Some(2222));
        assert_eq!(db.vars.user.as_deref(), Some("admin"));
        assert_eq!(db.line, 4);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        assert_eq!(
            inventory("web-1\nweb-2 web-3\n").unwrap_err(),
            "hosts.txt:2: expected one [user@]host[:port] per line, found \"web-2 web-3\""
        );
        assert_eq!(
            inventory("a\nb\na\n").unwrap_err(),
            "hosts.txt:3: a is listed twice (first on line 1)"
        );
        assert!(
            inventory("ok\n-oProxyCommand=x\n")
                .unwrap_err()
                .starts_with("hosts.txt:2: host \"-oProxyCommand=x\" starts with '-'")
        );
    }
}
