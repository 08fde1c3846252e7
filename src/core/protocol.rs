//! The wire protocol of commands: envelope, signed message, body, verification.
//!
//! A command travels as `{"body", "key", "sig"}`, three standard base64 strings. The
//! signature covers `covoit/command/v1\n` followed by the body bytes, and the body is
//! a JSON object in RFC 8785 canonical form. [`open_envelope`] turns untrusted bytes
//! into a [`VerifiedCommand`] or says precisely why not; it needs no state, so the
//! HTTP handlers run it on any core before the single writer sees the command.
//! Whether the key is the account's, the seq the next one and the ledger ours is
//! the state machine's business (`core::ledger`).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

pub use crate::core::body::{
    Body, BodyWire, CancelTarget, Command, CommandWire, OfferSpec, OfferWire, PlaceRef, PlaceWire, RequestSpec,
    RequestWire, Resolution, Schedule,
};
use crate::core::body::{BodyFields, FieldsError, body_from_wire};
use crate::core::canonical::{self, JsonError};
use crate::core::money::MoneyError;

/// What every signed message starts with, so a covoit signature means nothing elsewhere.
pub const MESSAGE_PREFIX: &[u8] = b"covoit/command/v1\n";
/// Largest body, in bytes once decoded from base64.
pub const BODY_BYTES_MAX: usize = 8 * 1024;
/// Largest envelope, in bytes: the body in base64 plus the key, signature and keys.
pub const ENVELOPE_BYTES_MAX: usize = BODY_BYTES_MAX * 4 / 3 + 512;

/// The envelope as posted to `POST /v1/commands` and as stored in a leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub body: String,
    pub key: String,
    pub sig: String,
}

/// A command whose envelope, canonical body and signature have been checked against
/// the envelope's own key. Only [`open_envelope`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCommand {
    envelope: Envelope,
    body_bytes: Vec<u8>,
    key: [u8; 32],
    tx: [u8; 32],
    body: Body,
}

impl VerifiedCommand {
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    pub fn body_bytes(&self) -> &[u8] {
        &self.body_bytes
    }

    /// The public key that signed the body.
    pub fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// SHA-256 of the body bytes: the command's transaction id.
    pub fn tx(&self) -> &[u8; 32] {
        &self.tx
    }

    pub fn body(&self) -> &Body {
        &self.body
    }
}

/// Why an envelope is refused before any state is looked at.
/// The HTTP layer maps each variant to a status; [`ProtocolError::code`] is its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// 400 `malformed_json`.
    #[error("the {part} is not valid JSON: {detail}")]
    MalformedJson { part: &'static str, detail: String },
    /// 400 `duplicate_key`.
    #[error("in the {part}, the key \"{key}\" appears twice; signed JSON must have one reading")]
    DuplicateKey { part: &'static str, key: String },
    /// 400 `unknown_field`.
    #[error("the {part} has a field that is not part of the protocol: {detail}")]
    UnknownField { part: &'static str, detail: String },
    /// 400 `invalid_envelope`: a field missing or of the wrong JSON type.
    #[error("the envelope must be {{\"body\", \"key\", \"sig\"}}, three base64 strings: {0}")]
    InvalidEnvelope(String),
    /// 400 `malformed_base64`.
    #[error("the envelope's \"{0}\" is not standard base64 with padding")]
    MalformedBase64(&'static str),
    /// 400 `invalid_key`: not 32 bytes, or not a point of the curve.
    #[error("the envelope's \"key\" is not an Ed25519 public key (32 bytes encoding a curve point)")]
    InvalidKey,
    /// 400 `invalid_signature`: not 64 bytes.
    #[error("the envelope's \"sig\" is not an Ed25519 signature (64 bytes)")]
    InvalidSignature,
    /// 413 `body_too_large`.
    #[error("the body is {0} bytes; the limit is {BODY_BYTES_MAX}")]
    BodyTooLarge(usize),
    /// 400 `float_number`.
    #[error("{0}")]
    FloatNumber(JsonError),
    /// 400 `not_canonical`.
    #[error("{0}")]
    NotCanonical(JsonError),
    /// 400 `unknown_type`.
    #[error("the body's type is not a command this ledger knows: {0}")]
    UnknownType(String),
    /// 400 `invalid_field`: a field missing, of the wrong JSON type, or badly written.
    #[error("{0}")]
    InvalidField(String),
    /// 400 `invalid_amount`.
    #[error("{0}")]
    InvalidAmount(MoneyError),
    /// 401 `weak_key`: a key of small order, which could sign for everyone.
    #[error("the key is a weak (small-order) Ed25519 key and is refused")]
    WeakKey,
    /// 401 `bad_signature`.
    #[error("the signature does not verify for this body and key (verify_strict over \"covoit/command/v1\\n\" + body)")]
    BadSignature,
}

impl ProtocolError {
    /// The stable snake_case code of this refusal.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::MalformedJson { .. } => "malformed_json",
            ProtocolError::DuplicateKey { .. } => "duplicate_key",
            ProtocolError::UnknownField { .. } => "unknown_field",
            ProtocolError::InvalidEnvelope(_) => "invalid_envelope",
            ProtocolError::MalformedBase64(_) => "malformed_base64",
            ProtocolError::InvalidKey => "invalid_key",
            ProtocolError::InvalidSignature => "invalid_signature",
            ProtocolError::BodyTooLarge(_) => "body_too_large",
            ProtocolError::FloatNumber(_) => "float_number",
            ProtocolError::NotCanonical(_) => "not_canonical",
            ProtocolError::UnknownType(_) => "unknown_type",
            ProtocolError::InvalidField(_) => "invalid_field",
            ProtocolError::InvalidAmount(_) => "invalid_amount",
            ProtocolError::WeakKey => "weak_key",
            ProtocolError::BadSignature => "bad_signature",
        }
    }
}

/// Checks an envelope from untrusted bytes, down to the signature.
pub fn open_envelope(bytes: &[u8]) -> Result<VerifiedCommand, ProtocolError> {
    let envelope = parse_envelope(bytes)?;
    verify_envelope(envelope)
}

/// Checks an envelope from untrusted bytes down to the signature's last step, which
/// [`finish_verification`] does for many commands at once.
pub fn prepare_envelope(bytes: &[u8]) -> Result<PreparedCommand, ProtocolError> {
    check_envelope(parse_envelope(bytes)?)?.prepare()
}

/// A command checked in everything but the last step of its signature: the point
/// `[s]B − [k]A` is computed, and what is left is to compare its encoding with the
/// signature's R. Encoding a point takes a field inversion; [`finish_verification`]
/// encodes many points with one.
#[derive(Debug)]
pub struct PreparedCommand {
    command: SignedCommand,
    expected_r: EdwardsPoint,
}

/// Finishes the signature checks of `prepared`, each answer in its command's place:
/// together, the commands get exactly the answers `verify_strict` gives each alone.
pub fn finish_verification(prepared: Vec<PreparedCommand>) -> Vec<Result<VerifiedCommand, ProtocolError>> {
    if prepared.is_empty() {
        return Vec::new();
    }
    let points: Vec<EdwardsPoint> = prepared.iter().map(|item| item.expected_r).collect();
    let matches = encode_and_compare(&points, prepared.iter().map(|item| &item.command.sig));
    prepared
        .into_iter()
        .zip(matches)
        .map(|(item, matches)| if matches { Ok(item.command.verified()) } else { Err(ProtocolError::BadSignature) })
        .collect()
}

/// Whether each point's canonical encoding is its signature's R, the points encoded
/// together (one field inversion for all).
fn encode_and_compare<'a>(points: &[EdwardsPoint], signatures: impl Iterator<Item = &'a [u8; 64]>) -> Vec<bool> {
    let encodings = EdwardsPoint::compress_batch_alloc(points);
    encodings.iter().zip(signatures).map(|(encoding, sig)| encoding.as_bytes()[..] == sig[..32]).collect()
}

