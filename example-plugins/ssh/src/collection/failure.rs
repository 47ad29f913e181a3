//! Why a host or a command could not be collected, told from ssh's exit status and stderr.
//!
//! ssh exits 255 for its own failures and prints one of a few well-known messages; OpenSSH does
//! not translate them (and the collection runs ssh with `LC_ALL=C` regardless). Every class is
//! one line that starts with its name, which goes first into the record's `error` and `stderr`.

use std::fmt;

/// A failure class, with what ssh (or the collection) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Nothing answered: refused, no route, no such name, or the connection dropped.
    Unreachable(String),
    /// No answer in time: connecting, the SSH handshake, or a command.
    TimedOut(String),
    /// The server refused every credential offered.
    AuthenticationRefused(String),
    /// `known_hosts` has no key for the host (strict checking never adds one).
    HostKeyUnknown(String),
    /// `known_hosts` has another key for the host: a reinstalled host or a machine in the middle.
    HostKeyChanged(String),
    /// ssh failed in a way none of the above describes (a bad `ssh_config`, a missing binary).
    Ssh(String),
    /// The target cannot be handed to ssh (a host name ssh would read as an option).
    Invalid(String),
}

impl Failure {
    /// Classify a failed connection from ssh's stderr.
    pub(crate) fn from_ssh_stderr(stderr: &str) -> Failure {
        let said = summary(stderr);
        let has = |needle: &str| stderr.contains(needle);
        // The changed-key banner also says "Host key verification failed", so it goes first.
        if has("REMOTE HOST IDENTIFICATION HAS CHANGED") || has("POSSIBLE DNS SPOOFING") {
            Failure::HostKeyChanged(said)
        } else if has("Host key verification failed") || has("host key is known for") {
            Failure::HostKeyUnknown(said)
        } else if has("Permission denied") || has("Too many authentication failures") {
            Failure::AuthenticationRefused(said)
        } else if has("timed out") || has("Timeout, server") {
            Failure::TimedOut(said)
        } else if [
            "Connection refused",
            "No route to host",
            "Network is unreachable",
            "Could not resolve hostname",
            "Name or service not known",
            "Connection reset",
            "Connection closed",
            "closed by remote host",
            "Broken pipe",
            "kex_exchange_identification",
        ]
        .iter()
        .any(|needle| has(needle))
        {
            Failure::Unreachable(said)
        } else {
            Failure::Ssh(said)
        }
    }

    /// The class, as the first words of the line.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Failure::Unreachable(_) => "unreachable",
            Failure::TimedOut(_) => "timed out",
            Failure::AuthenticationRefused(_) => "authentication refused",
            Failure::HostKeyUnknown(_) => "host key unknown",
            Failure::HostKeyChanged(_) => "host key changed",
            Failure::Ssh(_) => "ssh failed",
            Failure::Invalid(_) => "invalid target",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Failure::Unreachable(detail)
            | Failure::TimedOut(detail)
            | Failure::AuthenticationRefused(detail)
            | Failure::HostKeyUnknown(detail)
            | Failure::HostKeyChanged(detail)
            | Failure::Ssh(detail)
            | Failure::Invalid(detail) => detail,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.detail() {
            "" => f.write_str(self.class()),
            detail => write!(f, "{}: {detail}", self.class()),
        }
    }
}

/// The lines of ssh's stderr that say what happened, joined into one: the `@` signs framing a
/// changed key's warning, and blank lines, are left out.
fn summary(stderr: &str) -> String {
    const MAX_CHARS: usize = 300;
    let lines: Vec<&str> = stderr
        .lines()
        .map(|line| line.trim_matches(|c: char| c == '@' || c.is_whitespace()))
        .filter(|line| !line.is_empty())
        .collect();
    // A changed key's warning runs to twenty lines; its first and last say it all.
    let picked: Vec<&str> = if lines.len() > 3 {
        vec![lines[0], lines[lines.len() - 1]]
    } else {
        lines
    };
    let mut text = picked.join("; ");
    if let Some((cut, _)) = text.char_indices().nth(MAX_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(stderr: &str) -> &'static str {
        Failure::from_ssh_stderr(stderr).class()
    }

    /// The messages of OpenSSH 9.2, as it prints them.
    #[test]
    fn every_class_from_what_ssh_says() {
        assert_eq!(
            class_of("ssh: connect to host 127.0.0.1 port 9: Connection refused\r\n"),
            "unreachable"
        );
        assert_eq!(
            class_of("ssh: connect to host 10.9.9.9 port 22: No route to host\r\n"),
            "unreachable"
        );
        assert_eq!(
            class_of("ssh: Could not resolve hostname nohost: Name or service not known\r\n"),
            "unreachable"
        );
        assert_eq!(
            class_of("ssh: connect to host 10.9.9.9 port 22: Connection timed out\r\n"),
            "timed out"
        );
        assert_eq!(
            class_of(
                "Connection timed out during banner exchange\r\nConnection to 127.0.0.1 port 4 timed out\r\n"
            ),
            "timed out"
        );
        assert_eq!(
            class_of("root@127.0.0.1: Permission denied (publickey).\r\n"),
            "authentication refused"
        );
        assert_eq!(
            class_of(
                "No ED25519 host key is known for [127.0.0.1]:2201 and you have requested strict checking.\r\nHost key verification failed.\r\n"
            ),
            "host key unknown"
        );
        let changed = "\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r
Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r
The fingerprint for the ED25519 key sent by the remote host is\r
SHA256:du5dMl0PrVtAvvSIgXrGvOiyneH/iJq1LXx/cKSacJc.\r
Host key for [127.0.0.1]:2201 has changed and you have requested strict checking.\r
Host key verification failed.\r
";
        let failure = Failure::from_ssh_stderr(changed);
        assert_eq!(failure.class(), "host key changed");
        assert_eq!(
            failure.to_string(),
            "host key changed: WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!; Host key \
             verification failed."
        );
        assert_eq!(
            class_of("/tmp/cfg line 3: Bad configuration option: hostnam\r\n"),
            "ssh failed"
        );
    }

    #[test]
    fn lines_are_one_line_with_the_class_first() {
        let failure =
            Failure::from_ssh_stderr("\r\nssh: connect to host a port 1: Connection refused\r\n");
        assert_eq!(
            failure.to_string(),
            "unreachable: ssh: connect to host a port 1: Connection refused"
        );
        assert_eq!(Failure::TimedOut(String::new()).to_string(), "timed out");
        let long = Failure::from_ssh_stderr(&"x".repeat(1000));
        assert!(long.to_string().chars().count() < 320);
    }
}
