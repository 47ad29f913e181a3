//! Property: any registry diffy can write reads back as the same registry, unknown keys included,
//! and reading never panics on arbitrary bytes.

use std::path::Path;

use diffy_core::isolation::Isolation;
use diffy_core::registry::{InstallationType, Registry, RegistryEntry};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn name() -> impl Strategy<Value = String> {
    ("[-_]", "[a-z0-9][a-z0-9_-]{0,40}").prop_map(|(sep, rest)| format!("diffy{sep}{rest}"))
}

fn extra() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map("x_[a-z]{1,8}", any::<i64>().prop_map(Value::from), 0..3)
        .prop_map(|m| m.into_iter().collect())
}

fn entry() -> impl Strategy<Value = RegistryEntry> {
    let isolation = || proptest::option::of(Just(Isolation::Process));
    let installed = (
        name(),
        (0u32..20, 0u32..20, 0u32..20),
        proptest::option::of("[0-9a-f]{64}"),
        isolation(),
        extra(),
    )
        .prop_map(
            |(name, (a, b, c), sha256, isolation, extra)| RegistryEntry {
                name,
                installation_type: InstallationType::Installed,
                installation_path: None,
                version: Some(format!("{a}.{b}.{c}")),
                sha256,
                isolation,
                extra,
            },
        );
    let path = (name(), "[a-zA-Z0-9/._ -]{1,60}", isolation(), extra()).prop_map(
        |(name, path, isolation, extra)| RegistryEntry {
            name,
            installation_type: InstallationType::Path,
            installation_path: Some(path),
            version: None,
            sha256: None,
            isolation,
            extra,
        },
    );
    prop_oneof![installed, path]
}

fn registry() -> impl Strategy<Value = Registry> {
    (proptest::collection::vec(entry(), 0..12), extra()).prop_map(|(mut entries, extra)| {
        let mut seen = std::collections::HashSet::new();
        entries.retain(|e| seen.insert(e.name.clone()));
        Registry { entries, extra }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn written_registries_read_back_unchanged(registry in registry()) {
        let text = registry.to_json();
        let read = Registry::parse(Path::new("plugins.json"), text.as_bytes()).unwrap();
        prop_assert_eq!(&read, &registry);
        prop_assert_eq!(read.to_json(), text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Registry::parse(Path::new("plugins.json"), &bytes);
    }

    #[test]
    fn mangled_registries_fail_with_one_line(registry in registry(), cut in 0usize..400) {
        let text = registry.to_json();
        let cut = cut.min(text.len());
        if let Err(error) = Registry::parse(Path::new("plugins.json"), &text.as_bytes()[..cut]) {
            let message = error.to_string();
            prop_assert!(!message.contains('\n'));
            prop_assert!(message.starts_with("plugins.json: "));
        }
    }
}
