//! Valid signed envelopes (fixed keys, one per command type), with bytes changed by
//! the fuzzer: in the envelope's JSON, or in the decoded body, key or signature (then
//! encoded again). No panic, and nothing is accepted but the signed bytes themselves:
//! whatever `open_envelope` accepts has exactly the original body bytes, key and
//! signature, spelled with exactly the original base64 strings.
#![no_main]

use std::sync::OnceLock;

use covoit::core::protocol::{self, Envelope};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

struct Sample {
    envelope: Envelope,
    json: Vec<u8>,
    body: Vec<u8>,
    key: Vec<u8>,
    sig: Vec<u8>,
}

fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        covoit_fuzz::signed_samples()
            .into_iter()
            .map(|envelope| {
                assert!(protocol::open_envelope(&covoit_fuzz::envelope_bytes(&envelope)).is_ok(), "a valid sample");
                Sample {
                    json: covoit_fuzz::envelope_bytes(&envelope),
                    body: protocol::base64_decode(&envelope.body).unwrap(),
                    key: protocol::base64_decode(&envelope.key).unwrap(),
                    sig: protocol::base64_decode(&envelope.sig).unwrap(),
                    envelope,
                }
            })
            .collect()
    })
}

#[derive(Debug, Arbitrary)]
enum Part {
    /// The envelope as posted, `{"body":…,"key":…,"sig":…}`.
    Json,
    /// The decoded body bytes: the signed JSON.
    Body,
    Key,
    Sig,
}

#[derive(Debug, Arbitrary)]
enum Edit {
    Set {
        at: u16,
        byte: u8,
    },
    Flip {
        at: u16,
        bit: u8,
    },
    Insert {
        at: u16,
        bytes: Vec<u8>,
    },
    Remove {
        at: u16,
        len: u8,
    },
    /// Swaps the parts' contents between two positions (reorders fields, say).
    Swap {
        from: u16,
        to: u16,
        len: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    sample: u8,
    edits: Vec<(Part, Edit)>,
}

fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
    let at = |position: u16, len: usize| if len == 0 { 0 } else { usize::from(position) % (len + 1) };
    match edit {
        Edit::Set { at: position, byte } if !bytes.is_empty() => {
            let i = usize::from(*position) % bytes.len();
            bytes[i] = *byte;
        }
        Edit::Flip { at: position, bit } if !bytes.is_empty() => {
            let i = usize::from(*position) % bytes.len();
            bytes[i] ^= 1 << (bit % 8);
        }
        Edit::Insert { at: position, bytes: inserted } => {
            let i = at(*position, bytes.len());
            bytes.splice(i..i, inserted.iter().copied());
        }
        Edit::Remove { at: position, len } => {
            let i = at(*position, bytes.len());
            let end = (i + usize::from(*len)).min(bytes.len());
            bytes.drain(i..end);
        }
        Edit::Swap { from, to, len } if !bytes.is_empty() => {
            let len = usize::from(*len).min(bytes.len() / 2);
            let a = usize::from(*from) % (bytes.len() - len + 1);
            let b = usize::from(*to) % (bytes.len() - len + 1);
            if a + len <= b || b + len <= a {
                for k in 0..len {
                    bytes.swap(a + k, b + k);
                }
            }
        }
        _ => {}
    }
}

fuzz_target!(|input: Input| {
    let samples = samples();
    let sample = &samples[usize::from(input.sample) % samples.len()];
    let (mut json, mut body, mut key, mut sig) =
        (sample.json.clone(), sample.body.clone(), sample.key.clone(), sample.sig.clone());
    let mut parts_changed = false;
    for (part, edit) in &input.edits {
        match part {
            Part::Json => apply(&mut json, edit),
            Part::Body => (apply(&mut body, edit), parts_changed = true).1,
            Part::Key => (apply(&mut key, edit), parts_changed = true).1,
            Part::Sig => (apply(&mut sig, edit), parts_changed = true).1,
        }
    }
    if parts_changed {
        // The edited parts, written into the envelope again; edits of the JSON then
        // apply to that.
        let envelope = Envelope {
            body: protocol::base64_encode(&body),
            key: protocol::base64_encode(&key),
            sig: protocol::base64_encode(&sig),
        };
        let mut rebuilt = covoit_fuzz::envelope_bytes(&envelope);
        for (part, edit) in &input.edits {
            if let Part::Json = part {
                apply(&mut rebuilt, edit);
            }
        }
        json = rebuilt;
    }
    if let Ok(command) = protocol::open_envelope(&json) {
        assert_eq!(command.body_bytes(), &sample.body[..], "accepted a body other than the signed one");
        assert_eq!(&command.key()[..], &sample.key[..], "accepted another key");
        assert_eq!(command.envelope(), &sample.envelope, "accepted another spelling of the envelope's strings");
        assert_eq!(protocol::base64_decode(&command.envelope().sig).unwrap(), sample.sig, "accepted another signature");
    }
});
