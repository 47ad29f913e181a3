//! Opening plugin libraries and talking to them: the only module of the host with `unsafe` code
//! and FFI types.
//!
//! Loading a library goes: file checks ([`checks`]: ownership, ELF completeness) → digest check
//! (installed plugins) → `libloading` pre-check of the `diffy_plugin_api_version` symbol →
//! abi_stable's header and layout check
//! (`lib_header_from_path` + `init_root_module`, never `RootModule::load_from_file`, which caches
//! one module per type) → manifest, name and host-version checks. Each failure is one line; the
//! full abi_stable layout report is logged at debug level (`-vv`).
//!
//! Activation ([`in_process`]) returns a [`ComponentHandle`](crate::component::ComponentHandle)
//! whose calls travel into the library through abi_stable's trait object; [`crate::component`]
//! does the rest (method checks, documents, messages).

mod checks;
mod in_process;

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::time::Instant;

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::std_types::RResult;
use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::ffi::{API_VERSION_SYMBOL, CallStatus, FfiError, PluginModuleRef};
use diffy_plugin_api::{Manifest, is_api_compatible};
use serde::{Deserialize, Serialize};

use crate::component::one_line;
use crate::config::HOST_VERSION;
use crate::files::FileIdentity;
use checks::{check_elf_layout, check_ownership};

/// What the caller knows about a library before loading it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Expectation<'a> {
    /// The plugin name its registry entry (or the bundled list) gives.
    pub name: Option<&'a str>,
    /// The SHA-256 recorded at install time.
    pub sha256: Option<&'a str>,
    /// What an earlier load of this path verified (see [`Verified`]).
    pub previous: Option<&'a Verified>,
    /// The path to name in messages, when not the library's own (an archive it came from).
    pub shown_as: Option<&'a Path>,
}

/// What loading a library proved, kept by the caller so the next load of the unchanged file can
/// skip the expensive checks: the digest (when the file still has the identity it had when its
/// digest matched) and abi_stable's layout check (when, in addition, the running executable is
/// the one that checked it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verified {
    /// The file's identity when it was checked.
    pub file: FileIdentity,
    /// The digest it had then, if one was computed.
    pub sha256: Option<String>,
    /// The `diffy` executable whose layout check the file passed.
    pub layout_checked_by: Option<FileIdentity>,
    /// The manifest the file returned, validated; a manifest is a pure function of the file's
    /// bytes, so an unchanged file need not be asked again.
    #[serde(default)]
    pub manifest: Option<Manifest>,
}

/// A library that passed every check. Libraries are never unloaded (abi_stable does not support
/// it), so a `LoadedLibrary` lives as long as the process.
pub struct LoadedLibrary {
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Its manifest, validated.
    pub manifest: Manifest,
    /// What this load verified, to pass back as [`Expectation::previous`] next time.
    pub verified: Verified,
    module: PluginModuleRef,
}

impl LoadedLibrary {
    /// The library's SHA-256, when this load (or the one it trusted) computed it.
    pub fn sha256(&self) -> Option<&str> {
        self.verified.sha256.as_deref()
    }
}