/// Checks an already parsed envelope (as read from a leaf), down to the signature.
pub fn verify_envelope(envelope: Envelope) -> Result<VerifiedCommand, ProtocolError> {
    check_envelope(envelope)?.verify()
}

/// A command whose envelope and canonical body are well formed, and whose signature
/// is still to be checked: singly with [`SignedCommand::verify`], or many at once
/// with [`verify_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCommand {
    envelope: Envelope,
    body_bytes: Vec<u8>,
    key: [u8; 32],
    sig: [u8; 64],
    tx: [u8; 32],
    body: Body,
}

impl SignedCommand {
    /// `verify_strict`, after refusing weak keys.
    pub fn verify(self) -> Result<VerifiedCommand, ProtocolError> {
        verify_signature(&self.key, &self.sig, &self.body_bytes)?;
        Ok(self.verified())
    }

    /// [`Self::verify`] but its last step, left to [`finish_verification`].
    pub fn prepare(self) -> Result<PreparedCommand, ProtocolError> {
        let expected_r = cached_public_key(&self.key)?.expected_r([MESSAGE_PREFIX, &self.body_bytes], &self.sig)?;
        Ok(PreparedCommand { command: self, expected_r })
    }

    pub fn body(&self) -> &Body {
        &self.body
    }

    /// SHA-256 of the body bytes.
    pub fn tx(&self) -> &[u8; 32] {
        &self.tx
    }

    fn verified(self) -> VerifiedCommand {
        let SignedCommand { envelope, body_bytes, key, tx, body, .. } = self;
        VerifiedCommand { envelope, body_bytes, key, tx, body }
    }
}

/// Checks everything of an envelope but its signature.
pub fn check_envelope(envelope: Envelope) -> Result<SignedCommand, ProtocolError> {
    let key_bytes = decode_base64("key", &envelope.key)?;
    let sig_bytes = decode_base64("sig", &envelope.sig)?;
    let body_bytes = decode_base64("body", &envelope.body)?;
    let key: [u8; 32] = key_bytes.try_into().map_err(|_| ProtocolError::InvalidKey)?;
    let sig: [u8; 64] = sig_bytes.try_into().map_err(|_| ProtocolError::InvalidSignature)?;
    if body_bytes.len() > BODY_BYTES_MAX {
        return Err(ProtocolError::BodyTooLarge(body_bytes.len()));
    }
    let body = parse_body(&body_bytes)?;
    let tx: [u8; 32] = Sha256::digest(&body_bytes).into();
    Ok(SignedCommand { envelope, body_bytes, key, sig, tx, body })
}

/// Verifies many signatures at once; on failure, names the first that
/// `verify_strict` refuses, as its position in `commands`.
///
/// The batch equation is the cofactorless one, `(Σ zᵢsᵢ)B = Σ zᵢRᵢ + Σ (zᵢkᵢ)Aᵢ`, with
/// random 128-bit `zᵢ` derived from `seed` (pick it at random, after the signatures
/// exist), terms of the same key merged, and `verify_strict`'s own point checks
/// (canonical `s`, no small-order `A` or `R`). A valid batch proves each signature
/// was made with its key; when the batch fails, `verify_strict` decides, one by one.
pub fn verify_batch(
    commands: Vec<SignedCommand>,
    seed: &[u8; 32],
) -> (Vec<VerifiedCommand>, Option<(usize, ProtocolError)>) {
    if batch_equation_holds(&commands, seed) {
        return (commands.into_iter().map(SignedCommand::verified).collect(), None);
    }
    verify_each(commands)
}

/// `verify_strict` on each command in turn: the verified ones before the first
/// failure, and that failure.
pub fn verify_each(commands: Vec<SignedCommand>) -> (Vec<VerifiedCommand>, Option<(usize, ProtocolError)>) {
    let mut verified = Vec::with_capacity(commands.len());
    for (position, command) in commands.into_iter().enumerate() {
        match command.verify() {
            Ok(command) => verified.push(command),
            Err(error) => return (verified, Some((position, error))),
        }
    }
    (verified, None)
}

