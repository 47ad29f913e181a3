//! A run's records written out to disk while the run goes on. Each append hands the files it
//! wrote to a thread of the run that asks the kernel to write them out (`fdatasync`), so finishing
//! the run — which must not say it is complete before every record is on disk — waits for the
//! last batch only, not for the whole run's dirty pages at once (a tenth of a second of a
//! half-second analysis of 1,000 hosts when it did).

use std::fs::File;
use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// The thread that writes one run's files out.
pub(crate) struct Writeback {
    files: Option<mpsc::Sender<File>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Writeback {
    /// A writeback thread for run `run`; none when no thread can be started (then everything
    /// is written out when the run finishes).
    pub(crate) fn start(run: &str) -> Self {
        let (files, queue) = mpsc::channel::<File>();
        let thread = std::thread::Builder::new()
            .name(format!("writeback {run}"))
            .spawn(move || {
                // The first failure is kept: the kernel reports a failed write-out only once, so
                // a later `fsync` of the same file could succeed although data was lost.
                let mut outcome = Ok(());
                for file in queue {
                    let synced = file.sync_data();
                    if outcome.is_ok() {
                        outcome = synced;
                    }
                }
                outcome
            })
            .ok();
        Writeback {
            files: thread.is_some().then_some(files),
            thread,
        }
    }

    /// A writeback that has no thread: what is pushed is left for the run's end.
    pub(crate) fn idle() -> Self {
        Writeback {
            files: None,
            thread: None,
        }
    }

    /// Have `file`'s written data put on disk soon.
    pub(crate) fn push(&self, file: &File) {
        if let (Some(files), Ok(file)) = (&self.files, file.try_clone()) {
            let _ = files.send(file);
        }
    }

    /// Wait until everything pushed is on disk; the first failure to put it there.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        drop(self.files.take());
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(io::Error::other("the writeback thread panicked")),
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        // A run dropped unfinished: its thread ends once the queue is empty.
        drop(self.files.take());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn pushed_files_are_written_out_before_finish_returns() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("a")).unwrap();
        let writeback = Writeback::start("r1");
        file.write_all(b"record\n").unwrap();
        writeback.push(&file);
        writeback.push(&file);
        writeback.finish().unwrap();
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"record\n");
    }
}
