//! Command bodies: their wire form and their domain form.
//!
//! On the wire a body is one flat JSON object: the common fields (`type`, `ledger`,
//! `account`, `seq`, `not_after`, and `by` when the desk signs for a custodial
//! account) and the fields of its type. [`BodyFields`] holds every field of every
//! type, declared in sorted order so that its serde form is the canonical form;
//! [`BodyWire`] is the typed view clients build; [`Body`] and [`Command`] are the
//! same body with every field parsed into its domain type, which is what the state
//! machine reads.

use ::time::Date;
use serde::{Deserialize, Serialize};

use crate::core::geo::{POINT_DECIMALS_MAX, Point, RIDE_DECIMALS_MAX};
use crate::core::ids::{AccountId, Id, IdError, OPERATOR, Seq, Text};
use crate::core::money::{Amount, Floor};
use crate::core::policy::{Policy, Rules, parse_point_id};
use crate::core::protocol::ProtocolError;
use crate::core::time::{self, Timestamp};

/// Most seats an offer or a request may have.
pub const SEATS_MAX: u32 = 8;
/// Longest detour a driver may offer, metres.
pub const DETOUR_M_MAX: u32 = 100_000;
/// Longest pickup window of a request, milliseconds (a day).
pub const WINDOW_MS_MAX: i64 = 24 * 3_600_000;

/// A place on the wire: coordinates, or a meeting point's id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
}

impl PlaceWire {
    pub fn at(lat: &str, lon: &str) -> PlaceWire {
        PlaceWire { lat: Some(lat.to_owned()), lon: Some(lon.to_owned()), point: None }
    }

    pub fn meeting_point(id: &str) -> PlaceWire {
        PlaceWire { point: Some(id.to_owned()), ..PlaceWire::default() }
    }
}

/// A body as clients build it: the common fields and a typed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyWire {
    pub ledger: String,
    pub account: String,
    pub seq: String,
    pub not_after: String,
    /// "operator" when the desk signs for a custodial account; otherwise absent.
    pub by: Option<String>,
    pub command: CommandWire,
}

/// The fields of each command type, as strings (and seats as an integer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandWire {
    Register {
        name: String,
    },
    Custodial {
        target: String,
        name: String,
    },
    Approve {
        target: String,
    },
    CreditSet {
        target: String,
        floor: String,
    },
    Issue {
        to: String,
        amount: String,
        memo: Option<String>,
    },
    Transfer {
        to: String,
        amount: String,
        memo: Option<String>,
    },
    Redeem {
        amount: String,
        memo: Option<String>,
    },
    PolicySet {
        policy: Box<Policy>,
    },
    PlaceSet {
        point: String,
        name: String,
        lat: String,
        lon: String,
    },
    PlaceRemove {
        point: String,
    },
    Offer(Box<OfferWire>),
    Request(Box<RequestWire>),
    Book {
        booking: String,
        offer: String,
        request: String,
        date: Option<String>,
    },
    Accept {
        booking: String,
    },
    Decline {
        booking: String,
    },
    Cancel {
        booking: Option<String>,
        offer: Option<String>,
        request: Option<String>,
        date: Option<String>,
        memo: Option<String>,
    },
    Complete {
        booking: String,
    },
    Confirm {
        booking: String,
    },
    Dispute {
        booking: String,
        memo: Option<String>,
    },
    Resolve {
        booking: String,
        outcome: String,
        memo: Option<String>,
    },
}

/// `ride.offer`: a one-off ride (`departure`) or a weekly one (`weekdays` and `time`,
/// optionally `until` a date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferWire {
    pub offer: String,
    pub origin: PlaceWire,
    pub destination: PlaceWire,
    pub seats: u32,
    pub detour_km: Option<String>,
    pub departure: Option<String>,
    pub weekdays: Option<String>,
    pub time: Option<String>,
    pub until: Option<String>,
}

/// `ride.request`: where and when a passenger wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestWire {
    pub request: String,
    pub pickup: PlaceWire,
    pub dropoff: PlaceWire,
    pub earliest: String,
    pub latest: String,
    pub seats: u32,
}