/// Load the library at `path` and check it; the error is one line (without the plugin's name,
/// which the caller adds).
///
/// The file is opened once, and that open file is what is hashed and what the dynamic loader maps
/// (through `/proc/self/fd` on Linux), so the bytes verified are the bytes loaded even if the
/// path is replaced meanwhile.
pub fn load(path: &Path, expect: Expectation<'_>) -> Result<LoadedLibrary, String> {
    let started = Instant::now();
    let shown = expect.shown_as.unwrap_or(path);
    // Without blocking, so that a FIFO is refused instead of waited on; the open file is checked.
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC;
    let mut file = match rustix::fs::open(path, flags, rustix::fs::Mode::empty()) {
        Ok(fd) => std::fs::File::from(fd),
        Err(rustix::io::Errno::NOENT) => {
            return Err(format!("library not found: {}", shown.display()));
        }
        Err(e) => return Err(format!("cannot open {}: {e}", shown.display())),
    };
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", shown.display()))?;
    if !metadata.is_file() {
        return Err(format!(
            "{} is {}, not a library",
            shown.display(),
            crate::files::describe(metadata.file_type())
        ));
    }
    check_ownership(path, &metadata)?;
    let identity = FileIdentity::of(&metadata);
    let previous = expect.previous.filter(|p| p.file == identity);
    let sha256 = match expect.sha256 {
        Some(expected) => {
            let actual = match previous.and_then(|p| p.sha256.clone()) {
                Some(known) => known,
                None => {
                    let mut bytes = Vec::with_capacity(metadata.len() as usize);
                    std::io::Read::read_to_end(&mut file, &mut bytes)
                        .map_err(|e| format!("cannot read {}: {e}", shown.display()))?;
                    sha256_hex(&bytes)
                }
            };
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(format!(
                    "digest mismatch: {} changed since it was installed (sha256 {actual}, installed \
                     {expected}); reinstall it with 'diffy plugin install --force'",
                    shown.display()
                ));
            }
            Some(actual)
        }
        None => previous.and_then(|p| p.sha256.clone()),
    };

    check_elf_layout(&file, metadata.len())?;
    let digested = started.elapsed();
    let open_path = open_file_path(&file, path);
    // The dynamic loader knows a library by the path it was opened with and hands the same library
    // out again for that path; libraries are never unloaded (abi_stable's rule, and glibc's for
    // most Rust libraries). So the descriptor stays open for the life of the process, and its
    // /proc/self/fd path is never reused for another file.
    std::mem::forget(file);
    // Keep the pre-check's handle open until abi_stable holds its own, so the library is mapped once.
    let (api_version, _precheck_handle) =
        precheck_api_version(&open_path).map_err(|e| unmask(e, &open_path, shown))?;
    let prechecked = started.elapsed();
    let header = lib_header_from_path(&open_path)
        .map_err(describe_library_error)
        .map_err(|e| unmask(e, &open_path, shown))?;
    let exe = FileIdentity::of_current_exe();
    let layout_known_good = exe.is_some() && previous.and_then(|p| p.layout_checked_by) == exe;
    let module = if layout_known_good {
        // SAFETY: this very file (same device, inode, size, mtime and ctime) passed abi_stable's
        // layout check for `PluginModuleRef` in an earlier run of this very executable (same
        // identity), and layout checking is deterministic in those two inputs.
        unsafe { header.init_root_module_with_unchecked_layout::<PluginModuleRef>() }
    } else {
        header.init_root_module::<PluginModuleRef>()
    }
    .map_err(describe_library_error)?;
    let opened = started.elapsed();
    tracing::debug!(
        digest_us = digested.as_micros() as u64,
        dlopen_us = (prechecked - digested).as_micros() as u64,
        layout_us = (opened - prechecked).as_micros() as u64,
        layout_cached = layout_known_good,
        "opened {}",
        path.display()
    );

    let known_manifest = previous
        .filter(|_| layout_known_good)
        .and_then(|p| p.manifest.clone());
    let manifest = match known_manifest {
        Some(manifest) => manifest,
        None => {
            let manifest_json = call("manifest", || (module.manifest())())?;
            let manifest: Manifest = serde_json::from_str(&manifest_json)
                .map_err(|e| format!("the plugin returned a malformed manifest: {e}"))?;
            manifest
                .validate()
                .map_err(|e| format!("invalid manifest: {e}"))?;
            manifest
        }
    };
    if manifest.api_version != api_version {
        return Err(format!(
            "the manifest says diffy-plugin-api {} but the library exports {api_version}",
            manifest.api_version
        ));
    }
    if let Some(name) = expect.name
        && manifest.name != name
    {
        return Err(format!(
            "the library is plugin {:?}, not {name:?} as registered",
            manifest.name
        ));
    }
    check_host_requirement(&manifest)?;
    tracing::info!(
        plugin = %manifest.name,
        path = %path.display(),
        open_us = opened.as_micros() as u64,
        total_us = started.elapsed().as_micros() as u64,
        "loaded plugin library"
    );
    Ok(LoadedLibrary {
        path: path.to_path_buf(),
        verified: Verified {
            file: identity,
            sha256,
            layout_checked_by: exe,
            manifest: Some(manifest.clone()),
        },
        manifest,
        module,
    })
}

