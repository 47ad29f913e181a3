//! Errors as values, each with the exit code it leads to.
//!
//! Exit codes: 0 success; 1 the command's own failure (an I/O failure, differences found with
//! `--fail-on-diff`); 2 a usage error, a bad registry, or a plugin that cannot be used.

use std::io;
use std::path::Path;

/// Everything that can go wrong in diffy's core. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// `plugins.json` is malformed or inconsistent.
    #[error("{0}")]
    Registry(String),
    /// A plugin could not be found, loaded, activated or run.
    #[error("{0}")]
    Plugin(String),
    /// The command itself failed.
    #[error("{0}")]
    Failure(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The result type of diffy's core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code this error leads to.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Registry(_) | Error::Plugin(_) => 2,
            Error::Failure(_) | Error::Io { .. } => 1,
        }
    }

    /// Whether this is a write to a pipe whose reader has gone (`diffy … | head`).
    pub fn is_closed_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// An I/O error while doing `what` to `path`.
    pub fn io(what: &str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            context: format!("cannot {what} {}", path.display()),
            source,
        }
    }
}

/// Attach a file context to I/O results.
pub trait IoContext<T> {
    /// Map an I/O error into [`Error::Io`] saying what was being done to which file.
    fn with_path(self, what: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn with_path(self, what: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(what, path, e))
    }
}
