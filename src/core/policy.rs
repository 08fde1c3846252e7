//! Operator policy, the genesis event and the other server events.
//!
//! Every number of the rules is policy with Ayen's value as default. The initial
//! policy is written into leaf 0 and every change is a signed `policy.set`, so the
//! rules in force at any leaf are known from the log alone. On the wire decimal
//! values are strings ([`Policy`]); [`Rules`] is the same policy parsed and checked,
//! in the integer units the state machine computes with.
//!
//! The fields of these structs are declared in sorted order: their serde form is
//! then their canonical form (see `canonical::parse_presorted`).

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::core::ids::AccountId;
use crate::core::money::{Amount, MINOR_DIGITS};
use crate::core::time::Zone;

/// The local currency: its code and decimals (always 2: amounts are counted in cents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Currency {
    pub code: String,
    pub decimals: u32,
}

impl Default for Currency {
    fn default() -> Currency {
        Currency { code: "Y'ACA".to_owned(), decimals: MINOR_DIGITS }
    }
}

/// The rules the operator sets, as written on the wire. Defaults are Ayen's (see the
/// design brief, §2 and §3). Optional fields are left out when they hold the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A new account is pending until the desk approves it (ID and charter checked).
    pub approval_required: bool,
    /// A completed ride neither confirmed nor disputed settles after this many hours;
    /// a dispute must come before. An accepted ride not completed this long after its
    /// pickup time expires.
    pub auto_settle_hours: u32,
    /// Average speed used to estimate pickup times, km/h.
    pub average_speed_kmh: u32,
    /// The detour limit is the larger of this (km) and `detour_share_max` of the route.
    pub detour_km_min: String,
    pub detour_share_max: String,
    /// Fare per passenger and kilometre, in currency units (up to 4 decimals).
    pub fare_per_km: String,
    /// Who pays the fare: "passenger" (Ayen) or "sponsor".
    pub payer: String,
    /// Road distance = great-circle distance × this factor (up to 3 decimals).
    pub road_factor: String,
    /// With payer "sponsor": the account that pays, and what it pays at most per trip,
    /// per passenger and day, per passenger and month; the passenger pays the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_cap_day: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_cap_month: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sponsor_cap_trip: Option<String>,
    /// "eu" (the default: summer time from the last Sunday of March to the last
    /// Sunday of October, at 01:00 UTC) or "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summer_time: Option<String>,
    /// A person's trips start at least this many minutes apart.
    pub trip_gap_minutes_min: u32,
    /// Trips longer than this (km, road distance) are refused: no competing with taxis.
    pub trip_km_max: String,
    /// Trips shorter than this (km, road distance) are refused.
    pub trip_km_min: String,
    /// A person takes part in at most this many trips a (local) day.
    pub trips_per_day_max: u32,
    /// The local time's offset from UTC in winter, minutes (default 60: France).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i32>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            approval_required: true,
            auto_settle_hours: 24,
            average_speed_kmh: 50,
            detour_km_min: "2".to_owned(),
            detour_share_max: "0.30".to_owned(),
            fare_per_km: "0.06".to_owned(),
            payer: "passenger".to_owned(),
            road_factor: "1.3".to_owned(),
            sponsor: None,
            sponsor_cap_day: None,
            sponsor_cap_month: None,
            sponsor_cap_trip: None,
            summer_time: None,
            trip_gap_minutes_min: 30,
            trip_km_max: "25".to_owned(),
            trip_km_min: "2".to_owned(),
            trips_per_day_max: 4,
            utc_offset_minutes: None,
        }
    }
}

/// Leaf 0: the facts an auditor starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub currency: Currency,
    pub ledger: String,
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
    Genesis(Box<Genesis>),
    /// A completed ride neither confirmed nor disputed in time: the driver is paid.
    #[serde(rename = "ride.settle")]
    RideSettle { booking: String },
    /// A booking never accepted by its pickup time, or accepted but never completed:
    /// its hold is released.
    #[serde(rename = "ride.expire")]
    RideExpire { booking: String },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Genesis(_) => "genesis",
            Event::RideSettle { .. } => "ride.settle",
            Event::RideExpire { .. } => "ride.expire",
        }
    }
}

/// Who pays fares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payer {
    Passenger,
    /// The sponsor pays up to the caps (minor units); the passenger pays the rest.
    Sponsor {
        account: AccountId,
        cap_trip: i64,
        cap_day: i64,
        cap_month: i64,
    },
}

