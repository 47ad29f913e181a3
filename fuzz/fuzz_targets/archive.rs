//! The plugin archive reader must refuse anything but a well-formed package with one line, never
//! panic, and never write outside its own temporary directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("plugin.tar.gz");
    std::fs::write(&archive, data).expect("write the input");
    match diffy_core::archive::extract(&archive) {
        Ok(staged) => assert!(staged.library.starts_with(staged.dir())),
        Err(error) => assert!(!error.to_string().contains('\n'), "{error}"),
    }
    // Nothing may appear beside the archive.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
});
