//! `diffy plugin new`: a plugin crate that builds and passes its tests as generated.
//!
//! The crate is a `cdylib` depending on `diffy-plugin-api`, with a CLI namespace (the plugin's
//! name without its `diffy-` prefix), a sample analysis with an option schema, a conformance test
//! using `diffy-plugin-harness`, a README for the author and a `.gitignore`. It declares its own
//! empty `[workspace]`, so creating it inside another workspace's tree does not attach it there.
//!
//! Dependencies are by version (`diffy-plugin-api = "0.2"`, and the harness likewise), or with
//! [`NewPlugin::api_path`] by path: the API crate at that path and the harness beside it
//! (`<api path>/../plugin-harness`), which is how a diffy checkout is used before the crates are
//! published.

use std::fs;
use std::path::{Path, PathBuf};

use diffy_plugin_api::manifest::{check_component_name, check_plugin_name};

use crate::config::{BUILT_IN_COMMANDS, BUNDLED_PLUGINS, library_file_name};
use crate::error::{Error, IoContext, Result};

const CARGO_TOML: &str = include_str!("../templates/plugin/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../templates/plugin/lib.rs.tmpl");
const CONFORMANCE_RS: &str = include_str!("../templates/plugin/conformance.rs.tmpl");
const README_MD: &str = include_str!("../templates/plugin/README.md.tmpl");
const GITIGNORE: &str = include_str!("../templates/plugin/gitignore.tmpl");

/// What `diffy plugin new` was asked for.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    /// The plugin's name (`diffy-hello`), checked as `diffy plugin install` checks it.
    pub name: String,
    /// Where to create the crate; default `./<name>`. It must not exist or be empty.
    pub dir: Option<PathBuf>,
    /// A local `diffy-plugin-api` crate to depend on by path instead of by version; the harness
    /// is then taken from `<api path>/../plugin-harness`.
    pub api_path: Option<PathBuf>,
}

/// What `diffy plugin new` created.
#[derive(Debug, Clone)]
pub struct Scaffolded {
    /// The crate's directory.
    pub dir: PathBuf,
    /// The plugin's name.
    pub name: String,
    /// Its CLI namespace.
    pub namespace: String,
    /// The slug of its sample analysis.
    pub analysis: String,
    /// The file name its library builds to (`libdiffy_hello.so`).
    pub library_file: String,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
}

/// The CLI namespace for a plugin name: the name without `diffy-`, or the whole name when that
/// would not be a valid namespace or would shadow a built-in command.
pub fn namespace_for(name: &str) -> String {
    let short = name
        .strip_prefix("diffy-")
        .or_else(|| name.strip_prefix("diffy_"))
        .unwrap_or(name)
        .replace('_', "-");
    if check_component_name(&short).is_ok() && !BUILT_IN_COMMANDS.contains(&short.as_str()) {
        short
    } else {
        name.replace('_', "-")
    }
}

/// Create the plugin crate.
pub fn new_plugin(request: &NewPlugin) -> Result<Scaffolded> {
    let name = request.name.as_str();
    check_plugin_name(name).map_err(Error::Usage)?;
    if BUNDLED_PLUGINS.contains(&name) {
        return Err(Error::Usage(format!(
            "the name {name} belongs to a plugin bundled with diffy; choose another"
        )));
    }
    let dir = request.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    check_target_dir(&dir)?;
    let namespace = namespace_for(name);
    let analysis = format!("{namespace}-watch");
    let library_file = library_file_name(name);
    let api = semver::Version::parse(diffy_plugin_api::API_VERSION).expect("own version parses");
    let api_series = format!("{}.{}", api.major, api.minor);

    let (api_dependency, harness_dependency, dependency_note) = match &request.api_path {
        None => (
            toml_string(&api_series),
            toml_string(&api_series),
            format!(
                "`diffy-plugin-api` and `diffy-plugin-harness` are taken from the registry \
                 (version {api_series}). To build against a diffy checkout instead, make them \
                 path dependencies: `diffy-plugin-api = {{ path = \"<diffy>/plugin-api\" }}` and \
                 `diffy-plugin-harness = {{ path = \"<diffy>/plugin-harness\" }}` (what `diffy \
                 plugin new --api-path <diffy>/plugin-api` writes)."
            ),
        ),
        Some(path) => {
            let (api_dir, harness_dir) = local_crates(path)?;
            (
                toml_path_dependency(&api_dir),
                toml_path_dependency(&harness_dir),
                format!(
                    "`diffy-plugin-api` and `diffy-plugin-harness` are path dependencies on the \
                     diffy checkout at `{}` (from `--api-path`). Once they are published, \
                     replace both with `\"{api_series}\"` to build anywhere.",
                    api_dir.parent().unwrap_or(&api_dir).display()
                ),
            )
        }
    };
    let vars: [(&str, &str); 9] = [
        ("name", name),
        ("namespace", &namespace),
        ("slug", &analysis),
        ("library_file", &library_file),
        ("api_series", &api_series),
        ("api_dependency", &api_dependency),
        ("harness_dependency", &harness_dependency),
        ("dependency_note", &dependency_note),
        ("crate_name", &name.replace('-', "_")),
    ];
    let files: [(&str, &str); 5] = [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("tests/conformance.rs", CONFORMANCE_RS),
        ("README.md", README_MD),
        (".gitignore", GITIGNORE),
    ];
    let existed = dir.exists();
    let written = write_files(&dir, &files, &vars);
    if written.is_err() && !existed {
        let _ = fs::remove_dir_all(&dir);
    }
    Ok(Scaffolded {
        files: written?,
        dir,
        name: name.to_string(),
        namespace,
        analysis,
        library_file,
    })
}

