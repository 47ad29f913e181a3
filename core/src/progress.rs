//! Progress as the core reports it, drawn by whoever embeds the core: the `diffy` binary draws
//! bars on a terminal, tests and the plugin harness draw nothing. Keeping the drawing out of the
//! core keeps terminal libraries out of every plugin's test dependencies.

/// One progress indicator.
pub trait Progress: Send + Sync {
    /// Start (or restart) with `total` steps, labelled `message`.
    fn start(&self, total: u64, message: &str);
    /// Advance by `steps`.
    fn advance(&self, steps: u64);
    /// Finish and clear.
    fn finish(&self);
}

/// Makes progress indicators: one for the host's own work, one per component that asks.
pub trait ProgressDisplay: Send + Sync {
    /// A new indicator, not yet started.
    fn indicator(&self) -> Box<dyn Progress>;
}

/// Shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _total: u64, _message: &str) {}
    fn advance(&self, _steps: u64) {}
    fn finish(&self) {}
}

impl ProgressDisplay for Silent {
    fn indicator(&self) -> Box<dyn Progress> {
        Box::new(Silent)
    }
}