fn batch_equation_holds(commands: &[SignedCommand], seed: &[u8; 32]) -> bool {
    let items = commands.iter().map(|command| BatchItem {
        key: &command.key,
        sig: &command.sig,
        message: [MESSAGE_PREFIX, &command.body_bytes],
    });
    batch_holds(items, seed)
}

/// One signature of a batch: the message is the concatenation of its two parts.
struct BatchItem<'a> {
    key: &'a [u8; 32],
    sig: &'a [u8; 64],
    message: [&'a [u8]; 2],
}

fn batch_holds<'a>(items: impl Iterator<Item = BatchItem<'a>>, seed: &[u8; 32]) -> bool {
    let mut basepoint_scalar = Scalar::ZERO;
    // One term per signature, one for the base point, one per key (few): sized up
    // front, as growing vectors of points would copy them again and again.
    let capacity = items.size_hint().0 + 64;
    let mut scalars = Vec::with_capacity(capacity);
    let mut points = Vec::with_capacity(capacity);
    let mut keys: HashMap<[u8; 32], usize> = HashMap::new();
    let mut key_terms: Vec<(Scalar, EdwardsPoint)> = Vec::new();
    for (position, item) in items.enumerate() {
        // Each distinct key is decompressed once per batch: villages have few signers.
        let slot = match keys.get(item.key) {
            Some(&slot) => slot,
            None => {
                let decompressed = CompressedEdwardsY(*item.key).decompress();
                let Some(point) =
                    decompressed.filter(|point| is_canonical_encoding(item.key) && !point.is_small_order())
                else {
                    return false;
                };
                key_terms.push((Scalar::ZERO, point));
                keys.insert(*item.key, key_terms.len() - 1);
                key_terms.len() - 1
            }
        };
        let r_bytes: [u8; 32] = item.sig[..32].try_into().expect("32 bytes");
        // verify_strict compares R's bytes with a computed, canonical R: a non-canonical
        // encoding never passes it, so it must not pass here.
        let decompressed = CompressedEdwardsY(r_bytes).decompress();
        let Some(r_point) = decompressed.filter(|point| is_canonical_encoding(&r_bytes) && !point.is_small_order())
        else {
            return false;
        };
        let s_bytes: [u8; 32] = item.sig[32..].try_into().expect("32 bytes");
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let mut hasher = Sha512::new();
        hasher.update(r_bytes);
        hasher.update(item.key);
        for part in item.message {
            hasher.update(part);
        }
        let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
        let z = batch_coefficient(seed, position as u64);
        basepoint_scalar += z * s;
        scalars.push(z);
        points.push(r_point);
        key_terms[slot].0 += z * k;
    }
    scalars.push(-basepoint_scalar);
    points.push(curve25519_dalek::constants::ED25519_BASEPOINT_POINT);
    for (scalar, point) in key_terms {
        scalars.push(scalar);
        points.push(point);
    }
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The batch's random coefficient for one signature: 128 bits of SHA-512(seed ‖ position).
fn batch_coefficient(seed: &[u8; 32], position: u64) -> Scalar {
    let mut hasher = Sha512::new();
    hasher.update(seed);
    hasher.update(position.to_le_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&digest[..16]);
    Scalar::from_bytes_mod_order(bytes)
}

/// The message an Ed25519 signature covers: the prefix, then the body bytes.
pub fn signed_message(body_bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(MESSAGE_PREFIX.len() + body_bytes.len());
    message.extend_from_slice(MESSAGE_PREFIX);
    message.extend_from_slice(body_bytes);
    message
}

/// `verify_strict`, after refusing keys that are not points or are of small order.
pub fn verify_signature(key: &[u8; 32], sig: &[u8; 64], body_bytes: &[u8]) -> Result<(), ProtocolError> {
    cached_public_key(key)?.verify_strict([MESSAGE_PREFIX, body_bytes], sig)
}

/// Keys decompressed lately, so that a signer's next command skips the square root.
static PUBLIC_KEYS: std::sync::Mutex<Option<HashMap<[u8; 32], PublicKey>>> = std::sync::Mutex::new(None);
/// Most keys kept decompressed; beyond it the cache starts again (a village has a
/// few hundred signers).
pub const PUBLIC_KEYS_CACHED_MAX: usize = 4096;

fn cached_public_key(key: &[u8; 32]) -> Result<PublicKey, ProtocolError> {
    if let Some(found) = PUBLIC_KEYS.lock().expect("the key cache's lock").as_ref().and_then(|keys| keys.get(key)) {
        return Ok(*found);
    }
    let parsed = PublicKey::parse(key)?;
    let mut keys = PUBLIC_KEYS.lock().expect("the key cache's lock");
    let keys = keys.get_or_insert_with(HashMap::new);
    if keys.len() >= PUBLIC_KEYS_CACHED_MAX {
        keys.clear();
    }
    keys.insert(*key, parsed);
    Ok(parsed)
}

/// An Ed25519 public key that passed the key checks: canonically encoded, a curve
/// point, not of small order. Decompressed once, kept negated for verification.
#[derive(Debug, Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; 32],
    minus_point: EdwardsPoint,
}

impl PublicKey {
    pub fn parse(bytes: &[u8; 32]) -> Result<PublicKey, ProtocolError> {
        if !is_canonical_encoding(bytes) {
            return Err(ProtocolError::InvalidKey);
        }
        let point = CompressedEdwardsY(*bytes).decompress().ok_or(ProtocolError::InvalidKey)?;
        if point.is_small_order() {
            return Err(ProtocolError::WeakKey);
        }
        Ok(PublicKey { bytes: *bytes, minus_point: -point })
    }

