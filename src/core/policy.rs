//! Operator policy and the ledger's founding facts (the genesis event).
//!
//! Every number of the rules is policy with Ayen's value as default. The initial
//! policy is written into leaf 0, so the rules in force at any leaf can be known from
//! the log alone. Decimal policy values are strings, like every decimal on the wire.

use serde::{Deserialize, Serialize};

/// The local currency: its code and decimals (always 2: amounts are counted in cents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    pub code: String,
    pub decimals: u32,
}

impl Default for Currency {
    fn default() -> Currency {
        Currency { code: "Y'ACA".to_owned(), decimals: crate::core::money::MINOR_DIGITS }
    }
}

/// The rules the operator sets. Defaults are Ayen's (see the design brief, §2 and §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A new account is pending until the desk approves it (ID and charter checked).
    pub approval_required: bool,
    /// Fare per passenger and kilometre, in currency units.
    pub fare_per_km: String,
    /// Road distance = great-circle distance × this factor.
    pub road_factor: String,
    /// Trips shorter than this (km, road distance) are refused.
    pub trip_km_min: String,
    /// Trips longer than this (km, road distance) are refused: no competing with taxis.
    pub trip_km_max: String,
    /// A person takes part in at most this many trips a day.
    pub trips_per_day_max: u32,
    /// A person's trips start at least this many minutes apart.
    pub trip_gap_minutes_min: u32,
    /// The detour limit is the larger of this (km) and `detour_share_max` of the route.
    pub detour_km_min: String,
    pub detour_share_max: String,
    /// Average speed used to estimate pickup times, km/h.
    pub average_speed_kmh: u32,
    /// A completed ride neither confirmed nor disputed settles after this many hours.
    pub auto_settle_hours: u32,
    /// Who pays the fare: "passenger" (Ayen) or a sponsor scheme.
    pub payer: String,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            approval_required: true,
            fare_per_km: "0.06".to_owned(),
            road_factor: "1.3".to_owned(),
            trip_km_min: "2".to_owned(),
            trip_km_max: "25".to_owned(),
            trips_per_day_max: 4,
            trip_gap_minutes_min: 30,
            detour_km_min: "2".to_owned(),
            detour_share_max: "0.30".to_owned(),
            average_speed_kmh: 50,
            auto_settle_hours: 24,
            payer: "passenger".to_owned(),
        }
    }
}

/// Leaf 0: the facts an auditor starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub ledger: String,
    pub currency: Currency,
    /// base64 of the ledger's Ed25519 public key (it signs checkpoints).
    pub ledger_key: String,
    /// base64 of the operator's Ed25519 public key (it signs desk commands).
    pub operator_key: String,
    pub policy: Policy,
}

/// A server event: a leaf that no client signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Event {
    #[serde(rename = "genesis")]
    Genesis(Genesis),
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Genesis(_) => "genesis",
        }
    }
}