/// The policy, parsed and checked, in the units the state machine uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub approval_required: bool,
    /// Fare per kilometre in ten-thousandths of the currency (0.06 → 600).
    pub fare_per_km_e4: i64,
    /// The road factor in thousandths (1.3 → 1300).
    pub road_factor_e3: u32,
    pub trip_m_min: u32,
    pub trip_m_max: u32,
    pub trips_per_day_max: u32,
    pub trip_gap_ms: i64,
    pub detour_m_min: u32,
    /// The detour share in ten-thousandths (0.30 → 3000).
    pub detour_share_e4: u32,
    pub speed_kmh: u32,
    pub settle_after_ms: i64,
    pub payer: Payer,
    pub zone: Zone,
}

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy's {field} is not right: {reason}")]
pub struct PolicyError {
    field: &'static str,
    reason: &'static str,
}

/// Limits on policy values, so that no rule can overflow the arithmetic.
const KM_MAX: i64 = 1_000;
const HOURS_MAX: u32 = 24 * 90;

impl Rules {
    pub fn from_policy(policy: &Policy) -> Result<Rules, PolicyError> {
        let error = |field, reason| PolicyError { field, reason };
        let fare_per_km_e4 = scaled("fare_per_km", &policy.fare_per_km, 4, 100 * 10_000)?;
        let road_factor_e3 = scaled("road_factor", &policy.road_factor, 3, 5_000)?;
        if road_factor_e3 < 1_000 {
            return Err(error("road_factor", "it must be at least 1"));
        }
        let trip_m_min = scaled("trip_km_min", &policy.trip_km_min, 3, KM_MAX * 1_000)?;
        let trip_m_max = scaled("trip_km_max", &policy.trip_km_max, 3, KM_MAX * 1_000)?;
        if trip_m_min > trip_m_max {
            return Err(error("trip_km_min", "it is above trip_km_max"));
        }
        let detour_m_min = scaled("detour_km_min", &policy.detour_km_min, 3, KM_MAX * 1_000)?;
        let detour_share_e4 = scaled("detour_share_max", &policy.detour_share_max, 4, 10 * 10_000)?;
        if !(1..=200).contains(&policy.average_speed_kmh) {
            return Err(error("average_speed_kmh", "it must be 1 to 200"));
        }
        if !(1..=HOURS_MAX).contains(&policy.auto_settle_hours) {
            return Err(error("auto_settle_hours", "it must be 1 to 2160"));
        }
        if !(1..=48).contains(&policy.trips_per_day_max) || policy.trip_gap_minutes_min > 24 * 60 {
            return Err(error("trips_per_day_max", "it must be 1 to 48, with a gap of at most a day"));
        }
        let zone = Zone::new(
            policy.utc_offset_minutes.unwrap_or(60),
            match policy.summer_time.as_deref() {
                None | Some("eu") => true,
                Some("none") => false,
                Some(_) => return Err(error("summer_time", "it must be \"eu\" or \"none\"")),
            },
        )
        .ok_or(error("utc_offset_minutes", "it must be within ±14 hours"))?;
        Ok(Rules {
            approval_required: policy.approval_required,
            fare_per_km_e4: i64::from(fare_per_km_e4),
            road_factor_e3,
            trip_m_min,
            trip_m_max,
            trips_per_day_max: policy.trips_per_day_max,
            trip_gap_ms: i64::from(policy.trip_gap_minutes_min) * 60_000,
            detour_m_min,
            detour_share_e4,
            speed_kmh: policy.average_speed_kmh,
            settle_after_ms: i64::from(policy.auto_settle_hours) * 3_600_000,
            payer: payer(policy)?,
            zone,
        })
    }
}

fn payer(policy: &Policy) -> Result<Payer, PolicyError> {
    let sponsor_fields =
        [&policy.sponsor, &policy.sponsor_cap_trip, &policy.sponsor_cap_day, &policy.sponsor_cap_month];
    match policy.payer.as_str() {
        "passenger" if sponsor_fields.iter().all(|field| field.is_none()) => Ok(Payer::Passenger),
        "passenger" => Err(PolicyError { field: "sponsor", reason: "sponsor fields need payer \"sponsor\"" }),
        "sponsor" => {
            let missing =
                PolicyError { field: "sponsor", reason: "payer \"sponsor\" needs a sponsor and its three caps" };
            let account = policy.sponsor.as_deref().ok_or(missing.clone())?;
            let account = AccountId::parse_member(account)
                .map_err(|_| PolicyError { field: "sponsor", reason: "it must be a member's account id" })?;
            let cap = |field: &'static str, value: &Option<String>| -> Result<i64, PolicyError> {
                let value = value.as_deref().ok_or(missing.clone())?;
                Amount::parse(value)
                    .map(Amount::minor)
                    .map_err(|_| PolicyError { field, reason: "it must be an amount" })
            };
            Ok(Payer::Sponsor {
                account,
                cap_trip: cap("sponsor_cap_trip", &policy.sponsor_cap_trip)?,
                cap_day: cap("sponsor_cap_day", &policy.sponsor_cap_day)?,
                cap_month: cap("sponsor_cap_month", &policy.sponsor_cap_month)?,
            })
        }
        _ => Err(PolicyError { field: "payer", reason: "it must be \"passenger\" or \"sponsor\"" }),
    }
}

