//! Support for diffy's end-to-end tests: build the workspace once, then run the real `diffy`
//! binary against real plugin libraries in a temporary configuration directory. [`ssh_lab`] is a
//! lab of real OpenSSH servers for the SSH tests and benchmark.

pub mod ssh_lab;

use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::OnceLock;

use assert_cmd::Command;
use tempfile::TempDir;

/// The cargo profile directory the tests were built into (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> → target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps")
        .to_path_buf()
}

/// Build the binary and every plugin library once per test process (cargo's own lock keeps
/// concurrent test binaries from building twice at once).
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = StdCommand::new(cargo);
        build
            .args(["build", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .args([
                "-p",
                "diffy",
                "-p",
                "diffy-sweeten",
                "-p",
                "diffy-local",
                "-p",
                "diffy-ssh",
                "-p",
                "diffy-fixture",
            ]);
        if target_dir().file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "cargo build failed");
    });
}

/// A built plugin library in the target directory (`diffy-sweeten` → `libdiffy_sweeten.so`).
pub fn library(package: &str) -> PathBuf {
    ensure_built();
    target_dir().join(format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    ))
}

/// A temporary configuration directory and the commands to run diffy in it.
pub struct Env {
    /// The configuration directory.
    pub config: TempDir,
    /// Scratch space for libraries and inputs.
    pub scratch: TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// A fresh, empty configuration directory.
    pub fn new() -> Env {
        ensure_built();
        Env {
            config: tempfile::tempdir().expect("temp dir"),
            scratch: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The configuration directory's path.
    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    /// `diffy ARGS…` with this configuration directory and the bundled plugins of the target dir.
    pub fn diffy<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command =
            Command::new(target_dir().join(format!("diffy{}", std::env::consts::EXE_SUFFIX)));
        command
            .env("DIFFY_CONFIG_DIR", self.config.path())
            .env("DIFFY_BUNDLED_PLUGINS_DIR", target_dir())
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LOG")
            .args(args);
        command
    }

    /// `diffy plugin install LIBRARY`, which must succeed.
    pub fn install(&self, library: impl AsRef<std::ffi::OsStr>) {
        self.diffy(["plugin", "install"])
            .arg(library)
            .assert()
            .success();
    }

    /// The registry's text, or `None` if there is no registry.
    pub fn registry_text(&self) -> Option<String> {
        std::fs::read_to_string(self.config.path().join("plugins.json")).ok()
    }

    /// The registry as JSON (panics if missing or malformed).
    pub fn registry(&self) -> serde_json::Value {
        serde_json::from_str(&self.registry_text().expect("registry exists"))
            .expect("registry parses")
    }

    /// Write `plugins.json` by hand.
    pub fn write_registry(&self, text: &str) {
        std::fs::write(self.config.path().join("plugins.json"), text).expect("write registry");
    }

    /// A copy of the fixture plugin with its slots patched, under `scratch`. `name` must start
    /// with `diffy-`; each slot holds at most 40 bytes.
    pub fn fixture(&self, name: &str, namespace: &str, slug: &str) -> PathBuf {
        self.fixture_with(name, namespace, slug, "0.1.0-fixture", "^0.2")
    }

    /// As [`Env::fixture`], with a version and a host requirement too. Copies of one name and
    /// different versions live in different directories.
    pub fn fixture_with(
        &self,
        name: &str,
        namespace: &str,
        slug: &str,
        version: &str,
        host_requirement: &str,
    ) -> PathBuf {
        let mut bytes = std::fs::read(library("diffy-fixture")).expect("read fixture library");
        patch_slot(&mut bytes, "diffy-fixture", name);
        patch_slot(&mut bytes, "fixture-slug", slug);
        patch_slot(&mut bytes, "fixture", namespace);
        patch_slot(&mut bytes, "0.1.0-fixture", version);
        patch_slot(&mut bytes, "^0.2", host_requirement);
        let dir = self.scratch.path().join(format!("{name}-{version}"));
        std::fs::create_dir_all(&dir).expect("create fixture dir");
        let path = dir.join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            name.replace('-', "_"),
            std::env::consts::DLL_SUFFIX
        ));
        std::fs::write(&path, bytes).expect("write fixture copy");
        path
    }
}

/// Overwrite the 40-byte slot that starts with `default` and is padded with `_`.
pub fn patch_slot(bytes: &mut [u8], default: &str, value: &str) {
    assert!(value.len() <= 40, "slot values are at most 40 bytes");
    let mut slot = default.as_bytes().to_vec();
    slot.resize(40, b'_');
    let mut replacement = value.as_bytes().to_vec();
    replacement.resize(40, b'_');
    let mut found = 0;
    let mut at = 0;
    while let Some(offset) = bytes[at..].windows(40).position(|w| w == slot.as_slice()) {
        let start = at + offset;
        bytes[start..start + 40].copy_from_slice(&replacement);
        at = start + 40;
        found += 1;
    }
    assert!(
        found > 0,
        "slot {default:?} not found in the fixture library"
    );
}

/// stdout of a finished command as text.
pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// stderr of a finished command as text.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
