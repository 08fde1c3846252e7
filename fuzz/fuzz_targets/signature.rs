//! The signature check path: parse an envelope, check it (`check_envelope`), then
//! verify its signature singly (`verify_strict`), in two steps among valid commands
//! (`prepare`, then `finish_verification` for the lot, as `POST /v1/commands` and the
//! writer do) and in a batch with valid commands (`verify_batch`, as `covoit audit`
//! does). No panic; the three verifications agree; `open_envelope` agrees with the
//! steps; and an accepted signature by one of the fuzz keys is the one that key makes
//! (no forgery, no malleability). The seeds are valid envelopes signed with those keys.
#![no_main]

use std::sync::OnceLock;

use covoit::core::protocol::{self, Envelope, ProtocolError, SignedCommand};
use ed25519_dalek::Signer;
use libfuzzer_sys::fuzz_target;

/// Valid commands to put the fuzzed one among.
fn companions() -> &'static [SignedCommand] {
    static COMPANIONS: OnceLock<Vec<SignedCommand>> = OnceLock::new();
    COMPANIONS.get_or_init(|| {
        covoit_fuzz::signed_samples()
            .into_iter()
            .take(3)
            .map(|envelope| protocol::check_envelope(envelope).expect("a valid sample"))
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed_byte, data)) = data.split_first() else { return };
    let opened = protocol::open_envelope(data);
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else { return };
    let signed = match protocol::check_envelope(envelope) {
        Ok(signed) => signed,
        Err(error) => {
            // serde_json::from_slice keeps the last of duplicated keys, where the
            // service refuses them: only compare when the service got this far.
            if let Err(opened) = &opened {
                assert!(matches!(opened, ProtocolError::DuplicateKey { .. }) || *opened == error);
            }
            return;
        }
    };
    let single = signed.clone().verify();
    if let Ok(opened) = &opened {
        assert_eq!(Ok(opened), single.as_ref(), "open_envelope and check+verify agree");
    }
    if let Ok(verified) = &single
        && let Some(key) = covoit_fuzz::known_key(verified.key())
    {
        let genuine = key.sign(&protocol::signed_message(verified.body_bytes())).to_bytes();
        assert_eq!(
            protocol::base64_decode(&verified.envelope().sig).unwrap(),
            genuine.to_vec(),
            "an accepted signature by a fuzz key is the key's own"
        );
    }
    // As the service checks it: prepared by its handler, finished by the writer
    // together with valid commands (one field inversion for the lot).
    let position = usize::from(seed_byte) % (companions().len() + 1);
    let served = signed.clone().prepare().and_then(|prepared| {
        let mut pending: Vec<_> =
            companions().iter().map(|command| command.clone().prepare().expect("a valid sample")).collect();
        pending.insert(position, prepared);
        let mut finished = protocol::finish_verification(pending);
        let own = finished.remove(position);
        assert!(finished.iter().all(Result::is_ok), "the valid commands stay valid");
        own
    });
    assert_eq!(served, single, "prepare and finish_verification agree with verify_strict");
    // In a batch, at a position the input picks, among valid commands.
    let mut batch: Vec<SignedCommand> = companions().to_vec();
    batch.insert(position, signed);
    let (verified, failure) = protocol::verify_batch(batch.clone(), &[seed_byte; 32]);
    match &single {
        Ok(_) => assert_eq!((verified.len(), failure), (batch.len(), None), "the batch accepts a valid signature"),
        Err(error) => {
            assert_eq!(failure, Some((position, error.clone())), "the batch names the invalid signature");
            assert_eq!(verified.len(), position);
        }
    }
});
