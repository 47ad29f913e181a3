//! The structured row parsers must never panic, whatever a compromised host's evidence holds:
//! malformed output is an error that says where.
#![no_main]

use diffy_plugin_api::Parser;
use diffy_plugin_api::rows::Parsed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parser in [
        Parser::Json,
        Parser::Csv { delimiter: None },
        Parser::Csv {
            delimiter: Some("|".into()),
        },
        Parser::Tsv,
    ] {
        if let Ok(Parsed::Named(table)) = parser.read(text) {
            for row in table.rows() {
                let _ = row.to_row().to_line();
            }
        }
    }
});