/// A non-negative decimal string with at most `decimals` decimals, as an integer in
/// units of 10^-decimals, at most `max`.
fn scaled(field: &'static str, text: &str, decimals: u32, max: i64) -> Result<u32, PolicyError> {
    let error = |reason| PolicyError { field, reason };
    let well_formed = !text.is_empty()
        && text.len() <= 16
        && text.bytes().all(|byte| byte.is_ascii_digit() || byte == b'.')
        && !text.starts_with('.')
        && !text.ends_with('.');
    if !well_formed {
        return Err(error("it must be a decimal string such as \"1.3\""));
    }
    let mut value = Decimal::from_str(text).map_err(|_| error("it must be a decimal string such as \"1.3\""))?;
    if value.scale() > decimals {
        return Err(error("it has too many decimals"));
    }
    value.rescale(decimals);
    let units = i64::try_from(value.mantissa()).map_err(|_| error("it is too large"))?;
    if units > max {
        return Err(error("it is too large"));
    }
    u32::try_from(units).map_err(|_| error("it is too large"))
}

/// A meeting point's id: 1 to 32 lower-case letters, digits and dashes ("mairie").
pub fn parse_point_id(text: &str) -> Option<String> {
    let ok = (1..=32).contains(&text.len())
        && text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    ok.then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ayens_defaults() {
        let rules = Rules::from_policy(&Policy::default()).unwrap();
        assert_eq!(rules.fare_per_km_e4, 600);
        assert_eq!(rules.road_factor_e3, 1300);
        assert_eq!((rules.trip_m_min, rules.trip_m_max), (2_000, 25_000));
        assert_eq!((rules.detour_m_min, rules.detour_share_e4), (2_000, 3_000));
        assert_eq!(rules.trip_gap_ms, 30 * 60_000);
        assert_eq!(rules.settle_after_ms, 24 * 3_600_000);
        assert_eq!(rules.payer, Payer::Passenger);
    }

    #[test]
    fn bad_policies_are_refused() {
        let refused = |change: &dyn Fn(&mut Policy)| {
            let mut policy = Policy::default();
            change(&mut policy);
            assert!(Rules::from_policy(&policy).is_err(), "{policy:?}");
        };
        refused(&|p| p.fare_per_km = "0.00001".into());
        refused(&|p| p.fare_per_km = "-1".into());
        refused(&|p| p.road_factor = "0.9".into());
        refused(&|p| p.trip_km_min = "30".into());
        refused(&|p| p.average_speed_kmh = 0);
        refused(&|p| p.payer = "driver".into());
        refused(&|p| p.payer = "sponsor".into());
        refused(&|p| p.sponsor = Some("00000000-0000-4000-8000-000000000001".into()));
        refused(&|p| p.summer_time = Some("us".into()));
        refused(&|p| p.utc_offset_minutes = Some(15 * 60));
        let mut sponsored = Policy {
            payer: "sponsor".into(),
            sponsor: Some("00000000-0000-4000-8000-000000000001".into()),
            sponsor_cap_trip: Some("1.50".into()),
            sponsor_cap_day: Some("3".into()),
            sponsor_cap_month: Some("30".into()),
            ..Policy::default()
        };
        assert!(matches!(Rules::from_policy(&sponsored).unwrap().payer, Payer::Sponsor { cap_trip: 150, .. }));
        sponsored.sponsor = Some("operator".into());
        assert!(Rules::from_policy(&sponsored).is_err());
    }

    #[test]
    fn the_serde_form_of_a_full_policy_is_canonical() {
        let policy = Policy {
            sponsor: Some("s".into()),
            sponsor_cap_day: Some("1".into()),
            sponsor_cap_month: Some("1".into()),
            sponsor_cap_trip: Some("1".into()),
            summer_time: Some("eu".into()),
            utc_offset_minutes: Some(60),
            ..Policy::default()
        };
        assert_eq!(serde_json::to_vec(&policy).unwrap(), crate::core::canonical::to_canonical_vec(&policy));
        let genesis = Genesis {
            currency: Currency::default(),
            ledger: "l".into(),
            ledger_key: "k".into(),
            operator_key: "o".into(),
            policy,
        };
        assert_eq!(serde_json::to_vec(&genesis).unwrap(), crate::core::canonical::to_canonical_vec(&genesis));
    }
}
