//! The Payload components: `local-command` (a Linux triage set, or the user's own commands) and
//! `osquery` (osquery queries whose rows are JSON objects).

pub(crate) mod local_command;
pub(crate) mod osquery;