fn write_files(dir: &Path, files: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (relative, template) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_path("create", parent)?;
        }
        fs::write(&path, render(template, vars)).with_path("write", &path)?;
        written.push(PathBuf::from(relative));
    }
    Ok(written)
}

/// Replace each `{{key}}` of `vars` in `template`.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut text = template.to_string();
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

/// Refuse a directory that exists and is not empty, or a path that is not a directory.
fn check_target_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("read", dir, e)),
        Ok(m) if !m.is_dir() => Err(Error::Usage(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Ok(_) => {
            let mut entries = fs::read_dir(dir).with_path("read", dir)?;
            if entries.next().is_some() {
                Err(Error::Usage(format!(
                    "{} exists and is not empty; choose another --dir",
                    dir.display()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// The API crate at `path` and the harness beside it, both checked and made absolute.
fn local_crates(path: &Path) -> Result<(PathBuf, PathBuf)> {
    let api = fs::canonicalize(path).map_err(|_| {
        Error::Usage(format!(
            "--api-path {}: no such directory (point it at diffy's plugin-api/)",
            path.display()
        ))
    })?;
    check_crate(&api, "diffy-plugin-api", "--api-path")?;
    let harness = api
        .parent()
        .map(|p| p.join("plugin-harness"))
        .unwrap_or_default();
    check_crate(
        &harness,
        "diffy-plugin-harness",
        "the harness beside --api-path",
    )?;
    Ok((api, harness))
}

fn check_crate(dir: &Path, package: &str, what: &str) -> Result<()> {
    let manifest = dir.join("Cargo.toml");
    let name = fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
        .and_then(|table| {
            let name = table.get("package")?.get("name")?.as_str()?.to_string();
            Some(name)
        });
    if name.as_deref() == Some(package) {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{what}: {} is not the {package} crate",
            dir.display()
        )))
    }
}

/// `text` as a TOML string value.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// `{ path = "<dir>" }`, a TOML inline table.
fn toml_path_dependency(dir: &Path) -> String {
    let mut table = toml::Table::new();
    table.insert("path".into(), dir.to_string_lossy().into_owned().into());
    toml::Value::Table(table).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_come_from_the_name() {
        assert_eq!(namespace_for("diffy-hello"), "hello");
        assert_eq!(namespace_for("diffy_hello_world"), "hello-world");
        assert_eq!(namespace_for("diffy-2fa"), "diffy-2fa");
        assert_eq!(namespace_for("diffy-plugin"), "diffy-plugin");
        for name in ["diffy-hello", "diffy_x_y", "diffy-2fa", "diffy-new"] {
            assert!(check_component_name(&namespace_for(name)).is_ok(), "{name}");
        }
    }

    #[test]
    fn templates_have_no_unknown_placeholders() {
        let vars = [
            "name",
            "namespace",
            "slug",
            "library_file",
            "api_series",
            "api_dependency",
            "harness_dependency",
            "dependency_note",
            "crate_name",
        ];
        let values: Vec<(&str, &str)> = vars.iter().map(|v| (*v, "X")).collect();
        for template in [CARGO_TOML, LIB_RS, CONFORMANCE_RS, README_MD, GITIGNORE] {
            let text = render(template, &values);
            for placeholder in text.match_indices("{{").map(|(i, _)| &text[i..]) {
                let end = placeholder.find("}}").unwrap_or(placeholder.len());
                let inner = &placeholder[2..end];
                assert!(
                    !inner.chars().all(|c| c.is_ascii_lowercase() || c == '_') || inner.is_empty(),
                    "unknown placeholder {{{{{inner}}}}}"
                );
            }
        }
    }

    #[test]
    fn toml_strings_escape() {
        let text = r#"a"b\c"#;
        let parsed: toml::Table = format!("x = {}", toml_string(text)).parse().unwrap();
        assert_eq!(parsed["x"].as_str(), Some(text));
    }

    #[test]
    fn refuses_bad_names_and_busy_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = NewPlugin {
            name: "hello".into(),
            dir: Some(tmp.path().join("x")),
            api_path: None,
        };
        assert!(matches!(new_plugin(&bad), Err(Error::Usage(_))));
        fs::write(tmp.path().join("file"), "x").unwrap();
        let busy = NewPlugin {
            name: "diffy-hello".into(),
            dir: Some(tmp.path().to_path_buf()),
            api_path: None,
        };
        let error = new_plugin(&busy).unwrap_err().to_string();
        assert!(error.contains("not empty"), "{error}");
    }

    #[test]
    fn writes_a_crate_by_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("diffy-hello");
        let made = new_plugin(&NewPlugin {
            name: "diffy-hello".into(),
            dir: Some(dir.clone()),
            api_path: None,
        })
        .unwrap();
        assert_eq!(made.namespace, "hello");
        assert_eq!(made.analysis, "hello-watch");
        let cargo = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("diffy-plugin-api = \"0.2\""), "{cargo}");
        assert!(cargo.contains("diffy-plugin-harness = \"0.2\""), "{cargo}");
        assert!(cargo.contains("\n[workspace]\n"), "{cargo}");
        let parsed: toml::Table = cargo.parse().expect("the Cargo.toml is TOML");
        assert_eq!(
            parsed["dependencies"]["diffy-plugin-api"].as_str(),
            Some("0.2")
        );
        let lib = fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("Component::named(\"hello\""), "{lib}");
        assert!(!lib.contains("{{"), "{lib}");
        assert!(dir.join("tests/conformance.rs").is_file());
        assert!(dir.join(".gitignore").is_file());
    }
}