impl CommandWire {
    /// The wire name of the command, as in the body's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            CommandWire::Register { .. } => "account.register",
            CommandWire::Custodial { .. } => "account.custodial",
            CommandWire::Approve { .. } => "account.approve",
            CommandWire::CreditSet { .. } => "credit.set",
            CommandWire::Issue { .. } => "issue",
            CommandWire::Transfer { .. } => "transfer",
            CommandWire::Redeem { .. } => "redeem",
            CommandWire::PolicySet { .. } => "policy.set",
            CommandWire::PlaceSet { .. } => "place.set",
            CommandWire::PlaceRemove { .. } => "place.remove",
            CommandWire::Offer(_) => "ride.offer",
            CommandWire::Request(_) => "ride.request",
            CommandWire::Book { .. } => "ride.book",
            CommandWire::Accept { .. } => "ride.accept",
            CommandWire::Decline { .. } => "ride.decline",
            CommandWire::Cancel { .. } => "ride.cancel",
            CommandWire::Complete { .. } => "ride.complete",
            CommandWire::Confirm { .. } => "ride.confirm",
            CommandWire::Dispute { .. } => "ride.dispute",
            CommandWire::Resolve { .. } => "ride.resolve",
        }
    }
}

/// Every body field of every type, in sorted order: the serde form is the canonical
/// form (see `canonical::parse_presorted`; a test checks the order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<PlaceWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detour_km: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropoff: Option<PlaceWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<PlaceWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickup: Option<PlaceWire>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Box<Policy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekdays: Option<String>,
}

/// The fields each type takes besides the common ones: (required, optional).
pub fn fields_of(kind: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    let fields: (&[&str], &[&str]) = match kind {
        "account.register" => (&["name"], &[]),
        "account.custodial" => (&["target", "name"], &[]),
        "account.approve" => (&["target"], &[]),
        "credit.set" => (&["target", "floor"], &[]),
        "issue" | "transfer" => (&["to", "amount"], &["memo"]),
        "redeem" => (&["amount"], &["memo"]),
        "policy.set" => (&["policy"], &[]),
        "place.set" => (&["point", "name", "lat", "lon"], &[]),
        "place.remove" => (&["point"], &[]),
        "ride.offer" => {
            (&["offer", "origin", "destination", "seats"], &["detour_km", "departure", "weekdays", "time", "until"])
        }
        "ride.request" => (&["request", "pickup", "dropoff", "earliest", "latest", "seats"], &[]),
        "ride.book" => (&["booking", "offer", "request"], &["date"]),
        "ride.accept" | "ride.decline" | "ride.complete" | "ride.confirm" => (&["booking"], &[]),
        "ride.cancel" => (&[], &["booking", "offer", "request", "date", "memo"]),
        "ride.dispute" => (&["booking"], &["memo"]),
        "ride.resolve" => (&["booking", "outcome"], &["memo"]),
        _ => return None,
    };
    Some(fields)
}

