//! What is checked about a library file before the dynamic loader maps it: who could have changed
//! it, and whether it is a complete ELF library for this machine.

use std::path::Path;

/// Check, before the dynamic loader maps it, that an ELF library is for this machine and holds every
/// segment it declares: glibc maps a truncated file without complaint, and touching a page past its
/// end kills the process with SIGBUS.
#[cfg(target_os = "linux")]
pub(super) fn check_elf_layout(file: &std::fs::File, len: u64) -> Result<(), String> {
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
pub(super) fn check_elf_layout(_file: &std::fs::File, _len: u64) -> Result<(), String> {
    Ok(())
}

/// Refuse a library that someone else could have changed: one that is group- or world-writable
/// or owned by another user (root excepted), or that sits in a directory like that (a directory
/// with the sticky bit, such as `/tmp`, protects its files from other users and is accepted).
pub(super) fn check_ownership(path: &Path, metadata: &std::fs::Metadata) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
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