    /// Exactly ed25519-dalek's `verify_strict` over the concatenated `message`, with
    /// one field exponentiation where it has two. It decompresses R (a square root) to
    /// refuse small-order points, then compresses the computed point (an inversion) to
    /// compare bytes. Here R stays bytes: the canonical encodings of the eight
    /// small-order points are refused as bytes, and bytes that encode no point, or not
    /// canonically, never equal what `compress` gives. The differential test below
    /// holds it to `verify_strict` on Wycheproof, RFC 8032 and mutated signatures.
    pub fn verify_strict(&self, message: [&[u8]; 2], sig: &[u8; 64]) -> Result<(), ProtocolError> {
        let expected_r = self.expected_r(message, sig)?;
        if expected_r.compress().as_bytes()[..] == sig[..32] { Ok(()) } else { Err(ProtocolError::BadSignature) }
    }

    /// `verify_strict`'s checks but the last: R canonically encoded and not of small
    /// order, s canonical. Returns `[s]B − [k]A`, the point a valid signature's R encodes.
    fn expected_r(&self, message: [&[u8]; 2], sig: &[u8; 64]) -> Result<EdwardsPoint, ProtocolError> {
        let r_bytes: [u8; 32] = sig[..32].try_into().expect("32 bytes");
        if !is_canonical_encoding(&r_bytes) || small_order_encodings().contains(&r_bytes) {
            return Err(ProtocolError::BadSignature);
        }
        let s_bytes: [u8; 32] = sig[32..].try_into().expect("32 bytes");
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(ProtocolError::BadSignature)?;
        let mut hasher = Sha512::new();
        hasher.update(r_bytes);
        hasher.update(self.bytes);
        for part in message {
            hasher.update(part);
        }
        let k = Scalar::from_bytes_mod_order_wide(&hasher.finalize().into());
        Ok(EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &self.minus_point, &s))
    }
}

/// The canonical encodings of the eight points of small order.
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: std::sync::LazyLock<[[u8; 32]; 8]> =
        std::sync::LazyLock::new(|| EIGHT_TORSION.map(|point| point.compress().to_bytes()));
    &ENCODINGS
}

/// Whether a compressed Edwards point is written canonically: its y coordinate (the
/// low 255 bits) below p = 2^255 − 19. A point has one such encoding; the few others
/// (y + p) are refused, for keys and for `R`.
pub fn is_canonical_encoding(point: &[u8; 32]) -> bool {
    let mut y = *point;
    y[31] &= 0x7f;
    // Compare y with p = 7fff…ffed, most significant byte first.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for at in (0..32).rev() {
        if y[at] != p[at] {
            return y[at] < p[at];
        }
    }
    false
}

/// Serialises a body in canonical form and signs it: what every client does.
pub fn sign_body(signing_key: &SigningKey, body: &BodyWire) -> Envelope {
    let body_bytes = canonical::to_canonical_vec(body);
    let signature = signing_key.sign(&signed_message(&body_bytes));
    Envelope {
        body: BASE64.encode(&body_bytes),
        key: BASE64.encode(signing_key.verifying_key().as_bytes()),
        sig: BASE64.encode(signature.to_bytes()),
    }
}

pub fn base64_encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Decodes standard base64 with padding; refuses any other spelling of the bytes.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

fn decode_base64(field: &'static str, text: &str) -> Result<Vec<u8>, ProtocolError> {
    base64_decode(text).ok_or(ProtocolError::MalformedBase64(field))
}

fn parse_envelope(bytes: &[u8]) -> Result<Envelope, ProtocolError> {
    // The fast path: an object with the three fields, each once, parses straight into
    // the struct (serde refuses a repeated or unknown field, and anything but strings).
    // serde would fill the struct from an array too, hence the first byte.
    if bytes.trim_ascii_start().starts_with(b"{") {
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes) {
            return Ok(envelope);
        }
    }
    // The slow path, to say precisely what is wrong.
    let kind = match canonical::parse_strict(bytes).map_err(|error| json_error("envelope", error))? {
        object @ serde_json::Value::Object(_) => return envelope_from_object(object),
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Null => "null",
    };
    Err(ProtocolError::InvalidEnvelope(format!("this is {kind}, not an object")))
}

fn envelope_from_object(object: serde_json::Value) -> Result<Envelope, ProtocolError> {
    serde_json::from_value::<Envelope>(object).map_err(|error| {
        let detail = error.to_string();
        if detail.starts_with("unknown field") {
            ProtocolError::UnknownField { part: "envelope", detail }
        } else {
            ProtocolError::InvalidEnvelope(detail)
        }
    })
}

fn json_error(part: &'static str, error: JsonError) -> ProtocolError {
    match error {
        JsonError::DuplicateKey(key) => ProtocolError::DuplicateKey { part, key },
        JsonError::FloatNumber(_) => ProtocolError::FloatNumber(error),
        JsonError::NotCanonical => ProtocolError::NotCanonical(error),
        JsonError::Malformed(_) | JsonError::TooDeep => {
            ProtocolError::MalformedJson { part, detail: error.to_string() }
        }
    }
}

/// Parses body bytes: canonical JSON, then the wire struct, then the domain types.
pub fn parse_body(body_bytes: &[u8]) -> Result<Body, ProtocolError> {
    if let Some(Ok(wire)) = canonical::parse_presorted::<BodyFields>(body_bytes).map(BodyFields::into_wire) {
        return body_from_wire(wire);
    }
    // The slow path, to say precisely what is wrong.
    let value = canonical::check_canonical(body_bytes).map_err(|error| json_error("body", error))?;
    if !value.is_object() {
        return Err(ProtocolError::InvalidField("the body must be a JSON object".into()));
    }
    let fields = serde_json::from_value::<BodyFields>(value).map_err(classify_body_error)?;
    if !canonical::serializes_to(&fields, body_bytes) {
        // Canonical JSON, but not as a client writes this body: a null instead of an
        // absent field, say. One meaning has one spelling.
        return Err(ProtocolError::NotCanonical(JsonError::NotCanonical));
    }
    let wire = fields.into_wire().map_err(|error| match error {
        FieldsError::UnknownType(kind) => ProtocolError::UnknownType(format!("\"{kind}\"")),
        FieldsError::NotOfType { field, kind } => ProtocolError::UnknownField {
            part: "body",
            detail: format!("\"{field}\" is not a field of a \"{kind}\" command"),
        },
        FieldsError::Missing(field) => ProtocolError::InvalidField(format!("the body has no \"{field}\"")),
    })?;
    body_from_wire(wire)
}

