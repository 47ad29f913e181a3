//! The plugin author's kit, end to end, the way a third party works: `diffy plugin new` outside
//! this workspace, the crate's own `cargo test` through the harness, `diffy plugin package`, and
//! `diffy plugin install <ARCHIVE>` into a fresh configuration directory. Then archives that must
//! be refused: tampered, truncated, path-traversing, absolute, linked, oversized, for another
//! target; each exits 2 with one line and changes nothing.
//!
//! The scaffolded crate is built in its own target directory (a cold build of abi_stable and
//! diffy's core takes a few minutes on two cores). Set `DIFFY_AUTHOR_KIT_TARGET_DIR` to keep that
//! directory between runs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Instant;

use diffy_e2e::{Env, library, stderr_of, stdout_of};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde_json::Value;
use sha2::Digest;

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Run a step, saying how long it took (shown with `--nocapture`).
fn step<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    eprintln!(
        "[author kit] {what}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    value
}

fn api_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugin-api")
        .canonicalize()
        .expect("the plugin-api crate")
}

#[test]
fn a_third_party_goes_from_nothing_to_an_installed_tested_packaged_plugin() {
    let env = Env::new();
    // Outside this workspace: the system's temporary directory.
    let work = tempfile::Builder::new()
        .prefix("diffy-author-kit-")
        .tempdir()
        .unwrap();
    let crate_dir = work.path().join("diffy-hello");
    let cargo_target = std::env::var_os("DIFFY_AUTHOR_KIT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| work.path().join("target"));

    // 1. Scaffold.
    let output = step("diffy plugin new", || {
        env.diffy(["plugin", "new", "diffy-hello", "--dir"])
            .arg(&crate_dir)
            .arg("--api-path")
            .arg(api_path())
            .output()
            .unwrap()
    });
    assert!(output.status.success(), "{}", stderr_of(&output));
    let said = stdout_of(&output);
    assert!(said.contains("CLI namespace:   diffy hello"), "{said}");
    assert!(said.contains("sample analysis: hello-watch"), "{said}");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/conformance.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(crate_dir.join(file).is_file(), "{file} missing");
    }

    // 2. The crate's own tests, through the harness.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = step("cargo test (in the new crate)", || {
        StdCommand::new(&cargo)
            .arg("test")
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", &cargo_target)
            // A cold build of the harness and its dependencies, never debugged here: no debug info.
            .env("CARGO_PROFILE_DEV_DEBUG", "false")
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap()
    });
    let text = format!("{}{}", stdout_of(&output), stderr_of(&output));
    assert!(output.status.success(), "cargo test failed:\n{text}");
    assert!(
        text.contains("test conforms_to_the_plugin_contract ... ok"),
        "{text}"
    );
    assert!(
        text.contains("test result: ok. 5 passed; 0 failed"),
        "{text}"
    );

    // 3. Package (a release build of the crate).
    let dist = work.path().join("dist");
    let output = step("diffy plugin package", || {
        env.diffy(["plugin", "package"])
            .arg(&crate_dir)
            .arg("--out")
            .arg(&dist)
            .env("CARGO_TARGET_DIR", &cargo_target)
            .output()
            .unwrap()
    });
    assert!(output.status.success(), "{}", stderr_of(&output));
    let archives: Vec<PathBuf> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    let archive = archives[0].clone();
    let file_name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let triple = file_name
        .strip_prefix("diffy-hello-0.1.0-")
        .and_then(|rest| rest.strip_suffix(".tar.gz"))
        .unwrap_or_else(|| panic!("unexpected archive name {file_name}"));
    assert!(stdout_of(&output).contains(&format!("for {triple} into")));
    let members = read_members(&archive);
    let names: Vec<String> = members.iter().map(|m| m.path_text()).collect();
    let top = format!("diffy-hello-0.1.0-{triple}");
    assert_eq!(
        names,
        [
            format!("{top}/"),
            format!("{top}/package.json"),
            format!("{top}/manifest.json"),
            format!("{top}/SHA256SUMS"),
            format!("{top}/libdiffy_hello.so"),
        ]
    );

    // 4. Install the archive into a fresh configuration directory.
    let output = step("diffy plugin install <archive>", || {
        env.diffy(["plugin", "install"])
            .arg(&archive)
            .output()
            .unwrap()
    });
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(stdout_of(&output).contains("Installed diffy-hello 0.1.0"));
    let registry = env.registry();
    assert_eq!(registry["plugins"][0]["name"], "diffy-hello");
    assert_eq!(registry["plugins"][0]["installation_type"], "installed");
    assert!(
        env.config_dir()
            .join("plugins/diffy-hello/0.1.0/libdiffy_hello.so")
            .is_file()
    );

    // 5. Its namespace.
    let output = step("diffy hello greet world", || {
        env.diffy(["hello", "greet", "world"]).output().unwrap()
    });
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(stdout_of(&output), "Hello, world!\n");

    // 6. Its analysis in a real job, with the bundled diffy-local components for the rest.
    let evidence = work.path().join("evidence");
    for (host, processes) in [
        ("web-1", "sshd\nnginx: worker\n"),
        ("web-2", "sshd\nnginx: worker\n"),
        ("web-3", "sshd\nnginx: worker\n/tmp/.x/xmrig --pool x\n"),
    ] {
        std::fs::create_dir_all(evidence.join(host)).unwrap();
        std::fs::write(evidence.join(host).join("processes.txt"), processes).unwrap();
    }
    let output = step("diffy new analysis --analysis-plugin hello-watch", || {
        env.diffy(["new", "analysis"])
            .arg(&evidence)
            .args([
                "--target-plugin",
                "evidence-dir",
                "--collection-plugin",
                "evidence-dir",
                "--option",
                r#"local-command.commands=[{"id":"processes","run":"ps -eo args"}]"#,
                "--analysis-plugin",
                "hello-watch",
                "--option",
                "hello-watch.words=xmrig,miner",
                "--format",
                "json",
            ])
            .output()
            .unwrap()
    });
    assert!(output.status.success(), "{}", stderr_of(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["analysis"], "hello-watch");
    assert_eq!(report["hosts"][0]["target"], "web-3");
    assert_eq!(
        report["hosts"][0]["commands"][0]["added"],
        serde_json::json!(["/tmp/.x/xmrig --pool x"])
    );
    assert_eq!(report["hosts"][1]["score"], 0.0);

    // The real archive, truncated, is refused too.
    let bytes = std::fs::read(&archive).unwrap();
    let truncated = work.path().join(format!("truncated-{file_name}"));
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let before = env.registry_text();
    let output = env
        .diffy(["plugin", "install"])
        .arg(&truncated)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("truncated or corrupt"));
    assert_eq!(env.registry_text(), before);
}

