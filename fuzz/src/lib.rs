//! What the fuzz targets share: fixed keys, and one valid body of each command type
//! signed with them. `examples/seeds.rs` writes the same envelopes as the seed corpus,
//! so the targets know which signatures are genuine.

use covoit::core::policy::Policy;
use covoit::core::protocol::{BodyWire, CommandWire, Envelope, OfferWire, PlaceWire, RequestWire, sign_body};
use ed25519_dalek::SigningKey;

pub const LEDGER: &str = "covoit/fuzz";
pub const NOT_AFTER: &str = "2030-01-01T00:00:00Z";
const ALICE: &str = "0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b";
const BOB: &str = "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d";
const OFFER: &str = "6f1c2a3e-0000-4000-8000-000000000001";
const REQUEST: &str = "6f1c2a3e-0000-4000-8000-000000000002";
const BOOKING: &str = "6f1c2a3e-0000-4000-8000-000000000003";

/// The keys the seeds are signed with: the operator's (the desk's), Alice's, Bob's.
pub fn keys() -> [SigningKey; 3] {
    [SigningKey::from_bytes(&[0x0b; 32]), SigningKey::from_bytes(&[0xa1; 32]), SigningKey::from_bytes(&[0xb0; 32])]
}

/// The signing key whose public key is `public`, if it is one of [`keys`].
pub fn known_key(public: &[u8; 32]) -> Option<SigningKey> {
    keys().into_iter().find(|key| key.verifying_key().as_bytes() == public)
}

fn body(account: &str, seq: &str, command: CommandWire) -> BodyWire {
    BodyWire {
        ledger: LEDGER.into(),
        account: account.into(),
        seq: seq.into(),
        not_after: NOT_AFTER.into(),
        by: None,
        command,
    }
}

/// One valid body of (nearly) every command type, each with the index of its signer in [`keys`].
pub fn sample_bodies() -> Vec<(usize, BodyWire)> {
    let place = |lat: &str, lon: &str| PlaceWire::at(lat, lon);
    let mut custodial = body(BOB, "4", CommandWire::Transfer { to: ALICE.into(), amount: "2".into(), memo: None });
    custodial.by = Some("operator".into());
    vec![
        (1, body(ALICE, "0", CommandWire::Register { name: "Alice Martin".into() })),
        (0, body("operator", "0", CommandWire::Approve { target: ALICE.into() })),
        (0, body("operator", "1", CommandWire::CreditSet { target: ALICE.into(), floor: "-50.00".into() })),
        (
            0,
            body(
                "operator",
                "2",
                CommandWire::Issue { to: ALICE.into(), amount: "20.00".into(), memo: Some("20 euros, cash".into()) },
            ),
        ),
        (
            1,
            body(
                ALICE,
                "1",
                CommandWire::Transfer {
                    to: BOB.into(),
                    amount: "3.5".into(),
                    memo: Some("lift to Objat ☕ \"é\"".into()),
                },
            ),
        ),
        (2, body(BOB, "1", CommandWire::Redeem { amount: "1.25".into(), memo: None })),
        (0, body("operator", "3", CommandWire::Custodial { target: BOB.into(), name: "Bob Dupont".into() })),
        (0, body("operator", "4", CommandWire::PolicySet { policy: Box::new(Policy::default()) })),
        (
            0,
            body(
                "operator",
                "5",
                CommandWire::PlaceSet {
                    point: "mairie".into(),
                    name: "Mairie d'Ayen".into(),
                    lat: "45.2512".into(),
                    lon: "1.3231".into(),
                },
            ),
        ),
        (0, body("operator", "6", CommandWire::PlaceRemove { point: "mairie".into() })),
        (
            2,
            body(
                BOB,
                "2",
                CommandWire::Offer(Box::new(OfferWire {
                    offer: OFFER.into(),
                    origin: place("45.248", "1.327"),
                    destination: place("45.264", "1.409"),
                    seats: 3,
                    detour_km: Some("4".into()),
                    departure: None,
                    weekdays: Some("mon,tue,wed,thu,fri".into()),
                    time: Some("07:30".into()),
                    until: Some("2027-06-30".into()),
                })),
            ),
        ),
        (
            2,
            body(
                BOB,
                "3",
                CommandWire::Offer(Box::new(OfferWire {
                    offer: OFFER.into(),
                    origin: PlaceWire::meeting_point("mairie"),
                    destination: place("45.264", "1.409"),
                    seats: 1,
                    detour_km: None,
                    departure: Some("2026-11-26T07:30:00Z".into()),
                    weekdays: None,
                    time: None,
                    until: None,
                })),
            ),
        ),
        (
            1,
            body(
                ALICE,
                "2",
                CommandWire::Request(Box::new(RequestWire {
                    request: REQUEST.into(),
                    pickup: place("45.25", "1.33"),
                    dropoff: place("45.263", "1.408"),
                    earliest: "2026-11-26T07:00:00Z".into(),
                    latest: "2026-11-26T08:00:00.5Z".into(),
                    seats: 1,
                })),
            ),
        ),
        (
            1,
            body(
                ALICE,
                "3",
                CommandWire::Book {
                    booking: BOOKING.into(),
                    offer: OFFER.into(),
                    request: REQUEST.into(),
                    date: Some("2026-11-26".into()),
                },
            ),
        ),
        (2, body(BOB, "4", CommandWire::Accept { booking: BOOKING.into() })),
        (2, body(BOB, "5", CommandWire::Decline { booking: BOOKING.into() })),
        (
            1,
            body(
                ALICE,
                "4",
                CommandWire::Cancel {
                    booking: None,
                    offer: Some(OFFER.into()),
                    request: None,
                    date: Some("2026-11-27".into()),
                    memo: Some("malade".into()),
                },
            ),
        ),
        (2, body(BOB, "6", CommandWire::Complete { booking: BOOKING.into() })),
        (1, body(ALICE, "5", CommandWire::Confirm { booking: BOOKING.into() })),
        (1, body(ALICE, "6", CommandWire::Dispute { booking: BOOKING.into(), memo: Some("jamais venu".into()) })),
        (
            0,
            body(
                "operator",
                "7",
                CommandWire::Resolve { booking: BOOKING.into(), outcome: "release".into(), memo: None },
            ),
        ),
        (0, custodial),
    ]
}

/// Every sample body, signed by its key.
pub fn signed_samples() -> Vec<Envelope> {
    let keys = keys();
    sample_bodies().iter().map(|(signer, body)| sign_body(&keys[*signer], body)).collect()
}

/// The envelope's bytes as a client posts them.
pub fn envelope_bytes(envelope: &Envelope) -> Vec<u8> {
    serde_json::to_vec(envelope).expect("an envelope serialises")
}
