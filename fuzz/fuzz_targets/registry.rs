//! The registry parser must turn any bytes into a registry or a one-line error, and whatever it
//! accepts must survive a write/read round trip unchanged.
#![no_main]

use std::path::Path;

use diffy_core::registry::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Registry::parse(Path::new("plugins.json"), data) {
        Ok(registry) => {
            let text = registry.to_json();
            let again = Registry::parse(Path::new("plugins.json"), text.as_bytes())
                .expect("a written registry parses");
            assert_eq!(again, registry);
        }
        Err(error) => assert!(!error.to_string().contains('\n')),
    }
});