#[test]
fn plugin_new_refuses_bad_names_and_busy_directories() {
    let env = Env::new();
    let dir = env.scratch.path().join("crate");
    for name in ["hello", "diffy-../x", "diffy-A", "diffy-local"] {
        let output = env
            .diffy(["plugin", "new", name, "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert!(stderr_of(&output).starts_with("error: "), "{name}");
        assert!(!dir.exists(), "{name}");
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), "mine").unwrap();
    env.diffy(["plugin", "new", "diffy-hello", "--dir"])
        .arg(&dir)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not empty"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // --api-path must point at the API crate.
    env.diffy(["plugin", "new", "diffy-hello", "--dir"])
        .arg(env.scratch.path().join("other"))
        .arg("--api-path")
        .arg(env.scratch.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "is not the diffy-plugin-api crate",
        ));
}

/// One member of a tar archive, as read or as written (any path, any type).
#[derive(Clone)]
struct Member {
    path: Vec<u8>,
    kind: tar::EntryType,
    link: Vec<u8>,
    mode: u32,
    /// The size to claim in the header; `None` for the data's own length.
    claimed_size: Option<u64>,
    data: Vec<u8>,
}

impl Member {
    fn file(path: &str, data: &[u8]) -> Member {
        Member {
            path: path.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            link: Vec::new(),
            mode: 0o644,
            claimed_size: None,
            data: data.to_vec(),
        }
    }

    fn path_text(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

fn read_members(archive: &Path) -> Vec<Member> {
    let file = std::fs::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    tar.entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            Member {
                path: entry.path_bytes().into_owned(),
                kind: entry.header().entry_type(),
                link: entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default(),
                mode: entry.header().mode().unwrap(),
                claimed_size: None,
                data,
            }
        })
        .collect()
}