/// Sorts serde's message about a body into our codes; the unit tests pin each form.
fn classify_body_error(error: serde_json::Error) -> ProtocolError {
    let detail = error.to_string();
    if detail.starts_with("unknown field") {
        ProtocolError::UnknownField { part: "body", detail }
    } else if detail.starts_with("missing field `type`") {
        ProtocolError::InvalidField("the body has no \"type\"".into())
    } else {
        ProtocolError::InvalidField(format!("the body's fields are not right: {detail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ids::Seq;
    use ed25519_dalek::{Signature, VerifyingKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn transfer(amount: &str) -> BodyWire {
        BodyWire {
            ledger: "covoit/test".into(),
            account: "0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b".into(),
            seq: "3".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
            by: None,
            command: CommandWire::Transfer {
                to: "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d".into(),
                amount: amount.into(),
                memo: Some("pain".into()),
            },
        }
    }

    fn envelope_bytes(envelope: &Envelope) -> Vec<u8> {
        serde_json::to_vec(envelope).unwrap()
    }

    /// Signs arbitrary body bytes, canonical or not, as a hostile client could.
    fn sign_raw(signing_key: &SigningKey, body_bytes: &[u8]) -> Vec<u8> {
        let signature = signing_key.sign(&signed_message(body_bytes));
        envelope_bytes(&Envelope {
            body: BASE64.encode(body_bytes),
            key: BASE64.encode(signing_key.verifying_key().as_bytes()),
            sig: BASE64.encode(signature.to_bytes()),
        })
    }

    fn code_of(bytes: &[u8]) -> &'static str {
        match open_envelope(bytes) {
            Ok(_) => "ok",
            Err(error) => error.code(),
        }
    }

    #[test]
    fn a_signed_body_round_trips() {
        let envelope = sign_body(&key(1), &transfer("12.30"));
        let verified = open_envelope(&envelope_bytes(&envelope)).unwrap();
        assert_eq!(verified.body().seq, Seq::new(3));
        assert_eq!(verified.key(), key(1).verifying_key().as_bytes());
        assert_eq!(verified.envelope(), &envelope);
        let Command::Transfer { amount, memo, .. } = &verified.body().command else { panic!("a transfer") };
        assert_eq!(amount.minor(), 1230);
        assert_eq!(memo.as_ref().unwrap().as_str(), "pain");
        let expected_tx: [u8; 32] = Sha256::digest(verified.body_bytes()).into();
        assert_eq!(verified.tx(), &expected_tx);
    }

    #[test]
    fn refusals_have_their_codes() {
        let good = sign_body(&key(1), &transfer("1.00"));
        let check =
            |bytes: &[u8], expected: &str| assert_eq!(code_of(bytes), expected, "{}", String::from_utf8_lossy(bytes));

        check(&envelope_bytes(&good), "ok");
        check(b"{", "malformed_json");
        check(b"[]", "invalid_envelope");
        // serde fills a struct from an array too; the envelope is an object.
        let array = format!(r#"["{}","{}","{}"]"#, good.body, good.key, good.sig);
        check(array.as_bytes(), "invalid_envelope");
        check(format!(" \n{}", String::from_utf8(envelope_bytes(&good)).unwrap()).as_bytes(), "ok");
        check(br#"{"body":"AA==","key":"AA=="}"#, "invalid_envelope");
        let extra = format!(r#"{{"body":"{}","key":"{}","sig":"{}","x":"1"}}"#, good.body, good.key, good.sig);
        check(extra.as_bytes(), "unknown_field");
        let twice =
            format!(r#"{{"body":"{}","body":"{}","key":"{}","sig":"{}"}}"#, good.body, good.body, good.key, good.sig);
        check(twice.as_bytes(), "duplicate_key");
        let bad_base64 = Envelope { body: "not base64!".into(), ..good.clone() };
        check(&envelope_bytes(&bad_base64), "malformed_base64");
        let unpadded = Envelope { key: good.key.trim_end_matches('=').into(), ..good.clone() };
        check(&envelope_bytes(&unpadded), "malformed_base64");
        let short_key = Envelope { key: BASE64.encode([1u8; 31]), ..good.clone() };
        check(&envelope_bytes(&short_key), "invalid_key");
        let short_sig = Envelope { sig: BASE64.encode([1u8; 63]), ..good.clone() };
        check(&envelope_bytes(&short_sig), "invalid_signature");
        let other_key = Envelope { key: BASE64.encode(key(2).verifying_key().as_bytes()), ..good.clone() };
        check(&envelope_bytes(&other_key), "bad_signature");
        let mut flipped = BASE64.decode(&good.sig).unwrap();
        flipped[10] ^= 1;
        check(&envelope_bytes(&Envelope { sig: BASE64.encode(&flipped), ..good.clone() }), "bad_signature");
        check(&sign_raw(&key(1), &vec![b' '; BODY_BYTES_MAX + 1]), "body_too_large");
    }

    #[test]
    fn body_refusals_have_their_codes() {
        let check =
            |body: &str, expected: &str| assert_eq!(code_of(&sign_raw(&key(1), body.as_bytes())), expected, "{body}");
        let canonical = String::from_utf8(canonical::to_canonical_vec(&transfer("1.00"))).unwrap();
        check(&canonical, "ok");
        check(&canonical.replace(r#""amount":"1.00""#, r#""amount": "1.00""#), "not_canonical");
        check(&canonical.replace(r#""amount":"1.00""#, r#""amount":1.5"#), "float_number");
        check(&canonical.replace(r#""amount":"1.00""#, r#""amount":100"#), "invalid_field");
        check(&canonical.replace(r#""amount":"1.00""#, r#""amount":"1.001""#), "invalid_amount");
        check(&canonical.replace(r#""amount":"1.00""#, r#""amount":"-1.00""#), "invalid_amount");
        check(&canonical.replace(r#""amount":"1.00""#, r#""amount":"1.00","amount":"2.00""#), "duplicate_key");
        check(&canonical.replace(r#""seq":"3""#, r#""seq":"3","surprise":"1""#), "unknown_field");
        check(&canonical.replace(r#""seq":"3""#, r#""seq":"03""#), "invalid_field");
        check(&canonical.replace(r#""seq":"3""#, r#""seq":3"#), "invalid_field");
        check(&canonical.replace(r#""not_after":"2030-01-01T00:00:00Z""#, r#""not_after":"soon""#), "invalid_field");
        check(&canonical.replace(r#""type":"transfer""#, r#""type":"steal""#), "unknown_type");
        check(&canonical.replace(r#","type":"transfer""#, ""), "invalid_field");
        check(&canonical.replace(r#""memo":"pain","#, ""), "ok");
        check(&canonical.replace(r#""memo":"pain""#, r#""memo":"""#), "invalid_field");
        check(&canonical.replace(r#""memo":"pain""#, r#""memo":null"#), "not_canonical");
        check(r#"["transfer"]"#, "invalid_field");
        check("{", "malformed_json");
    }

    #[test]
    fn registration_needs_a_member_uuid() {
        let register = |account: &str| BodyWire {
            ledger: "covoit/test".into(),
            account: account.into(),
            seq: "0".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
            by: None,
            command: CommandWire::Register { name: "Élise".into() },
        };
        let envelope = sign_body(&key(1), &register("0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b"));
        assert!(open_envelope(&envelope_bytes(&envelope)).is_ok());
        for account in ["operator", "reserve"] {
            let envelope = sign_body(&key(1), &register(account));
            assert_eq!(open_envelope(&envelope_bytes(&envelope)).unwrap_err().code(), "invalid_field");
        }
    }

    fn signed(key: &SigningKey, amount: &str) -> SignedCommand {
        check_envelope(sign_body(key, &transfer(amount))).unwrap()
    }

    #[test]
    fn a_batch_verifies_what_verify_strict_verifies_and_names_the_first_failure() {
        let seed = [5u8; 32];
        let keys: Vec<SigningKey> = (1..=4).map(key).collect();
        let good: Vec<SignedCommand> = (0..40).map(|n| signed(&keys[n % 4], &format!("{}.00", n + 1))).collect();
        let (verified, failure) = verify_batch(good.clone(), &seed);
        assert_eq!((verified.len(), failure), (40, None));
        assert!(verify_batch(Vec::new(), &seed).0.is_empty());
        // One signature over another body, at position 17.
        let mut bad = good.clone();
        bad[17].sig = good[18].sig;
        let (verified, failure) = verify_batch(bad, &seed);
        assert_eq!((verified.len(), failure), (17, Some((17, ProtocolError::BadSignature))));
        // A signature with a non-canonical s (s + ℓ) is refused as verify_strict does.
        let mut malleable = good.clone();
        let s = Scalar::from_canonical_bytes(malleable[3].sig[32..].try_into().unwrap()).unwrap();
        let ell_plus_s = add_group_order(s.to_bytes());
        malleable[3].sig[32..].copy_from_slice(&ell_plus_s);
        assert_eq!(verify_batch(malleable, &seed).1.unwrap().0, 3);
        // A weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut weak = good;
        weak[39].key = identity;
        assert_eq!(verify_batch(weak, &seed).1, Some((39, ProtocolError::WeakKey)));
    }

    /// The little-endian bytes of `s + ℓ`, where ℓ is the group order.
    fn add_group_order(s: [u8; 32]) -> [u8; 32] {
        let ell: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for at in 0..32 {
            let total = u16::from(s[at]) + u16::from(ell[at]) + carry;
            sum[at] = total as u8;
            carry = total >> 8;
        }
        sum
    }

    /// Wycheproof's Ed25519 vectors through the batch equation: each valid signature
    /// passes alone and among valid ones; each invalid one fails the batch it is in.
    #[test]
    fn wycheproof_vectors_in_batches() {
        use wycheproof::TestResult;
        let test_set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
        let mut cases = Vec::new();
        for group in test_set.test_groups {
            let key: [u8; 32] = group.key.pk.as_ref().try_into().unwrap();
            for test in group.tests {
                let Ok(sig) = <[u8; 64]>::try_from(test.sig.as_ref()) else { continue };
                cases.push((key, sig, test.msg.to_vec(), test.result == TestResult::Valid, test.tc_id));
            }
        }
        fn item(case: &([u8; 32], [u8; 64], Vec<u8>, bool, usize)) -> BatchItem<'_> {
            BatchItem { key: &case.0, sig: &case.1, message: [case.2.as_slice(), &[]] }
        }
        let valid: Vec<_> = cases.iter().filter(|case| case.3).collect();
        assert!(valid.len() > 10 && cases.len() > 100);
        assert!(batch_holds(valid.iter().map(|case| item(case)), &[1; 32]), "all valid ones together");
        for case in &cases {
            let alone = batch_holds(std::iter::once(item(case)), &[2; 32]);
            assert_eq!(alone, case.3, "wycheproof {} alone", case.4);
            let with_valid = batch_holds(valid.iter().map(|v| item(v)).chain(std::iter::once(item(case))), &[3; 32]);
            assert_eq!(with_valid, case.3, "wycheproof {} among valid ones", case.4);
        }
    }

    #[test]
    fn canonical_point_encodings() {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        assert!(!is_canonical_encoding(&p), "y = p");
        let mut p_plus_2 = p;
        p_plus_2[0] = 0xef;
        assert!(!is_canonical_encoding(&p_plus_2), "y = p + 2");
        let mut p_minus_1 = p;
        p_minus_1[0] = 0xec;
        assert!(is_canonical_encoding(&p_minus_1), "y = p - 1");
        let mut with_sign = p_minus_1;
        with_sign[31] |= 0x80;
        assert!(is_canonical_encoding(&with_sign), "the sign bit is not part of y");
        assert!(is_canonical_encoding(key(1).verifying_key().as_bytes()));
        // y = p + 2 ≡ 2 written the long way, as a key: refused before any curve math.
        assert_eq!(verify_signature(&p_plus_2, &[0; 64], b"{}"), Err(ProtocolError::InvalidKey));
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (0, 1): small order, and a valid curve point encoding.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(verify_signature(&identity, &[0u8; 64], b"{}"), Err(ProtocolError::WeakKey));
    }

    /// RFC 8032 section 7.1: the published Ed25519 test vectors, signed and verified.
    #[test]
    fn rfc8032_vectors() {
        let vectors = include_str!("../../tests/data/rfc8032_ed25519.txt");
        let hex = |text: &str| -> Vec<u8> {
            if text == "-" {
                return Vec::new();
            }
            (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).unwrap()).collect()
        };
        let mut count = 0;
        for line in vectors.lines().filter(|line| !line.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (secret, public, message, signature) = (hex(fields[0]), hex(fields[1]), hex(fields[2]), hex(fields[3]));
            let signing_key = SigningKey::from_bytes(&secret.try_into().unwrap());
            assert_eq!(signing_key.verifying_key().as_bytes().as_slice(), public.as_slice());
            assert_eq!(signing_key.sign(&message).to_bytes().as_slice(), signature.as_slice());
            let verifying_key = VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
            let signature = Signature::from_bytes(&signature.try_into().unwrap());
            assert!(verifying_key.verify_strict(&message, &signature).is_ok());
            count += 1;
        }
        assert_eq!(count, 5);
    }

    /// k = H(R ‖ A ‖ message) mod ℓ, as a verifier computes it.
    fn challenge(r: &[u8; 32], key: &[u8; 32], message: &[u8]) -> Scalar {
        Scalar::from_bytes_mod_order_wide(
            &Sha512::new().chain_update(r).chain_update(key).chain_update(message).finalize().into(),
        )
    }

    /// [`PublicKey::verify_strict`] against ed25519-dalek's `verify_strict`: the same
    /// answer on Wycheproof's vectors, RFC 8032's, and many mutated signatures (bits
    /// flipped in R, s and the message; R or s replaced by non-canonical, small-order
    /// and mixed-order values; signatures whose equation holds with R of small order).
    #[test]
    fn our_verify_strict_is_dalek_verify_strict() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let dalek = |key: &[u8; 32], message: &[u8], sig: &[u8; 64]| -> Result<(), ProtocolError> {
            if !is_canonical_encoding(key) {
                return Err(ProtocolError::InvalidKey);
            }
            let verifying_key = VerifyingKey::from_bytes(key).map_err(|_| ProtocolError::InvalidKey)?;
            if verifying_key.is_weak() {
                return Err(ProtocolError::WeakKey);
            }
            verifying_key.verify_strict(message, &Signature::from_bytes(sig)).map_err(|_| ProtocolError::BadSignature)
        };
        let ours =
            |key: &[u8; 32], message: &[u8], sig: &[u8; 64]| PublicKey::parse(key)?.verify_strict([message, &[]], sig);
        let mut cases: Vec<([u8; 32], Vec<u8>, [u8; 64])> = Vec::new();
        let test_set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
        for group in test_set.test_groups {
            let key: [u8; 32] = group.key.pk.as_ref().try_into().unwrap();
            for test in group.tests {
                if let Ok(sig) = <[u8; 64]>::try_from(test.sig.as_ref()) {
                    cases.push((key, test.msg.to_vec(), sig));
                }
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300u64 {
            let signing_key = key((round % 255) as u8 + 1);
            let message: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            let good = signing_key.sign(&message).to_bytes();
            let public = signing_key.verifying_key().to_bytes();
            cases.push((public, message.clone(), good));
            let mut flipped = good;
            flipped[(next() % 64) as usize] ^= 1 << (next() % 8);
            cases.push((public, message.clone(), flipped));
            let mut other_message = message.clone();
            other_message.push(next() as u8);
            cases.push((public, other_message, good));
            // R with a torsion part added, and R replaced by a small-order point.
            let r = CompressedEdwardsY(good[..32].try_into().unwrap()).decompress().unwrap();
            let torsion = EIGHT_TORSION[(1 + next() % 7) as usize];
            for r_bytes in [(r + torsion).compress().to_bytes(), torsion.compress().to_bytes()] {
                let mut mixed = good;
                mixed[..32].copy_from_slice(&r_bytes);
                cases.push((public, message.clone(), mixed));
            }
            // Made by the key's owner so that [s]B − [k]A = R holds with R of small order
            // (the identity for this key, s = k·a): verify_strict refuses R itself.
            let a = signing_key.to_scalar();
            let identity = EdwardsPoint::default().compress().to_bytes();
            let k = challenge(&identity, &public, &message);
            let mut small_r = [0u8; 64];
            small_r[..32].copy_from_slice(&identity);
            small_r[32..].copy_from_slice((k * a).as_bytes());
            cases.push((public, message.clone(), small_r));
            // The same with a key that has a torsion part (A + T, T of order 8): then
            // [s]B − [k]A = −[k]T, a small-order point the owner can aim R at.
            let mixed_key = (EdwardsPoint::mul_base(&a) + EIGHT_TORSION[1]).compress().to_bytes();
            for attempt in 0..16u8 {
                let mut aimed_message = message.clone();
                aimed_message.push(attempt);
                for r_point in EIGHT_TORSION {
                    let r_bytes = r_point.compress().to_bytes();
                    let k = challenge(&r_bytes, &mixed_key, &aimed_message);
                    if -(EIGHT_TORSION[1] * k) == r_point {
                        let mut aimed = [0u8; 64];
                        aimed[..32].copy_from_slice(&r_bytes);
                        aimed[32..].copy_from_slice((k * a).as_bytes());
                        cases.push((mixed_key, aimed_message.clone(), aimed));
                    }
                }
            }
            // s + l: the same scalar, non-canonically written.
            let mut s_plus_l = good;
            let s = Scalar::from_canonical_bytes(good[32..].try_into().unwrap()).unwrap();
            // l = 2^252 + 27742317777372353535851937790883648493, little-endian.
            let l_bytes: [u8; 32] = [
                0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            ];
            let mut carry = 0u16;
            for at in 0..32 {
                let sum = u16::from(s.as_bytes()[at]) + u16::from(l_bytes[at]) + carry;
                s_plus_l[32 + at] = sum as u8;
                carry = sum >> 8;
            }
            if carry == 0 {
                cases.push((public, message.clone(), s_plus_l));
            }
            // R written with y + p where that is still below 2^255.
            let mut r_long = good;
            let mut y = [0u8; 32];
            y.copy_from_slice(&good[..32]);
            y[31] &= 0x7f;
            if y[1..].iter().all(|byte| *byte == 0) && y[0] < 19 {
                let mut p = [0xffu8; 32];
                p[0] = 0xed;
                p[31] = 0x7f;
                p[0] = p[0].wrapping_add(y[0]);
                r_long[..32].copy_from_slice(&p);
                r_long[31] |= good[31] & 0x80;
                cases.push((public, message.clone(), r_long));
            }
        }
        let mut valid = 0;
        let aimed = cases
            .iter()
            .filter(|(key, ..)| !PublicKey::parse(key).is_ok_and(|key| key.minus_point.is_torsion_free()))
            .count();
        assert!(aimed > 20, "{aimed} signatures by keys with a torsion part");
        for (key, message, sig) in &cases {
            let expected = dalek(key, message, sig);
            assert_eq!(ours(key, message, sig), expected, "key {key:?} sig {sig:?}");
            valid += usize::from(expected.is_ok());
        }
        assert!(cases.len() > 1500 && valid > 300, "{} cases, {valid} valid", cases.len());

        // The same cases in batches of several sizes, as the writer finishes them: the
        // last step done for a whole batch at once gives each case dalek's answer.
        let prepared: Vec<_> = cases
            .iter()
            .map(|(key, message, sig)| PublicKey::parse(key).and_then(|key| key.expected_r([message, &[]], sig)))
            .collect();
        for size in [1, 2, 25, cases.len()] {
            for (chunk, prepared) in cases.chunks(size).zip(prepared.chunks(size)) {
                let ready: Vec<(EdwardsPoint, &[u8; 64])> = chunk
                    .iter()
                    .zip(prepared)
                    .filter_map(|((_, _, sig), point)| point.as_ref().ok().map(|point| (*point, sig)))
                    .collect();
                let points: Vec<EdwardsPoint> = ready.iter().map(|(point, _)| *point).collect();
                let mut matches = encode_and_compare(&points, ready.iter().map(|(_, sig)| *sig)).into_iter();
                for ((key, message, sig), point) in chunk.iter().zip(prepared) {
                    let batched = match point {
                        Ok(_) if matches.next().unwrap() => Ok(()),
                        Ok(_) => Err(ProtocolError::BadSignature),
                        Err(error) => Err(error.clone()),
                    };
                    assert_eq!(batched, dalek(key, message, sig), "batches of {size}: key {key:?} sig {sig:?}");
                }
            }
        }
    }

    /// Commands prepared one by one and finished together: a bad signature among good
    /// ones is refused, and only it.
    #[test]
    fn a_batch_finishes_each_signature_on_its_own() {
        let amounts = ["1.00", "2.00", "3.00", "4.00", "5.00", "6.00"];
        let mut envelopes: Vec<Envelope> =
            amounts.iter().enumerate().map(|(at, amount)| sign_body(&key(at as u8 + 1), &transfer(amount))).collect();
        // A bit of R flipped: still canonical, so only the last step can refuse it.
        let mut broken = BASE64.decode(&envelopes[3].sig).unwrap();
        broken[5] ^= 0x40;
        envelopes[3].sig = BASE64.encode(&broken);
        let prepared: Vec<PreparedCommand> = envelopes
            .iter()
            .map(|envelope| prepare_envelope(&envelope_bytes(envelope)).expect("checked up to the last step"))
            .collect();
        let finished = finish_verification(prepared);
        assert_eq!(finished.len(), amounts.len());
        for (at, result) in finished.iter().enumerate() {
            if at == 3 {
                assert_eq!(result.as_ref().unwrap_err(), &ProtocolError::BadSignature);
            } else {
                assert_eq!(result.as_ref().unwrap().key(), key(at as u8 + 1).verifying_key().as_bytes());
            }
        }
        assert!(open_envelope(&envelope_bytes(&envelopes[3])).is_err(), "open_envelope agrees");
        assert!(finish_verification(Vec::new()).is_empty());
    }

    /// Wycheproof's Ed25519 verification vectors: our check accepts exactly the valid ones.
    #[test]
    fn wycheproof_vectors() {
        use wycheproof::TestResult;
        let test_set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
        let mut count = 0;
        for group in test_set.test_groups {
            let key: [u8; 32] = group.key.pk.as_ref().try_into().unwrap();
            for test in group.tests {
                let verified = match <[u8; 64]>::try_from(test.sig.as_ref()) {
                    Ok(sig) => PublicKey::parse(&key).and_then(|key| key.verify_strict([&test.msg, &[]], &sig)).is_ok(),
                    Err(_) => false,
                };
                let expected = test.result == TestResult::Valid;
                assert_eq!(verified, expected, "wycheproof test {} ({})", test.tc_id, test.comment);
                count += 1;
            }
        }
        assert!(count > 100, "{count} wycheproof cases ran");
    }
}
