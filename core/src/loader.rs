//! Opening plugin libraries and talking to them: the only module of the host with `unsafe` code
//! and FFI types.
//!
//! Loading a library (DESIGN §4) goes: digest check (installed plugins) → `libloading` pre-check of
//! the `diffy_plugin_api_version` symbol → abi_stable's header and layout check
//! (`lib_header_from_path` + `init_root_module`, never `RootModule::load_from_file`, which caches
//! one module per type) → manifest, name and host-version checks. Each failure is one line; the
//! full abi_stable layout report is logged at debug level (`-vv`).
//!
//! Activation returns a [`ComponentHandle`] whose calls travel into the library through abi_stable's
//! trait object; [`crate::component`] does the rest (method checks, documents, messages).

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::time::Instant;

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr, RVec};
use diffy_plugin_api::documents::sha256_hex;
use diffy_plugin_api::ffi::{
    API_VERSION_SYMBOL, CallStatus, ComponentBox, FfiError, HostBox, HostFfi, HostFfi_TO,
    PluginModuleRef,
};
use diffy_plugin_api::{ComponentKind, Manifest, is_api_compatible};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::component::{CallFailure, ComponentHandle, Label, Transport, one_line};
use crate::config::HOST_VERSION;
use crate::error::{Error, Result};
use crate::files::FileIdentity;
use crate::services::HostServices;

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
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("library not found: {}", shown.display()),
        _ => format!("cannot open {}: {e}", shown.display()),
    })?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", shown.display()))?;
    if !metadata.is_file() {
        return Err(format!("{} is not a file", shown.display()));
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

/// Check, before the dynamic loader maps it, that an ELF library is for this machine and holds every
/// segment it declares: glibc maps a truncated file without complaint, and touching a page past its
/// end kills the process with SIGBUS.
#[cfg(target_os = "linux")]
fn check_elf_layout(file: &std::fs::File, len: u64) -> Result<(), String> {
    use std::os::unix::fs::FileExt;
    const PT_LOAD: u32 = 1;
    let bad = |why: &str| Err(format!("not a loadable library: {why}"));
    let mut header = [0u8; 64];
    if file.read_exact_at(&mut header, 0).is_err() {
        return bad("the file is too short to be a shared library");
    }
    if &header[..4] != b"\x7fELF" {
        return bad("it is not an ELF file");
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"));
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let (class, little_endian) = (header[4], header[5] == 1);
    let expected_machine: Option<(u16, &str)> = match std::env::consts::ARCH {
        "x86_64" => Some((62, "x86_64")),
        "aarch64" => Some((183, "aarch64")),
        _ => None,
    };
    if class != 2 || !little_endian {
        return bad("it is not a 64-bit little-endian ELF file, as this machine needs");
    }
    if let Some((machine, arch)) = expected_machine
        && u16_at(&header, 18) != machine
    {
        return bad(&format!(
            "it was built for another architecture (ELF machine {}), not {arch}",
            u16_at(&header, 18)
        ));
    }
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 0x20),
        u16_at(&header, 0x36) as u64,
        u16_at(&header, 0x38) as u64,
    );
    if phentsize < 0x28 || phoff.saturating_add(phentsize.saturating_mul(phnum)) > len {
        return bad("its program headers lie outside the file (truncated?)");
    }
    let mut entry = vec![0u8; phentsize as usize];
    for index in 0..phnum {
        if file
            .read_exact_at(&mut entry, phoff + index * phentsize)
            .is_err()
        {
            return bad("its program headers cannot be read (truncated?)");
        }
        let (kind, offset, size) = (u32_at(&entry, 0), u64_at(&entry, 8), u64_at(&entry, 0x20));
        if kind == PT_LOAD && offset.saturating_add(size) > len {
            return bad(&format!(
                "it is truncated: a segment needs {} bytes, the file has {len}",
                offset.saturating_add(size)
            ));
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn check_elf_layout(_file: &std::fs::File, _len: u64) -> Result<(), String> {
    Ok(())
}

/// Refuse a library that someone else could have changed: one that is group- or world-writable
/// or owned by another user (root excepted), or that sits in a directory like that (a directory
/// with the sticky bit, such as `/tmp`, protects its files from other users and is accepted).
fn check_ownership(path: &Path, metadata: &std::fs::Metadata) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let check = |what: &str, shown: &Path, m: &std::fs::Metadata, is_dir: bool| {
            let mode = m.mode();
            let sticky = is_dir && mode & 0o1000 != 0;
            if mode & 0o022 != 0 && !sticky {
                let who = if mode & 0o002 != 0 { "world" } else { "group" };
                return Err(format!(
                    "refusing to load {}: the {what} {} is {who}-writable; run 'chmod go-w {}'",
                    path.display(),
                    shown.display(),
                    shown.display()
                ));
            }
            if m.uid() != me && m.uid() != 0 {
                return Err(format!(
                    "refusing to load {}: the {what} {} is owned by user {}, not by you or root; \
                     run 'chown {me} {}' if you trust it",
                    path.display(),
                    shown.display(),
                    m.uid(),
                    shown.display()
                ));
            }
            Ok(())
        };
        check("library", path, metadata, false)?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(dir) = std::fs::metadata(parent)
        {
            check("directory", parent, &dir, true)?;
        }
    }
    #[cfg(not(unix))]
    let _ = (path, metadata);
    Ok(())
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

impl LoadedLibrary {
    /// Construct the component of `kind` named `name` with `options` (already validated against
    /// its schema and completed with its defaults), served by `services`.
    pub fn activate(
        &self,
        kind: ComponentKind,
        name: &str,
        services: HostServices,
        options: &Map<String, Value>,
    ) -> Result<ComponentHandle> {
        let label = Label {
            plugin: self.manifest.name.clone(),
            kind,
            name: name.to_string(),
        };
        let started = Instant::now();
        let host: HostBox = HostFfi_TO::from_value(ServicesAdapter(services), TD_Opaque);
        let options = serde_json::to_vec(options).expect("options serialise");
        let activate = self.module.activate();
        let component = activate(
            RStr::from_str(kind.as_str()),
            RStr::from_str(name),
            host,
            RSlice::from_slice(&options),
        )
        .into_result()
        .map_err(|e| {
            let verb = if e.status == CallStatus::PANICKED {
                "panicked while activating"
            } else {
                "failed to activate"
            };
            Error::Plugin(format!(
                "plugin {} {verb} {kind} {name}: {}",
                label.plugin,
                one_line(&e.message)
            ))
        })?;
        tracing::info!(
            plugin = %label.plugin,
            component = %format!("{kind} {name}"),
            activate_us = started.elapsed().as_micros() as u64,
            "activated component"
        );
        Ok(ComponentHandle::new(
            label,
            &self.manifest,
            Box::new(InProcess { component }),
        ))
    }
}

/// A component in a library loaded into this process.
struct InProcess {
    component: ComponentBox,
}

impl Transport for InProcess {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFailure> {
        let mut output = RVec::new();
        let status = self.component.call(
            RStr::from_str(method),
            RSlice::from_slice(input),
            &mut output,
        );
        let output = output.into_vec();
        match status {
            CallStatus::OK => Ok(output),
            CallStatus::PANICKED => Err(CallFailure::Panicked(text(output))),
            CallStatus::NO_SUCH_METHOD => Err(CallFailure::NoSuchMethod(text(output))),
            _ => Err(CallFailure::Error(text(output))),
        }
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The host's services as the boundary's [`HostFfi`]: every call goes to [`HostServices::call`],
/// and a panic there is caught before it could unwind into the plugin.
struct ServicesAdapter(HostServices);

impl HostFfi for ServicesAdapter {
    fn call(&self, service: RStr<'_>, input: RSlice<'_, u8>, output: &mut RVec<u8>) -> CallStatus {
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.0.call(service.as_str(), input.as_slice())
        }));
        let (status, bytes) = match answer {
            Ok(Ok(bytes)) => (CallStatus::OK, bytes),
            Ok(Err(CallFailure::NoSuchMethod(m))) => (CallStatus::NO_SUCH_METHOD, m.into_bytes()),
            Ok(Err(CallFailure::Error(m) | CallFailure::Panicked(m) | CallFailure::Lost(m))) => {
                (CallStatus::ERROR, m.into_bytes())
            }
            Err(_) => (
                CallStatus::PANICKED,
                b"the host panicked in a service".to_vec(),
            ),
        };
        output.clear();
        output.extend_from_slice(&bytes);
        status
    }
}