/// Why [`BodyFields`] do not make a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldsError {
    UnknownType(String),
    Missing(&'static str),
    NotOfType { field: &'static str, kind: String },
}

impl BodyFields {
    /// The names of the fields present, besides `type`.
    fn present(&self) -> Vec<&'static str> {
        let flags = [
            ("account", self.account.is_some()),
            ("amount", self.amount.is_some()),
            ("booking", self.booking.is_some()),
            ("by", self.by.is_some()),
            ("date", self.date.is_some()),
            ("departure", self.departure.is_some()),
            ("destination", self.destination.is_some()),
            ("detour_km", self.detour_km.is_some()),
            ("dropoff", self.dropoff.is_some()),
            ("earliest", self.earliest.is_some()),
            ("floor", self.floor.is_some()),
            ("lat", self.lat.is_some()),
            ("latest", self.latest.is_some()),
            ("ledger", self.ledger.is_some()),
            ("lon", self.lon.is_some()),
            ("memo", self.memo.is_some()),
            ("name", self.name.is_some()),
            ("not_after", self.not_after.is_some()),
            ("offer", self.offer.is_some()),
            ("origin", self.origin.is_some()),
            ("outcome", self.outcome.is_some()),
            ("pickup", self.pickup.is_some()),
            ("point", self.point.is_some()),
            ("policy", self.policy.is_some()),
            ("request", self.request.is_some()),
            ("seats", self.seats.is_some()),
            ("seq", self.seq.is_some()),
            ("target", self.target.is_some()),
            ("time", self.time.is_some()),
            ("to", self.to.is_some()),
            ("until", self.until.is_some()),
            ("weekdays", self.weekdays.is_some()),
        ];
        flags.iter().filter(|(_, present)| *present).map(|(name, _)| *name).collect()
    }

    /// The typed body, when exactly the fields of its type are present.
    pub fn into_wire(self) -> Result<BodyWire, FieldsError> {
        let kind = self.kind.clone();
        let (required, optional) = fields_of(&kind).ok_or_else(|| FieldsError::UnknownType(kind.clone()))?;
        const COMMON: [&str; 4] = ["ledger", "account", "seq", "not_after"];
        let present = self.present();
        for field in &present {
            let allowed =
                COMMON.contains(field) || *field == "by" || required.contains(field) || optional.contains(field);
            if !allowed {
                return Err(FieldsError::NotOfType { field, kind });
            }
        }
        for field in COMMON.iter().chain(required) {
            if !present.contains(field) {
                return Err(FieldsError::Missing(field));
            }
        }
        Ok(self.typed())
    }

    /// Builds the typed body; [`BodyFields::into_wire`] has checked the fields.
    fn typed(self) -> BodyWire {
        let f = self;
        let take = |value: Option<String>| value.unwrap_or_default();
        let command = match f.kind.as_str() {
            "account.register" => CommandWire::Register { name: take(f.name) },
            "account.custodial" => CommandWire::Custodial { target: take(f.target), name: take(f.name) },
            "account.approve" => CommandWire::Approve { target: take(f.target) },
            "credit.set" => CommandWire::CreditSet { target: take(f.target), floor: take(f.floor) },
            "issue" => CommandWire::Issue { to: take(f.to), amount: take(f.amount), memo: f.memo },
            "transfer" => CommandWire::Transfer { to: take(f.to), amount: take(f.amount), memo: f.memo },
            "redeem" => CommandWire::Redeem { amount: take(f.amount), memo: f.memo },
            "policy.set" => CommandWire::PolicySet { policy: f.policy.unwrap_or_default() },
            "place.set" => {
                CommandWire::PlaceSet { point: take(f.point), name: take(f.name), lat: take(f.lat), lon: take(f.lon) }
            }
            "place.remove" => CommandWire::PlaceRemove { point: take(f.point) },
            "ride.offer" => CommandWire::Offer(Box::new(OfferWire {
                offer: take(f.offer),
                origin: f.origin.unwrap_or_default(),
                destination: f.destination.unwrap_or_default(),
                seats: f.seats.unwrap_or_default(),
                detour_km: f.detour_km,
                departure: f.departure,
                weekdays: f.weekdays,
                time: f.time,
                until: f.until,
            })),
            "ride.request" => CommandWire::Request(Box::new(RequestWire {
                request: take(f.request),
                pickup: f.pickup.unwrap_or_default(),
                dropoff: f.dropoff.unwrap_or_default(),
                earliest: take(f.earliest),
                latest: take(f.latest),
                seats: f.seats.unwrap_or_default(),
            })),
            "ride.book" => CommandWire::Book {
                booking: take(f.booking),
                offer: take(f.offer),
                request: take(f.request),
                date: f.date,
            },
            "ride.accept" => CommandWire::Accept { booking: take(f.booking) },
            "ride.decline" => CommandWire::Decline { booking: take(f.booking) },
            "ride.cancel" => CommandWire::Cancel {
                booking: f.booking,
                offer: f.offer,
                request: f.request,
                date: f.date,
                memo: f.memo,
            },
            "ride.complete" => CommandWire::Complete { booking: take(f.booking) },
            "ride.confirm" => CommandWire::Confirm { booking: take(f.booking) },
            "ride.dispute" => CommandWire::Dispute { booking: take(f.booking), memo: f.memo },
            "ride.resolve" => CommandWire::Resolve { booking: take(f.booking), outcome: take(f.outcome), memo: f.memo },
            other => unreachable!("fields_of knows \"{other}\""),
        };
        BodyWire {
            ledger: take(f.ledger),
            account: take(f.account),
            seq: take(f.seq),
            not_after: take(f.not_after),
            by: f.by,
            command,
        }
    }
}

