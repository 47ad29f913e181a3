//! The services the host offers every activated component — logging into the host's `tracing`
//! output, the plugin's data directory, a progress indicator — answered by
//! name with JSON documents, like component methods in the other direction
//! ([`diffy_plugin_api::protocol::services`]). A service this host does not know is
//! [`CallFailure::NoSuchMethod`], which a newer plugin takes as "degrade".

use std::path::PathBuf;
use std::sync::Arc;

use diffy_plugin_api::protocol::services::{self, LogLevel};
use serde::de::DeserializeOwned;

use crate::component::CallFailure;
use crate::progress::{Progress, ProgressDisplay, Silent};

/// Answers a component's host-service calls: the host's own services, or an isolated plugin's
/// runner forwarding them to the host.
pub trait ServiceProvider: Send + Sync + 'static {
    /// Answer one service call with its JSON document, as [`HostServices::call`] does.
    fn call(&self, service: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure>;
}

impl ServiceProvider for HostServices {
    fn call(&self, service: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        HostServices::call(self, service, input)
    }
}

/// The services of one activated component.
#[derive(Clone)]
pub struct HostServices {
    plugin: String,
    data_dir: PathBuf,
    progress: Arc<dyn Progress>,
}

impl HostServices {
    /// Services for `plugin`, whose state lives in `data_dir`, showing no progress.
    pub fn new(plugin: &str, data_dir: PathBuf) -> Self {
        HostServices::with_progress(plugin, data_dir, &Silent)
    }

    /// Services for `plugin` whose progress `display` draws.
    pub fn with_progress(plugin: &str, data_dir: PathBuf, display: &dyn ProgressDisplay) -> Self {
        HostServices {
            plugin: plugin.to_string(),
            data_dir,
            progress: display.indicator().into(),
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
                self.progress.start(start.total, &start.message);
                Ok(Vec::new())
            }
            services::PROGRESS_ADVANCE => {
                let advance: services::ProgressAdvance = decode(service, input)?;
                self.progress.advance(advance.steps);
                Ok(Vec::new())
            }
            services::PROGRESS_FINISH => {
                self.progress.finish();
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
}

fn decode<T: DeserializeOwned>(service: &str, input: &[u8]) -> Result<T, CallFailure> {
    serde_json::from_slice(input).map_err(|e| {
        CallFailure::Error(format!(
            "malformed document sent to host service {service}: {e}"
        ))
    })
}