/// Write members with raw headers, so paths the tar crate would refuse to write can be made.
fn write_archive(path: &Path, members: &[Member]) {
    let file = std::fs::File::create(path).unwrap();
    let mut tar = tar::Builder::new(GzEncoder::new(file, Compression::fast()));
    for member in members {
        let mut header = tar::Header::new_old();
        let old = header.as_old_mut();
        assert!(member.path.len() <= old.name.len() && member.link.len() <= old.linkname.len());
        old.name[..member.path.len()].copy_from_slice(&member.path);
        old.linkname[..member.link.len()].copy_from_slice(&member.link);
        header.set_entry_type(member.kind);
        header.set_mode(member.mode);
        header.set_mtime(1);
        header.set_size(member.claimed_size.unwrap_or(member.data.len() as u64));
        header.set_cksum();
        tar.append(&header, member.data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// Rewrite `SHA256SUMS` for the members as they now are.
fn fix_sums(members: &mut [Member]) {
    let top = members[0].path_text();
    let sum_of = |members: &[Member], name: &str| {
        let wanted = format!("{top}{name}");
        sha256_hex(
            &members
                .iter()
                .find(|m| m.path_text() == wanted)
                .unwrap()
                .data,
        )
    };
    let library = members
        .iter()
        .map(|m| m.path_text())
        .find(|p| p.ends_with(".so"))
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let sums = format!(
        "{}  {library}\n{}  manifest.json\n{}  package.json\n",
        sum_of(members, &library),
        sum_of(members, "manifest.json"),
        sum_of(members, "package.json"),
    );
    let at = members
        .iter()
        .position(|m| m.path_text().ends_with("/SHA256SUMS"))
        .unwrap();
    members[at].data = sums.into_bytes();
}

/// Every file under `dir`, relative, sorted (empty if `dir` is missing).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn bad_archives_are_refused_and_change_nothing() {
    let env = Env::new();
    // Something installed already, so there is a registry and a plugins directory to keep intact.
    env.install(library("diffy-fixture"));

    // A real archive, made by diffy from a real plugin library.
    let dist = env.scratch.path().join("dist");
    env.diffy(["plugin", "package"])
        .arg(library("diffy-sweeten"))
        .arg("--out")
        .arg(&dist)
        .assert()
        .success();
    let good = std::fs::read_dir(&dist)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good_name = good.file_name().unwrap().to_string_lossy().into_owned();
    let members = read_members(&good);
    let top = members[0].path_text(); // "<name>-<version>-<triple>/"
    let triple = top
        .trim_end_matches('/')
        .strip_prefix("diffy-sweeten-0.1.0-")
        .unwrap()
        .to_string();
    let lib_at = members
        .iter()
        .position(|m| m.path_text().ends_with("libdiffy_sweeten.so"))
        .unwrap();

    let mut cases: Vec<(&str, Vec<u8>, String)> = Vec::new();
    let mut add = |label: &'static str, members: Vec<Member>, expected: String| {
        let path = env.scratch.path().join(format!("{label}.tar.gz"));
        write_archive(&path, &members);
        cases.push((label, std::fs::read(&path).unwrap(), expected));
    };

    let mut tampered = members.clone();
    let middle = tampered[lib_at].data.len() / 2;
    tampered[lib_at].data[middle] ^= 0xff;
    add(
        "tampered",
        tampered,
        "checksum mismatch for libdiffy_sweeten.so".into(),
    );

    let mut traversing = members.clone();
    traversing.insert(1, Member::file(&format!("{top}../evil"), b"x"));
    add("traversing", traversing, "('..')".into());

    let mut escaping = members.clone();
    escaping.push(Member::file("../evil", b"x"));
    add("escaping", escaping, "('..')".into());

    let mut absolute = members.clone();
    absolute.insert(1, Member::file("/tmp/diffy-evil", b"x"));
    add("absolute", absolute, "has an absolute path".into());

    let mut symlink = members.clone();
    symlink[lib_at] = Member {
        kind: tar::EntryType::Symlink,
        link: b"/etc/passwd".to_vec(),
        data: Vec::new(),
        ..symlink[lib_at].clone()
    };
    add("symlink", symlink, "is a symbolic link".into());

    let mut hardlink = members.clone();
    hardlink.push(Member {
        path: format!("{top}hard").into_bytes(),
        kind: tar::EntryType::Link,
        link: b"/etc/shadow".to_vec(),
        mode: 0o644,
        claimed_size: None,
        data: Vec::new(),
    });
    add("hardlink", hardlink, "is a hard link".into());

    let mut outside = members.clone();
    outside.push(Member::file("elsewhere/libdiffy_sweeten.so", b"x"));
    add("outside", outside, "outside the plugin's directory".into());

    let mut extra = members.clone();
    extra.push(Member::file(&format!("{top}README"), b"x"));
    add("extra", extra, "unexpected member".into());

    let mut oversized = members.clone();
    oversized.push(Member {
        claimed_size: Some(300 << 20),
        ..Member::file(&format!("{top}big.so"), b"")
    });
    add("oversized", oversized, "over the 256 MiB limit".into());

    let mut missing = members.clone();
    missing.retain(|m| !m.path_text().ends_with("/SHA256SUMS"));
    add("missing", missing, "SHA256SUMS is missing".into());

    // Another target, with everything else consistent (checksums included).
    let foreign = if triple.starts_with("aarch64") {
        "x86_64-unknown-linux-gnu"
    } else {
        "aarch64-unknown-linux-gnu"
    };
    let new_top = top.replace(&triple, foreign);
    let mut other_target: Vec<Member> = members
        .iter()
        .map(|m| Member {
            path: m.path_text().replace(&top, &new_top).into_bytes(),
            ..m.clone()
        })
        .collect();
    let package_at = other_target
        .iter()
        .position(|m| m.path_text().ends_with("/package.json"))
        .unwrap();
    let mut info: Value = serde_json::from_slice(&other_target[package_at].data).unwrap();
    info["target"] = Value::String(foreign.into());
    other_target[package_at].data = serde_json::to_vec_pretty(&info).unwrap();
    fix_sums(&mut other_target);
    add(
        "other-target",
        other_target,
        format!("built for {foreign}, but this diffy runs on {triple}"),
    );

    let good_bytes = std::fs::read(&good).unwrap();
    cases.push((
        "truncated",
        good_bytes[..good_bytes.len() / 2].to_vec(),
        "truncated or corrupt".into(),
    ));
    cases.push((
        "not-gzip",
        b"this is not an archive".to_vec(),
        "not a valid plugin archive".into(),
    ));

    let registry_before = env.registry_text().unwrap();
    let plugins_before = tree(&env.config_dir().join("plugins"));
    let tmp = env.scratch.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    for (label, bytes, expected) in &cases {
        // Each archive keeps the real archive's name, as a user would receive it.
        let dir = env.scratch.path().join("bad").join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(&good_name);
        std::fs::write(&path, bytes).unwrap();
        let output = env
            .diffy(["plugin", "install"])
            .arg(&path)
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{label}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.lines().count() == 1,
            "{label}: {stderr}"
        );
        assert!(stderr.contains(expected.as_str()), "{label}: {stderr}");
        assert!(
            stderr.contains(&good_name),
            "{label} names the archive: {stderr}"
        );
        assert_eq!(
            env.registry_text().unwrap(),
            registry_before,
            "{label} changed the registry"
        );
        assert_eq!(
            tree(&env.config_dir().join("plugins")),
            plugins_before,
            "{label} left files in the plugins directory"
        );
        assert!(tree(&tmp).is_empty(), "{label} left {:?}", tree(&tmp));
        assert!(!Path::new("/tmp/diffy-evil").exists());
    }

    // `plugin check` verifies an archive as install would, without installing it.
    env.diffy(["plugin", "check"])
        .arg(&good)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "diffy-sweeten 0.1.0 is a valid diffy plugin",
        ));
    assert_eq!(env.registry_text().unwrap(), registry_before);

    // `--link` needs a library, not an archive.
    env.diffy(["plugin", "install", "--link"])
        .arg(&good)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is a plugin archive"));

    // The untouched archive installs, and the plugin works.
    env.diffy(["plugin", "install"])
        .arg(&good)
        .env("TMPDIR", &tmp)
        .assert()
        .success()
        .stdout(predicates::str::contains("Installed diffy-sweeten 0.1.0"));
    assert!(tree(&tmp).is_empty());
    env.diffy(["sweeten", "count"])
        .assert()
        .success()
        .stdout("0\n");
    // Installing it again is a no-op; update from an archive works too.
    env.diffy(["plugin", "install"])
        .arg(&good)
        .assert()
        .success()
        .stdout(predicates::str::contains("already installed"));
    env.diffy(["plugin", "update", "diffy-sweeten"])
        .arg(&good)
        .assert()
        .success();
}