impl BodyWire {
    /// The flat wire form of this body.
    pub fn to_fields(&self) -> BodyFields {
        let mut f = BodyFields {
            ledger: Some(self.ledger.clone()),
            account: Some(self.account.clone()),
            seq: Some(self.seq.clone()),
            not_after: Some(self.not_after.clone()),
            by: self.by.clone(),
            kind: self.command.kind().to_owned(),
            ..BodyFields::default()
        };
        match self.command.clone() {
            CommandWire::Register { name } => f.name = Some(name),
            CommandWire::Custodial { target, name } => (f.target, f.name) = (Some(target), Some(name)),
            CommandWire::Approve { target } => f.target = Some(target),
            CommandWire::CreditSet { target, floor } => (f.target, f.floor) = (Some(target), Some(floor)),
            CommandWire::Issue { to, amount, memo } | CommandWire::Transfer { to, amount, memo } => {
                (f.to, f.amount, f.memo) = (Some(to), Some(amount), memo);
            }
            CommandWire::Redeem { amount, memo } => (f.amount, f.memo) = (Some(amount), memo),
            CommandWire::PolicySet { policy } => f.policy = Some(policy),
            CommandWire::PlaceSet { point, name, lat, lon } => {
                (f.point, f.name, f.lat, f.lon) = (Some(point), Some(name), Some(lat), Some(lon));
            }
            CommandWire::PlaceRemove { point } => f.point = Some(point),
            CommandWire::Offer(offer) => {
                let OfferWire { offer, origin, destination, seats, detour_km, departure, weekdays, time, until } =
                    *offer;
                (f.offer, f.origin, f.destination, f.seats) =
                    (Some(offer), Some(origin), Some(destination), Some(seats));
                (f.detour_km, f.departure, f.weekdays, f.time, f.until) = (detour_km, departure, weekdays, time, until);
            }
            CommandWire::Request(request) => {
                let RequestWire { request, pickup, dropoff, earliest, latest, seats } = *request;
                (f.request, f.pickup, f.dropoff) = (Some(request), Some(pickup), Some(dropoff));
                (f.earliest, f.latest, f.seats) = (Some(earliest), Some(latest), Some(seats));
            }
            CommandWire::Book { booking, offer, request, date } => {
                (f.booking, f.offer, f.request, f.date) = (Some(booking), Some(offer), Some(request), date);
            }
            CommandWire::Accept { booking }
            | CommandWire::Decline { booking }
            | CommandWire::Complete { booking }
            | CommandWire::Confirm { booking } => f.booking = Some(booking),
            CommandWire::Cancel { booking, offer, request, date, memo } => {
                (f.booking, f.offer, f.request, f.date, f.memo) = (booking, offer, request, date, memo);
            }
            CommandWire::Dispute { booking, memo } => (f.booking, f.memo) = (Some(booking), memo),
            CommandWire::Resolve { booking, outcome, memo } => {
                (f.booking, f.outcome, f.memo) = (Some(booking), Some(outcome), memo);
            }
        }
        f
    }
}

impl Serialize for BodyWire {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_fields().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for BodyWire {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<BodyWire, D::Error> {
        let fields = BodyFields::deserialize(deserializer)?;
        fields.into_wire().map_err(|error| serde::de::Error::custom(format!("{error:?}")))
    }
}

// ---------------------------------------------------------------------------------
// The domain form.

/// The fields every body has, and its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub ledger: String,
    pub account: AccountId,
    pub seq: Seq,
    pub not_after: Timestamp,
    /// The desk signs for a custodial account (`"by": "operator"`).
    pub by_operator: bool,
    pub command: Command,
}

/// A place a ride command names: coordinates, or a meeting point to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlaceRef {
    At(Point),
    MeetingPoint(String),
}

/// When an offered ride leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    Once {
        departure: Timestamp,
    },
    /// Local time; `weekdays` has bit 0 for Monday up to bit 6 for Sunday.
    Weekly {
        weekdays: u8,
        minute_of_day: u16,
        #[serde(with = "crate::core::time::optional_date_text")]
        until: Option<Date>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSpec {
    pub offer: Id,
    pub origin: PlaceRef,
    pub destination: PlaceRef,
    pub seats: u32,
    pub detour_m: Option<u32>,
    pub schedule: Schedule,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub request: Id,
    pub pickup: PlaceRef,
    pub dropoff: PlaceRef,
    pub earliest: Timestamp,
    pub latest: Timestamp,
    pub seats: u32,
}

/// What `ride.cancel` withdraws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    Booking(Id),
    /// An offer; with a date, only that day's ride of a weekly offer.
    Offer {
        offer: Id,
        date: Option<Date>,
    },
    Request(Id),
}

/// How the desk resolves a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The driver is paid.
    Settle,
    /// The hold goes back to who booked.
    Release,
}

/// What a command asks for, with every field parsed into its domain type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Register { name: Text },
    Custodial { target: AccountId, name: Text },
    Approve { target: AccountId },
    CreditSet { target: AccountId, floor: Floor },
    Issue { to: AccountId, amount: Amount, memo: Option<Text> },
    Transfer { to: AccountId, amount: Amount, memo: Option<Text> },
    Redeem { amount: Amount, memo: Option<Text> },
    PolicySet { policy: Box<Policy> },
    PlaceSet { point: String, name: Text, location: Point },
    PlaceRemove { point: String },
    Offer(Box<OfferSpec>),
    Request(Box<RequestSpec>),
    Book { booking: Id, offer: Id, request: Id, date: Option<Date> },
    Accept { booking: Id },
    Decline { booking: Id },
    Cancel { target: CancelTarget, memo: Option<Text> },
    Complete { booking: Id },
    Confirm { booking: Id },
    Dispute { booking: Id, memo: Option<Text> },
    Resolve { booking: Id, resolution: Resolution, memo: Option<Text> },
}

