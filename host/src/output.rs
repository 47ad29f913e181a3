//! Standard output, written through one place so that a closed pipe (`diffy plugin list | head -1`)
//! ends the command quietly instead of panicking, and every other write failure is an error.

use std::io::Write;

use diffy_core::{Error, Result};

/// Write `text` to stdout and flush it.
pub fn write(text: std::fmt::Arguments<'_>) -> Result<()> {
    crate::signals::wait_if_stopping();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Io {
            context: "cannot write to standard output".into(),
            source,
        })
}

/// `print!` through [`write`]; the enclosing function returns its error.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))?
    };
}

/// `println!` through [`write`]; the enclosing function returns its error.
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))?
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

pub(crate) use {out, outln};
