//! Checkpoints: a C2SP tlog-checkpoint (origin, tree size, root hash) in a C2SP
//! signed note, signed with the ledger's Ed25519 key.
//!
//! ```text
//! covoit/ayen/2f1c…          <- origin: the ledger id
//! 1024                       <- tree size
//! 9aJ3…=                     <- base64 root hash
//!                            <- blank line
//! — covoit/ayen/2f1c… AbCd…  <- "— " name " " base64(key id ‖ signature)
//! ```
//!
//! The key id is the first 4 bytes of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key). The
//! parser is strict on purpose: a checkpoint with extension lines, a second
//! signature, an unknown signer or any stray byte is refused, so that the one thing
//! an auditor accepts is exactly what the server signed.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::core::merkle::Hash;
use crate::core::protocol::{base64_decode, base64_encode};

/// The Ed25519 algorithm byte of C2SP signed notes.
const ALGORITHM_ED25519: u8 = 0x01;
/// Longest note we read; ours are a few hundred bytes.
pub const NOTE_BYTES_MAX: usize = 4096;
/// What starts a signature line: an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// What a verified checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a note or checkpoint is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the note is malformed: {0}")]
    Malformed(&'static str),
    #[error("the note must carry exactly one signature, by {0}")]
    Signatures(String),
    #[error("the note is signed by \"{0}\", not by the expected key")]
    UnknownSigner(String),
    #[error("the note's signature does not verify")]
    BadSignature,
    #[error("the checkpoint is malformed: {0}")]
    Checkpoint(&'static str),
    #[error("the checkpoint's origin is \"{found}\", not \"{expected}\"")]
    Origin { expected: String, found: String },
}

/// The checkpoint's text: origin, size and base64 root, each on its own line.
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", base64_encode(root))
}

/// The C2SP key id of an Ed25519 key under `name`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', ALGORITHM_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Signs `text` (which ends with a newline) as a signed note under `name`.
pub fn sign_note(text: &str, name: &str, key: &SigningKey) -> String {
    assert!(text.ends_with('\n'), "a note's text ends with a newline");
    let signature = key.sign(text.as_bytes());
    let mut blob = key_id(name, key.verifying_key().as_bytes()).to_vec();
    blob.extend_from_slice(&signature.to_bytes());
    format!("{text}\n{SIGNATURE_PREFIX}{name} {}\n", base64_encode(&blob))
}

/// The checkpoint note the ledger signs for a tree.
pub fn sign_checkpoint(origin: &str, size: u64, root: &Hash, key: &SigningKey) -> String {
    sign_note(&checkpoint_text(origin, size, root), origin, key)
}

/// Opens a signed note that must carry exactly one signature, by `name` with `key`;
/// returns its text.
pub fn open_note<'a>(note: &'a str, name: &str, key: &[u8; 32]) -> Result<&'a str, NoteError> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(NoteError::Malformed("it is too long"));
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(NoteError::Malformed("it holds control characters"));
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Malformed("there is no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=split], &note[split + 2..]);
    if !signatures.ends_with('\n') {
        return Err(NoteError::Malformed("the last signature line does not end with a newline"));
    }
    let lines: Vec<&str> = signatures[..signatures.len() - 1].split('\n').collect();
    let [line] = lines.as_slice() else {
        return Err(NoteError::Signatures(name.to_owned()));
    };
    let rest =
        line.strip_prefix(SIGNATURE_PREFIX).ok_or(NoteError::Malformed("a signature line must start with \"— \""))?;
    let (signer, blob) =
        rest.split_once(' ').ok_or(NoteError::Malformed("a signature line is \"— name signature\""))?;
    if signer != name {
        return Err(NoteError::UnknownSigner(signer.to_owned()));
    }
    let blob = base64_decode(blob).ok_or(NoteError::Malformed("the signature is not base64"))?;
    if blob.len() != 4 + 64 {
        return Err(NoteError::Malformed("an Ed25519 signature line holds a 4-byte key id and 64 bytes"));
    }
    if blob[..4] != key_id(name, key) {
        return Err(NoteError::UnknownSigner(format!("{signer} (key id {:02x?})", &blob[..4])));
    }
    let verifying_key = VerifyingKey::from_bytes(key).map_err(|_| NoteError::BadSignature)?;
    let signature = Signature::from_bytes(blob[4..].try_into().expect("64 bytes"));
    verifying_key.verify_strict(text.as_bytes(), &signature).map_err(|_| NoteError::BadSignature)?;
    Ok(text)
}

/// Opens a checkpoint note signed by the ledger key under the name `origin`.
pub fn open_checkpoint(note: &str, origin: &str, key: &[u8; 32]) -> Result<Checkpoint, NoteError> {
    let text = open_note(note, origin, key)?;
    parse_checkpoint_text(text, origin)
}