impl Command {
    /// The wire name of the command, as in the body's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Register { .. } => "account.register",
            Command::Custodial { .. } => "account.custodial",
            Command::Approve { .. } => "account.approve",
            Command::CreditSet { .. } => "credit.set",
            Command::Issue { .. } => "issue",
            Command::Transfer { .. } => "transfer",
            Command::Redeem { .. } => "redeem",
            Command::PolicySet { .. } => "policy.set",
            Command::PlaceSet { .. } => "place.set",
            Command::PlaceRemove { .. } => "place.remove",
            Command::Offer(_) => "ride.offer",
            Command::Request(_) => "ride.request",
            Command::Book { .. } => "ride.book",
            Command::Accept { .. } => "ride.accept",
            Command::Decline { .. } => "ride.decline",
            Command::Cancel { .. } => "ride.cancel",
            Command::Complete { .. } => "ride.complete",
            Command::Confirm { .. } => "ride.confirm",
            Command::Dispute { .. } => "ride.dispute",
            Command::Resolve { .. } => "ride.resolve",
        }
    }

    pub fn memo(&self) -> Option<&Text> {
        match self {
            Command::Issue { memo, .. }
            | Command::Transfer { memo, .. }
            | Command::Redeem { memo, .. }
            | Command::Cancel { memo, .. }
            | Command::Dispute { memo, .. }
            | Command::Resolve { memo, .. } => memo.as_ref(),
            _ => None,
        }
    }

    /// Commands only the desk signs, with its own account.
    pub fn is_desk_only(&self) -> bool {
        matches!(
            self,
            Command::Custodial { .. }
                | Command::Approve { .. }
                | Command::CreditSet { .. }
                | Command::Issue { .. }
                | Command::PolicySet { .. }
                | Command::PlaceSet { .. }
                | Command::PlaceRemove { .. }
                | Command::Resolve { .. }
        )
    }
}

/// Parses the typed wire body into its domain form.
pub fn body_from_wire(wire: BodyWire) -> Result<Body, ProtocolError> {
    let by_operator = match wire.by.as_deref() {
        None => false,
        Some(OPERATOR) => true,
        Some(_) => return Err(invalid("by: the only account that signs for another is \"operator\"")),
    };
    let account = if let CommandWire::Register { .. } = wire.command {
        AccountId::parse_member(&wire.account).map_err(field_error)?
    } else {
        account_id(&wire.account)?
    };
    Ok(Body {
        ledger: wire.ledger,
        account,
        seq: Seq::parse(&wire.seq).map_err(field_error)?,
        not_after: time_of("not_after", &wire.not_after)?,
        by_operator,
        command: command_from_wire(wire.command)?,
    })
}

