//! Progress bars on the terminal: the core's [`ProgressDisplay`], drawn with `indicatif`, which
//! draws nothing when stderr is not a terminal.

use std::sync::Mutex;

use diffy_core::progress::{Progress, ProgressDisplay};
use indicatif::{ProgressBar, ProgressStyle};

use crate::printable::printable;

/// Draws each indicator as a bar on stderr.
pub struct TerminalProgress;

impl ProgressDisplay for TerminalProgress {
    fn indicator(&self) -> Box<dyn Progress> {
        Box::new(Bar(Mutex::new(None)))
    }
}

/// One bar, drawn from `start` to `finish`.
struct Bar(Mutex<Option<ProgressBar>>);

impl Progress for Bar {
    fn start(&self, total: u64, message: &str) {
        let bar = ProgressBar::new(total)
            .with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
                    .expect("valid template")
                    .progress_chars("=> "),
            )
            // A plugin names what progresses.
            .with_message(printable(message).into_owned());
        if let Ok(mut slot) = self.0.lock()
            && let Some(old) = slot.replace(bar)
        {
            old.finish_and_clear();
        }
    }

    fn advance(&self, steps: u64) {
        if let Ok(slot) = self.0.lock()
            && let Some(bar) = slot.as_ref()
        {
            bar.inc(steps);
        }
    }

    fn finish(&self) {
        if let Ok(mut slot) = self.0.lock()
            && let Some(bar) = slot.take()
        {
            bar.finish_and_clear();
        }
    }
}
