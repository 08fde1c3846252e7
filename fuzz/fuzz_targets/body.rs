//! A command body's bytes, straight into `protocol::parse_body` (what `open_envelope`
//! does once the base64 is decoded), so that the fuzzer spends its time on the body's
//! JSON and fields rather than on base64. No panic; the fast path (straight into the
//! wire struct) never accepts what the canonical check refuses.
#![no_main]

use covoit::core::canonical;
use covoit::core::protocol::{self, BODY_BYTES_MAX};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > BODY_BYTES_MAX {
        return;
    }
    match protocol::parse_body(data) {
        Ok(body) => {
            assert!(canonical::check_canonical(data).is_ok(), "parse_body accepted a body that is not canonical");
            let _ = format!("{body:?}");
        }
        Err(error) => {
            let _ = (error.code(), error.to_string());
        }
    }
});
