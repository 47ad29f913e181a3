//! The services the host offers every activated component — logging into the host's `tracing`
//! output, the plugin's data directory, a progress bar drawn only on a terminal — answered by
//! name with JSON documents, like component methods in the other direction
//! ([`diffy_plugin_api::protocol::services`]). A service this host does not know is
//! [`CallFailure::NoSuchMethod`], which a newer plugin takes as "degrade".

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use diffy_plugin_api::protocol::services::{self, LogLevel};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;

use crate::component::CallFailure;

/// The services of one activated component.
#[derive(Clone)]
pub struct HostServices {
    plugin: String,
    data_dir: PathBuf,
    progress: Arc<Mutex<Option<ProgressBar>>>,
}

impl HostServices {
    /// Services for `plugin`, whose state lives in `data_dir`.
    pub fn new(plugin: &str, data_dir: PathBuf) -> Self {
        HostServices {
            plugin: plugin.to_string(),
            data_dir,
            progress: Arc::new(Mutex::new(None)),
        }
    }

    /// Answer one service call.
    pub fn call(&self, service: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        match service {
            services::LOG => {
                let log: services::Log = decode(service, input)?;
                self.log(log.level, &log.message);
                Ok(Vec::new())
            }
            services::DATA_DIR => {
                let dir = services::DataDir {
                    path: self.data_dir.to_string_lossy().into_owned(),
                };
                Ok(serde_json::to_vec(&dir).expect("documents serialise"))
            }
            services::PROGRESS_START => {
                let start: services::ProgressStart = decode(service, input)?;
                self.progress_start(start.total, start.message);
                Ok(Vec::new())
            }
            services::PROGRESS_ADVANCE => {
                let advance: services::ProgressAdvance = decode(service, input)?;
                if let Ok(slot) = self.progress.lock()
                    && let Some(bar) = slot.as_ref()
                {
                    bar.inc(advance.steps);
                }
                Ok(Vec::new())
            }
            services::PROGRESS_FINISH => {
                if let Ok(mut slot) = self.progress.lock()
                    && let Some(bar) = slot.take()
                {
                    bar.finish_and_clear();
                }
                Ok(Vec::new())
            }
            _ => Err(CallFailure::NoSuchMethod(format!(
                "this diffy offers no host service {service:?}"
            ))),
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            LogLevel::Info | LogLevel::Unknown => tracing::info!(plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn progress_start(&self, total: u64, message: String) {
        let bar = ProgressBar::new(total)
            .with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}")
                    .expect("valid template")
                    .progress_chars("=> "),
            )
            .with_message(message);
        if let Ok(mut slot) = self.progress.lock() {
            *slot = Some(bar);
        }
    }
}

fn decode<T: DeserializeOwned>(service: &str, input: &[u8]) -> Result<T, CallFailure> {
    serde_json::from_slice(input).map_err(|e| {
        CallFailure::Error(format!(
            "malformed document sent to host service {service}: {e}"
        ))
    })
}
