//! `[user@]host[:port]`, as plain host lists write a host (and Ansible INI a host with a port).
//!
//! Everything here ends up on ssh's command line as a separate argument, never through a shell;
//! the checks keep a name ssh would read as an option (`-oProxyCommand=…`) or a value no host can
//! have (spaces, control characters) out of the targets, so a hostile inventory line is an error
//! rather than a surprise.

/// A host as written in an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) user: Option<String>,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl Address {
    /// The target id for this address: the host, with `:port` when a port is given (two entries
    /// for one machine on two ports are two targets).
    pub(crate) fn id(&self) -> String {
        match self.port {
            Some(port) if self.host.contains(':') => format!("[{}]:{port}", self.host),
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

/// Parse `[user@]host[:port]`; an IPv6 address with a port is written `[addr]:port`.
pub(crate) fn parse(text: &str) -> Result<Address, String> {
    let (user, rest) = match text.rsplit_once('@') {
        Some((user, rest)) => (Some(check_user(user)?), rest),
        None => (None, text),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(format!("{text:?} opens '[' without closing it"));
        };
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(parse_port(port)?)),
                None => return Err(format!("unexpected {after:?} after ']' in {text:?}")),
            },
        }
    } else {
        match rest.split_once(':') {
            // More than one colon and no brackets: an IPv6 address without a port.
            Some((_, after)) if after.contains(':') => (rest, None),
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (rest, None),
        }
    };
    Ok(Address {
        user,
        host: check_host(host)?.to_string(),
        port,
    })
}

/// A port number, 1 to 65535.
pub(crate) fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port @ 1..) => Ok(port),
        _ => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

/// A host name or address ssh can be given as its destination.
pub(crate) fn check_host(host: &str) -> Result<&str, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || ".-_:%".contains(c);
    if host.is_empty() {
        Err("empty host name".into())
    } else if host.starts_with('-') {
        Err(format!(
            "host {host:?} starts with '-', which ssh would read as an option"
        ))
    } else if !host.chars().all(allowed) {
        Err(format!(
            "host {host:?} has characters no host name has (letters, digits, '.', '-', '_', ':' \
             and '%' only)"
        ))
    } else {
        Ok(host)
    }
}

/// A login name: no spaces or control characters, not starting with `-` (an `@` is allowed, as in
/// directory accounts such as `j@corp`).
pub(crate) fn check_user(user: &str) -> Result<String, String> {
    if user.is_empty() {
        Err("empty user name before '@'".into())
    } else if user.starts_with('-') {
        Err(format!("user {user:?} starts with '-'"))
    } else if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err(format!("user {user:?} has spaces or control characters"))
    } else {
        Ok(user.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(user: Option<&str>, host: &str, port: Option<u16>) -> Address {
        Address {
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
        }
    }

    #[test]
    fn every_form_parses() {
        assert_eq!(parse("web-1").unwrap(), address(None, "web-1", None));
        assert_eq!(
            parse("admin@10.0.0.5:2222").unwrap(),
            address(Some("admin"), "10.0.0.5", Some(2222))
        );
        assert_eq!(parse("::1").unwrap(), address(None, "::1", None));
        assert_eq!(
            parse("root@[fe80::1%eth0]:22").unwrap(),
            address(Some("root"), "fe80::1%eth0", Some(22))
        );
        assert_eq!(parse("[::1]").unwrap(), address(None, "::1", None));
        assert_eq!(
            parse("j@corp@db.example.com").unwrap(),
            address(Some("j@corp"), "db.example.com", None)
        );
    }

    #[test]
    fn ids_name_the_port_only_when_given() {
        assert_eq!(parse("a@web:2201").unwrap().id(), "web:2201");
        assert_eq!(parse("web").unwrap().id(), "web");
        assert_eq!(parse("[::1]:22").unwrap().id(), "[::1]:22");
    }

    #[test]
    fn hostile_or_broken_entries_are_refused() {
        for bad in [
            "-oProxyCommand=touch /tmp/x",
            "web:0",
            "web:65536",
            "web:ssh",
            "we b",
            "web;reboot",
            "@web",
            "-x@web",
            "[::1",
            "[::1]x",
            "",
            "user@",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
