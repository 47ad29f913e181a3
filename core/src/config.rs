//! Where diffy keeps its files, and which plugin sources are enabled.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::isolation::Isolation;
use crate::known::{KnownPlugin, Source};

/// The plugins that ship with the binary, like InSpec's core plugins.
pub const BUNDLED_PLUGINS: &[&str] = &["diffy-local", "diffy-ssh"];

/// Built-in commands, which no plugin namespace may shadow.
pub const BUILT_IN_COMMANDS: &[&str] = &["plugin", "new", "show", "help", "completions"];

/// The version of this `diffy`, checked against each plugin's host requirement.
pub const HOST_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Resolved locations and switches for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration directory (`--config-dir`, `$DIFFY_CONFIG_DIR`, or `~/.diffy`).
    pub config_dir: PathBuf,
    /// Where bundled plugin libraries are looked up, if anywhere.
    pub bundled_dir: Option<PathBuf>,
    /// Whether plugins from `plugins.json` are used.
    pub user_plugins: bool,
    /// Whether bundled plugins are used.
    pub bundled_plugins: bool,
    /// Which plugins run isolated this run, beyond those registered so (`--isolate-plugins`).
    pub isolate: IsolateOverride,
    /// The `diffy` executable that serves isolated plugins: this one, unless the core is
    /// embedded in another program (a benchmark, a test harness), which names the built `diffy`.
    pub runner: PathBuf,
}

/// `--isolate-plugins`: isolate more plugins than the registry says, for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolateOverride {
    /// As each plugin's registry entry says.
    #[default]
    AsRegistered,
    /// Every user plugin (bundled plugins stay in process).
    UserPlugins,
    /// Every plugin, bundled ones included.
    All,
}

impl Settings {
    /// Resolve the configuration directory: the flag, else `$DIFFY_CONFIG_DIR`, else `~/.diffy`.
    pub fn resolve(config_dir: Option<PathBuf>) -> Result<Settings> {
        let config_dir =
            match config_dir.or_else(|| std::env::var_os("DIFFY_CONFIG_DIR").map(PathBuf::from)) {
                Some(dir) if dir.as_os_str().is_empty() => {
                    return Err(Error::Usage(
                        "the configuration directory is an empty path".into(),
                    ));
                }
                Some(dir) => dir,
                None => dirs::home_dir()
                    .ok_or_else(|| {
                        Error::Usage(
                        "cannot find the home directory; set DIFFY_CONFIG_DIR or pass --config-dir"
                            .into(),
                    )
                    })?
                    .join(".diffy"),
            };
        let config_dir =
            std::path::absolute(&config_dir).map_err(|e| Error::io("resolve", &config_dir, e))?;
        Ok(Settings {
            config_dir,
            bundled_dir: bundled_dir(),
            user_plugins: true,
            bundled_plugins: true,
            isolate: IsolateOverride::AsRegistered,
            runner: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("diffy")),
        })
    }

    /// How `plugin` runs this run: as registered, unless `--isolate-plugins` says more.
    pub fn isolation_of(&self, plugin: &KnownPlugin) -> Isolation {
        match self.isolate {
            IsolateOverride::All => Isolation::Process,
            IsolateOverride::UserPlugins if plugin.source != Source::Bundled => Isolation::Process,
            _ => plugin.isolation,
        }
    }

    /// `<config dir>/plugins.json`.
    pub fn registry_file(&self) -> PathBuf {
        self.config_dir.join("plugins.json")
    }

    /// `<config dir>/plugins`, where installed plugins are copied.
    pub fn plugins_dir(&self) -> PathBuf {
        self.config_dir.join("plugins")
    }

    /// `<config dir>/cache`, for the manifest cache.
    pub fn cache_dir(&self) -> PathBuf {
        self.config_dir.join("cache")
    }

    /// `<config dir>/data/<plugin>`, the state directory offered to a plugin.
    pub fn data_dir(&self, plugin: &str) -> PathBuf {
        self.config_dir.join("data").join(plugin)
    }

    /// The library of a bundled plugin, where it would be.
    pub fn bundled_library(&self, name: &str) -> Option<PathBuf> {
        self.bundled_dir
            .as_ref()
            .map(|dir| dir.join(library_file_name(name)))
    }
}

/// The platform's file name for a plugin's library: `libdiffy_local.so`, `diffy_local.dll`, …
pub fn library_file_name(plugin: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        plugin.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// Whether `path` looks like a dynamic library by its extension.
pub fn is_library_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| format!(".{e}") == std::env::consts::DLL_SUFFIX)
}

/// `$DIFFY_BUNDLED_PLUGINS_DIR`, else `plugins/` beside the executable when it holds a bundled
/// library, else the executable's own directory (a cargo target directory).
fn bundled_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DIFFY_BUNDLED_PLUGINS_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let beside = exe_dir.join("plugins");
    let first = library_file_name(BUNDLED_PLUGINS.first()?);
    if beside.join(&first).exists() {
        Some(beside)
    } else {
        Some(exe_dir)
    }
}
