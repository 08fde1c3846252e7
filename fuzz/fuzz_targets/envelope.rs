//! `POST /v1/commands` as the handler sees it: the request body's bytes (at most
//! `REQUEST_BYTES_MAX`), given to `protocol::open_envelope`, and a refusal turned into
//! its HTTP reply. Whatever the bytes: no panic, a refusal is a 4xx with a code, and an
//! accepted command is what its envelope says.
#![no_main]

use covoit::core::canonical;
use covoit::core::protocol::{self, ENVELOPE_BYTES_MAX};
use covoit::http::error::ApiError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() > ENVELOPE_BYTES_MAX {
        // The handler answers 413 before parsing anything.
        return;
    }
    match protocol::open_envelope(data) {
        Ok(command) => {
            let envelope = command.envelope();
            assert_eq!(protocol::base64_decode(&envelope.body).as_deref(), Some(command.body_bytes()));
            assert_eq!(protocol::base64_decode(&envelope.key).as_deref(), Some(&command.key()[..]));
            assert!(canonical::check_canonical(command.body_bytes()).is_ok(), "an accepted body is canonical");
            // Only a genuine signature can be accepted: for the fuzz keys, Ed25519 is
            // deterministic, so the signature must be the one the key makes.
            if let Some(key) = covoit_fuzz::known_key(command.key()) {
                use ed25519_dalek::Signer;
                let genuine = key.sign(&protocol::signed_message(command.body_bytes()));
                assert_eq!(protocol::base64_decode(&envelope.sig).unwrap(), genuine.to_bytes().to_vec());
            }
        }
        Err(error) => {
            let code = error.code();
            let reply = ApiError::from(error);
            assert!(reply.status.is_client_error(), "{code} answered {}", reply.status);
            assert_eq!(reply.code, code);
            let _ = reply.into_response();
        }
    }
});