fn command_from_wire(command: CommandWire) -> Result<Command, ProtocolError> {
    let command = match command {
        CommandWire::Register { name } => Command::Register { name: text("name", &name)? },
        CommandWire::Custodial { target, name } => Command::Custodial {
            target: AccountId::parse_member(&target).map_err(field_error)?,
            name: text("name", &name)?,
        },
        CommandWire::Approve { target } => Command::Approve { target: account_id(&target)? },
        CommandWire::CreditSet { target, floor } => Command::CreditSet {
            target: account_id(&target)?,
            floor: Floor::parse(&floor).map_err(ProtocolError::InvalidAmount)?,
        },
        CommandWire::Issue { to, amount, memo } => {
            Command::Issue { to: account_id(&to)?, amount: amount_of(&amount)?, memo: memo_of(memo)? }
        }
        CommandWire::Transfer { to, amount, memo } => {
            Command::Transfer { to: account_id(&to)?, amount: amount_of(&amount)?, memo: memo_of(memo)? }
        }
        CommandWire::Redeem { amount, memo } => Command::Redeem { amount: amount_of(&amount)?, memo: memo_of(memo)? },
        CommandWire::PolicySet { policy } => {
            Rules::from_policy(&policy).map_err(|error| invalid(&error.to_string()))?;
            Command::PolicySet { policy }
        }
        CommandWire::PlaceSet { point, name, lat, lon } => Command::PlaceSet {
            point: point_id(&point)?,
            name: text("name", &name)?,
            location: Point::parse(&lat, &lon, POINT_DECIMALS_MAX).map_err(|error| invalid(&error.to_string()))?,
        },
        CommandWire::PlaceRemove { point } => Command::PlaceRemove { point: point_id(&point)? },
        CommandWire::Offer(offer) => Command::Offer(Box::new(offer_from_wire(*offer)?)),
        CommandWire::Request(request) => Command::Request(Box::new(request_from_wire(*request)?)),
        CommandWire::Book { booking, offer, request, date } => Command::Book {
            booking: id("booking", &booking)?,
            offer: id("offer", &offer)?,
            request: id("request", &request)?,
            date: date.as_deref().map(date_of).transpose()?,
        },
        CommandWire::Accept { booking } => Command::Accept { booking: id("booking", &booking)? },
        CommandWire::Decline { booking } => Command::Decline { booking: id("booking", &booking)? },
        CommandWire::Cancel { booking, offer, request, date, memo } => {
            let target = match (booking, offer, request, date) {
                (Some(booking), None, None, None) => CancelTarget::Booking(id("booking", &booking)?),
                (None, Some(offer), None, date) => {
                    CancelTarget::Offer { offer: id("offer", &offer)?, date: date.as_deref().map(date_of).transpose()? }
                }
                (None, None, Some(request), None) => CancelTarget::Request(id("request", &request)?),
                _ => {
                    return Err(invalid(
                        "ride.cancel names one booking, one offer (with an optional date) or one request",
                    ));
                }
            };
            Command::Cancel { target, memo: memo_of(memo)? }
        }
        CommandWire::Complete { booking } => Command::Complete { booking: id("booking", &booking)? },
        CommandWire::Confirm { booking } => Command::Confirm { booking: id("booking", &booking)? },
        CommandWire::Dispute { booking, memo } => {
            Command::Dispute { booking: id("booking", &booking)?, memo: memo_of(memo)? }
        }
        CommandWire::Resolve { booking, outcome, memo } => Command::Resolve {
            booking: id("booking", &booking)?,
            resolution: match outcome.as_str() {
                "settle" => Resolution::Settle,
                "release" => Resolution::Release,
                _ => {
                    return Err(invalid(
                        "outcome must be \"settle\" (the driver is paid) or \"release\" (the hold is returned)",
                    ));
                }
            },
            memo: memo_of(memo)?,
        },
    };
    Ok(command)
}

fn offer_from_wire(offer: OfferWire) -> Result<OfferSpec, ProtocolError> {
    let schedule = match (offer.departure, offer.weekdays, offer.time, offer.until) {
        (Some(departure), None, None, None) => Schedule::Once { departure: time_of("departure", &departure)? },
        (None, Some(weekdays), Some(minute), until) => Schedule::Weekly {
            weekdays: weekdays_of(&weekdays)?,
            minute_of_day: time::parse_minute_of_day(&minute)
                .ok_or_else(|| invalid("time must be a local time such as \"07:30\""))?,
            until: until.as_deref().map(date_of).transpose()?,
        },
        _ => {
            return Err(invalid(
                "an offer has either a departure (one ride) or weekdays and a time (every week), optionally until a date",
            ));
        }
    };
    let detour_m = offer.detour_km.as_deref().map(detour_of).transpose()?;
    Ok(OfferSpec {
        offer: id("offer", &offer.offer)?,
        origin: place_of("origin", offer.origin)?,
        destination: place_of("destination", offer.destination)?,
        seats: seats_of(offer.seats)?,
        detour_m,
        schedule,
    })
}

fn request_from_wire(request: RequestWire) -> Result<RequestSpec, ProtocolError> {
    let earliest = time_of("earliest", &request.earliest)?;
    let latest = time_of("latest", &request.latest)?;
    if latest < earliest || latest.unix_ms() - earliest.unix_ms() > WINDOW_MS_MAX {
        return Err(invalid("the pickup window must run forward from earliest to latest, for at most a day"));
    }
    Ok(RequestSpec {
        request: id("request", &request.request)?,
        pickup: place_of("pickup", request.pickup)?,
        dropoff: place_of("dropoff", request.dropoff)?,
        earliest,
        latest,
        seats: seats_of(request.seats)?,
    })
}

fn place_of(field: &'static str, place: PlaceWire) -> Result<PlaceRef, ProtocolError> {
    match place {
        PlaceWire { lat: Some(lat), lon: Some(lon), point: None } => Point::parse(&lat, &lon, RIDE_DECIMALS_MAX)
            .map(PlaceRef::At)
            .map_err(|error| invalid(&format!("{field}: {error}"))),
        PlaceWire { lat: None, lon: None, point: Some(point) } => Ok(PlaceRef::MeetingPoint(point_id(&point)?)),
        _ => Err(invalid(&format!("{field} is either {{\"lat\", \"lon\"}} or {{\"point\": a meeting point's id}}"))),
    }
}