/// The path the dynamic loader should open: the already-open file itself where the platform
/// allows it, else the path.
fn open_file_path(file: &std::fs::File, path: &Path) -> PathBuf {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let _ = path;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        path.to_path_buf()
    }
}

/// Say the real path in messages, not the `/proc/self/fd` one.
fn unmask(message: String, open_path: &Path, path: &Path) -> String {
    message.replace(&*open_path.to_string_lossy(), &path.to_string_lossy())
}

/// Open the library with `libloading` and read the plain C symbol holding the API version it was
/// built with, so that a library that is not a diffy plugin, or one built for another API series,
/// gets a clear message before abi_stable's layout check runs.
fn precheck_api_version(path: &Path) -> Result<(String, libloading::Library), String> {
    // SAFETY: opening a library runs its initialisers. The library is one the user registered as a
    // diffy plugin (or asked to check); a plugin host cannot avoid running the plugin's code, and
    // the trust checks (digest, permissions) have already passed.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("not a loadable library: {}", one_line(&e.to_string())))?;
    let symbol_name = format!("{API_VERSION_SYMBOL}\0");
    // SAFETY: the symbol, when present, is the `extern "C" fn() -> *const c_char` that
    // `export_plugin!` defines; the signature below is exactly that.
    let version_fn =
        unsafe { library.get::<extern "C" fn() -> *const c_char>(symbol_name.as_bytes()) }
            .map_err(|_| {
                format!(
                    "not a diffy plugin: {} does not export {API_VERSION_SYMBOL}",
                    path.display()
                )
            })?;
    let pointer = version_fn();
    if pointer.is_null() {
        return Err(format!("{API_VERSION_SYMBOL} returned a null pointer"));
    }
    // SAFETY: `export_plugin!` returns a pointer to a NUL-terminated `'static` C string, and the
    // library stays loaded while `library` is alive.
    let version = unsafe { CStr::from_ptr(pointer) }
        .to_str()
        .map_err(|_| format!("{API_VERSION_SYMBOL} is not UTF-8"))?
        .to_string();
    let plugin_api = semver::Version::parse(&version)
        .map_err(|_| format!("{API_VERSION_SYMBOL} is not a version: {version:?}"))?;
    let host_api =
        semver::Version::parse(diffy_plugin_api::API_VERSION).expect("own version parses");
    if !is_api_compatible(&plugin_api, &host_api) {
        let series = if host_api.major == 0 {
            format!("0.{}", host_api.minor)
        } else {
            host_api.major.to_string()
        };
        return Err(format!(
            "built against diffy-plugin-api {plugin_api}, but this diffy uses {host_api}, another \
             API series; rebuild the plugin against diffy-plugin-api {series}"
        ));
    }
    Ok((version, library))
}

fn describe_library_error(error: LibraryError) -> String {
    match &error {
        LibraryError::AbiInstability(report) => {
            tracing::debug!("abi_stable layout report:\n{report}");
            "incompatible ABI: the library's diffy-plugin-api types differ from this diffy's \
             (rerun with -vv for abi_stable's report)"
                .to_string()
        }
        LibraryError::OpenError { .. } => {
            format!("not a loadable library: {}", one_line(&error.to_string()))
        }
        LibraryError::GetSymbolError { .. } => {
            "not a diffy plugin: it exports no abi_stable root module".to_string()
        }
        _ => {
            tracing::debug!("abi_stable error:\n{error}");
            one_line(&error.to_string())
        }
    }
}

fn check_host_requirement(manifest: &Manifest) -> Result<(), String> {
    let requirement = semver::VersionReq::parse(&manifest.host_requirement)
        .map_err(|e| format!("invalid host requirement: {e}"))?;
    let host = semver::Version::parse(HOST_VERSION).expect("own version parses");
    if requirement.matches(&host) {
        Ok(())
    } else {
        Err(format!(
            "supports diffy {}, but this is diffy {host}",
            manifest.host_requirement
        ))
    }
}

/// Call `manifest` or another root-module function, turning its error into a message.
fn call<T>(what: &str, f: impl FnOnce() -> RResult<T, FfiError>) -> Result<T, String> {
    f().into_result().map_err(|e| {
        if e.status == CallStatus::PANICKED {
            format!("panicked in {what}: {}", e.message)
        } else {
            format!("{what} failed: {}", e.message)
        }
    })
}