/// The three lines of a checkpoint's text; extension lines are refused.
fn parse_checkpoint_text(text: &str, origin: &str) -> Result<Checkpoint, NoteError> {
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
    let [found_origin, size, root] = lines.as_slice() else {
        return Err(NoteError::Checkpoint("it must be exactly three lines: origin, size, root hash"));
    };
    if *found_origin != origin {
        return Err(NoteError::Origin { expected: origin.to_owned(), found: (*found_origin).to_owned() });
    }
    let canonical_size =
        !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) && (size.len() == 1 || !size.starts_with('0'));
    let size: u64 = size
        .parse()
        .ok()
        .filter(|_| canonical_size)
        .ok_or(NoteError::Checkpoint("the size is not a decimal number"))?;
    let root = base64_decode(root)
        .and_then(|root| <Hash>::try_from(root).ok())
        .ok_or(NoteError::Checkpoint("the root hash is not 32 bytes in base64"))?;
    Ok(Checkpoint { origin: origin.to_owned(), size, root })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "covoit/test/ayen";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn public() -> [u8; 32] {
        key().verifying_key().to_bytes()
    }

    #[test]
    fn a_checkpoint_round_trips() {
        let note = sign_checkpoint(ORIGIN, 42, &[7; 32], &key());
        assert!(note.starts_with("covoit/test/ayen\n42\nBwcH"), "{note}");
        assert!(note.contains("\n\n\u{2014} covoit/test/ayen "));
        let checkpoint = open_checkpoint(&note, ORIGIN, &public()).unwrap();
        assert_eq!(checkpoint, Checkpoint { origin: ORIGIN.into(), size: 42, root: [7; 32] });
    }

    #[test]
    fn anything_extra_or_altered_is_refused() {
        let note = sign_checkpoint(ORIGIN, 42, &[7; 32], &key());
        let other = SigningKey::from_bytes(&[4; 32]);
        let refused = |note: &str| open_checkpoint(note, ORIGIN, &public()).is_err();
        assert!(refused(&note.replace("\n42\n", "\n43\n")), "changed size");
        assert!(refused(&note.replace(ORIGIN, "covoit/other")), "other origin");
        assert!(refused(&format!("{note}\u{2014} someone AAAA\n")), "a second signature");
        assert!(refused(&format!("{note}\n")), "a trailing blank line");
        assert!(refused(&note.replacen('\n', " \n", 1)), "trailing space");
        assert!(refused(&note.replace("\n\n", "\n")), "no blank line");
        assert!(refused(&sign_checkpoint(ORIGIN, 42, &[7; 32], &other)), "another key");
        let extended = sign_note(&format!("{}extension\n", checkpoint_text(ORIGIN, 42, &[7; 32])), ORIGIN, &key());
        assert!(refused(&extended), "extension lines");
        let leading_zero = sign_note(&format!("{ORIGIN}\n042\n{}\n", base64_encode(&[7; 32])), ORIGIN, &key());
        assert!(refused(&leading_zero), "non-canonical size");
        let short_root = sign_note(&format!("{ORIGIN}\n42\n{}\n", base64_encode(&[7; 31])), ORIGIN, &key());
        assert!(refused(&short_root), "short root");
    }

    /// The signed-note test vectors of Go's golang.org/x/mod/sumdb/note, which C2SP's
    /// signed-note format is taken from.
    #[test]
    fn go_signed_note_vectors() {
        let verifier = include_str!("../../tests/data/signed-note/verifier.txt").trim();
        // name+hex key id+base64(0x01 ‖ public key)
        let mut parts = verifier.splitn(3, '+');
        let (name, id, encoded) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let encoded = base64_decode(encoded).unwrap();
        assert_eq!(encoded[0], ALGORITHM_ED25519);
        let public: [u8; 32] = encoded[1..].try_into().unwrap();
        assert_eq!(format!("{:08x}", u32::from_be_bytes(key_id(name, &public))), id, "key id");
        let note = include_str!("../../tests/data/signed-note/note-1.txt");
        let text = open_note(note, name, &public).expect("the published note verifies");
        assert!(note.starts_with(text));
        let mut tampered = note.to_owned();
        tampered.replace_range(0..1, "X");
        assert!(open_note(&tampered, name, &public).is_err());

        // Signing the same text with the published private key gives the same note.
        let signer = include_str!("../../tests/data/signed-note/signer.txt").trim();
        let seed = base64_decode(signer.splitn(5, '+').nth(4).unwrap()).unwrap();
        assert_eq!(seed[0], ALGORITHM_ED25519);
        let signing_key = SigningKey::from_bytes(&seed[1..].try_into().unwrap());
        assert_eq!(signing_key.verifying_key().to_bytes(), public);
        assert_eq!(sign_note(text, name, &signing_key), note);

        // Two signatures (valid in Go, where unknown ones are ignored) are refused here:
        // a checkpoint carries exactly the ledger's signature.
        let two = include_str!("../../tests/data/signed-note/note-2.txt");
        assert_eq!(open_note(two, name, &public), Err(NoteError::Signatures(name.into())));
        let corrupted = include_str!("../../tests/data/signed-note/note-3.txt");
        assert!(open_note(corrupted, name, &public).is_err());
        let malformed = [
            include_bytes!("../../tests/data/signed-note/note-4.txt").as_slice(),
            include_bytes!("../../tests/data/signed-note/note-5.txt").as_slice(),
            include_bytes!("../../tests/data/signed-note/note-6.txt").as_slice(),
            include_bytes!("../../tests/data/signed-note/note-7.txt").as_slice(),
            include_bytes!("../../tests/data/signed-note/note-8.txt").as_slice(),
            include_bytes!("../../tests/data/signed-note/note-9.txt").as_slice(),
            include_bytes!("../../tests/data/signed-note/note-10.txt").as_slice(),
        ];
        for (number, note) in malformed.iter().enumerate() {
            // A note is text: bytes that are not UTF-8 never reach open_note.
            let refused = std::str::from_utf8(note).map_or(true, |note| open_note(note, name, &public).is_err());
            assert!(refused, "Go's malformed note {}", number + 4);
        }
    }
}