fn weekdays_of(text: &str) -> Result<u8, ProtocolError> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let error = || invalid("weekdays are day names in week order, such as \"mon,tue,wed,thu,fri\"");
    let mut mask = 0u8;
    let mut last = None;
    for name in text.split(',') {
        let day = NAMES.iter().position(|known| *known == name).ok_or_else(error)?;
        if last.is_some_and(|last| day <= last) {
            return Err(error());
        }
        last = Some(day);
        mask |= 1 << day;
    }
    Ok(mask)
}

fn detour_of(text: &str) -> Result<u32, ProtocolError> {
    let error = || invalid("detour_km must be a distance in km such as \"3.5\", at most 100");
    let amount = Amount::parse(text).map_err(|_| error())?;
    let metres = amount.minor() * 10;
    u32::try_from(metres).ok().filter(|metres| *metres <= DETOUR_M_MAX).ok_or_else(error)
}

fn seats_of(seats: u32) -> Result<u32, ProtocolError> {
    if !(1..=SEATS_MAX).contains(&seats) {
        return Err(invalid("seats must be 1 to 8"));
    }
    Ok(seats)
}

fn point_id(text: &str) -> Result<String, ProtocolError> {
    parse_point_id(text).ok_or_else(|| invalid("a meeting point's id is 1 to 32 lower-case letters, digits and dashes"))
}

fn invalid(message: &str) -> ProtocolError {
    ProtocolError::InvalidField(message.to_owned())
}

fn field_error(error: IdError) -> ProtocolError {
    ProtocolError::InvalidField(error.to_string())
}

fn time_of(field: &str, text: &str) -> Result<Timestamp, ProtocolError> {
    Timestamp::parse(text).map_err(|error| invalid(&format!("{field}: {error}")))
}

fn date_of(text: &str) -> Result<Date, ProtocolError> {
    time::parse_date(text).map_err(|_| invalid("date must be a calendar date such as \"2026-11-25\""))
}

fn id(field: &'static str, text: &str) -> Result<Id, ProtocolError> {
    Id::parse(field, text).map_err(field_error)
}

fn account_id(text: &str) -> Result<AccountId, ProtocolError> {
    AccountId::parse(text).map_err(field_error)
}

fn amount_of(text: &str) -> Result<Amount, ProtocolError> {
    Amount::parse(text).map_err(ProtocolError::InvalidAmount)
}

fn text(field: &'static str, value: &str) -> Result<Text, ProtocolError> {
    Text::parse(field, value).map_err(field_error)
}

