//! The Payload components: `local-command` (a Linux triage set, or the user's own commands),
//! `osquery` (osquery queries whose rows are JSON objects) and `evidence` (one command per file
//! that an evidence directory holds).

pub(crate) mod evidence;
pub(crate) mod local_command;
pub(crate) mod osquery;