fn memo_of(memo: Option<String>) -> Result<Option<Text>, ProtocolError> {
    memo.map(|memo| text("memo", &memo)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::canonical;

    #[test]
    fn the_serde_form_of_body_fields_is_canonical() {
        let text = |name: &str| Some(format!("{name} \u{1f} é"));
        let place = || Some(PlaceWire { lat: text("lat"), lon: text("lon"), point: text("point") });
        let all = BodyFields {
            account: text("account"),
            amount: text("amount"),
            booking: text("booking"),
            by: text("by"),
            date: text("date"),
            departure: text("departure"),
            destination: place(),
            detour_km: text("detour_km"),
            dropoff: place(),
            earliest: text("earliest"),
            floor: text("floor"),
            lat: text("lat"),
            latest: text("latest"),
            ledger: text("ledger"),
            lon: text("lon"),
            memo: text("memo"),
            name: text("name"),
            not_after: text("not_after"),
            offer: text("offer"),
            origin: place(),
            outcome: text("outcome"),
            pickup: place(),
            point: text("point"),
            policy: Some(Box::default()),
            request: text("request"),
            seats: Some(3),
            seq: text("seq"),
            target: text("target"),
            time: text("time"),
            to: text("to"),
            kind: "ride.offer".into(),
            until: text("until"),
            weekdays: text("weekdays"),
        };
        assert_eq!(serde_json::to_vec(&all).unwrap(), canonical::to_canonical_vec(&all));
        assert_eq!(all.present().len(), 32, "every field but type is listed in present()");
    }

    #[test]
    fn every_type_round_trips_through_its_fields() {
        let common = |command| BodyWire {
            ledger: "l".into(),
            account: "a".into(),
            seq: "1".into(),
            not_after: "t".into(),
            by: Some("operator".into()),
            command,
        };
        let s = |text: &str| text.to_owned();
        let commands = vec![
            CommandWire::Register { name: s("n") },
            CommandWire::Custodial { target: s("t"), name: s("n") },
            CommandWire::Approve { target: s("t") },
            CommandWire::CreditSet { target: s("t"), floor: s("-1") },
            CommandWire::Issue { to: s("t"), amount: s("1"), memo: Some(s("m")) },
            CommandWire::Transfer { to: s("t"), amount: s("1"), memo: None },
            CommandWire::Redeem { amount: s("1"), memo: None },
            CommandWire::PolicySet { policy: Box::default() },
            CommandWire::PlaceSet { point: s("p"), name: s("n"), lat: s("1"), lon: s("2") },
            CommandWire::PlaceRemove { point: s("p") },
            CommandWire::Offer(Box::new(OfferWire {
                offer: s("o"),
                origin: PlaceWire::at("1", "2"),
                destination: PlaceWire::meeting_point("p"),
                seats: 3,
                detour_km: Some(s("2")),
                departure: None,
                weekdays: Some(s("mon")),
                time: Some(s("07:30")),
                until: Some(s("2027-01-01")),
            })),
            CommandWire::Request(Box::new(RequestWire {
                request: s("r"),
                pickup: PlaceWire::at("1", "2"),
                dropoff: PlaceWire::at("3", "4"),
                earliest: s("e"),
                latest: s("l"),
                seats: 1,
            })),
            CommandWire::Book { booking: s("b"), offer: s("o"), request: s("r"), date: Some(s("d")) },
            CommandWire::Accept { booking: s("b") },
            CommandWire::Decline { booking: s("b") },
            CommandWire::Cancel {
                booking: None,
                offer: Some(s("o")),
                request: None,
                date: Some(s("d")),
                memo: Some(s("m")),
            },
            CommandWire::Complete { booking: s("b") },
            CommandWire::Confirm { booking: s("b") },
            CommandWire::Dispute { booking: s("b"), memo: None },
            CommandWire::Resolve { booking: s("b"), outcome: s("settle"), memo: None },
        ];
        for command in commands {
            let body = common(command);
            assert_eq!(body.to_fields().into_wire(), Ok(body.clone()), "{}", body.command.kind());
            let bytes = canonical::to_canonical_vec(&body);
            let parsed: BodyFields =
                canonical::parse_presorted(&bytes).expect("the canonical form parses on the fast path");
            assert_eq!(parsed.into_wire(), Ok(body));
        }
    }

    #[test]
    fn fields_of_another_type_or_missing_ones_are_named() {
        let mut fields = BodyWire {
            ledger: "l".into(),
            account: "a".into(),
            seq: "1".into(),
            not_after: "t".into(),
            by: None,
            command: CommandWire::Transfer { to: "t".into(), amount: "1".into(), memo: None },
        }
        .to_fields();
        fields.name = Some("n".into());
        assert_eq!(fields.clone().into_wire(), Err(FieldsError::NotOfType { field: "name", kind: "transfer".into() }));
        fields.name = None;
        fields.amount = None;
        assert_eq!(fields.clone().into_wire(), Err(FieldsError::Missing("amount")));
        fields.kind = "steal".into();
        assert_eq!(fields.into_wire(), Err(FieldsError::UnknownType("steal".into())));
    }

    #[test]
    fn ride_fields_are_checked() {
        assert_eq!(weekdays_of("mon,tue,wed,thu,fri").unwrap(), 0b0011111);
        assert_eq!(weekdays_of("sun").unwrap(), 0b1000000);
        for bad in ["", "mon,mon", "tue,mon", "monday", "mon, tue", "MON"] {
            assert!(weekdays_of(bad).is_err(), "{bad}");
        }
        assert_eq!(detour_of("3.5").unwrap(), 3_500);
        assert!(detour_of("100.01").is_err());
        assert!(seats_of(0).is_err() && seats_of(9).is_err() && seats_of(8).is_ok());
        assert!(place_of("pickup", PlaceWire::at("45.2512", "1.3")).is_err(), "more than 3 decimals");
        assert!(place_of("pickup", PlaceWire { lat: Some("45".into()), ..PlaceWire::default() }).is_err());
        assert!(place_of("pickup", PlaceWire::meeting_point("Mairie")).is_err());
        assert_eq!(
            place_of("pickup", PlaceWire::meeting_point("mairie")).unwrap(),
            PlaceRef::MeetingPoint("mairie".into())
        );
    }
}
