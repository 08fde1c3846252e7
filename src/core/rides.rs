//! Rides in the state machine: meeting points, offers, requests, bookings, and what
//! each ride command and ride event does to them and to the money.
//!
//! A booking holds its fare on whoever pays (the passenger, or the sponsor up to its
//! caps); confirmation, the desk's resolution or the automatic settlement moves the
//! held money to the driver; cancellation, refusal or expiry releases it. Every
//! number comes from the rules in force when the booking is made, and is recorded in
//! the booking, so that a policy change never alters a ride already booked.
//!
//! The lifecycle of a booking:
//!
//! ```text
//! requested --accept--> accepted --complete--> completed --confirm / auto--> settled
//!     |                    |                       '--dispute--> disputed --resolve--> settled | released
//!     '--decline / cancel / expire                 '--cancel / expire
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use time::Date;

use crate::core::body::{CancelTarget, OfferSpec, PlaceRef, RequestSpec, Resolution, Schedule};
use crate::core::geo::{Point, road_distance_m};
use crate::core::ids::{AccountId, Id, Text};
use crate::core::leaf::Posting;
use crate::core::ledger::{Effect, Refusal, State};
use crate::core::matching::{self, Insertion, Itinerary, Motion, Passenger, StopView};
use crate::core::money::format_minor;
use crate::core::policy::{Payer, Rules};
use crate::core::time::{self as clock, Timestamp};

/// How far ahead a ride may be offered or requested, milliseconds (90 days).
pub const HORIZON_MS: i64 = 90 * 24 * 3_600_000;

/// A meeting point set by the desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingPoint {
    pub id: String,
    pub name: Text,
    pub location: Point,
}

/// A place as a ride records it: resolved coordinates, and the meeting point named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    pub location: Point,
    pub meeting_point: Option<String>,
}

/// A driver's offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub id: Id,
    pub driver: AccountId,
    pub origin: Place,
    pub destination: Place,
    pub seats: u32,
    pub direct_m: u32,
    pub detour_limit_m: u32,
    pub schedule: Schedule,
    /// The local date the offer was made: a weekly offer runs from then.
    #[serde(with = "crate::core::time::date_text")]
    pub created_on: Date,
    pub withdrawn: bool,
    /// Days of a weekly offer the driver called off.
    #[serde(default)]
    pub cancelled_dates: BTreeSet<String>,
}

/// A passenger's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: Id,
    pub passenger: AccountId,
    pub pickup: Place,
    pub dropoff: Place,
    pub earliest: Timestamp,
    pub latest: Timestamp,
    pub seats: u32,
    /// Road distance from pickup to dropoff, metres: what the passenger pays for.
    pub distance_m: u32,
    pub withdrawn: bool,
}

/// One day's ride of an offer, with the stops of its bookings in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Occurrence {
    pub offer: Id,
    #[serde(with = "crate::core::time::date_text")]
    pub date: Date,
    pub departure: Timestamp,
    pub stops: Vec<Stop>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub booking: Id,
    pub pickup: bool,
    pub location: Point,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Requested,
    Accepted,
    Completed,
    Disputed,
    Settled,
    Released,
    Declined,
    Cancelled,
    Expired,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Requested => "requested",
            BookingStatus::Accepted => "accepted",
            BookingStatus::Completed => "completed",
            BookingStatus::Disputed => "disputed",
            BookingStatus::Settled => "settled",
            BookingStatus::Released => "released",
            BookingStatus::Declined => "declined",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Expired => "expired",
        }
    }

    /// The booking is a trip that takes place (or took place): it counts for seats,
    /// for the daily limit and for the gap between trips.
    pub fn is_trip(self) -> bool {
        !matches!(self, BookingStatus::Declined | BookingStatus::Cancelled | BookingStatus::Expired)
    }

    /// Money is still held for it.
    pub fn holds(self) -> bool {
        matches!(
            self,
            BookingStatus::Requested | BookingStatus::Accepted | BookingStatus::Completed | BookingStatus::Disputed
        )
    }
}

/// Who pays how much of a fare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub account: AccountId,
    pub amount: i64,
    pub sponsor: bool,
}

/// A passenger's place in a driver's ride.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub id: Id,
    pub offer: Id,
    #[serde(with = "crate::core::time::date_text")]
    pub date: Date,
    pub request: Id,
    pub passenger: AccountId,
    pub driver: AccountId,
    pub seats: u32,
    pub distance_m: u32,
    pub fare: i64,
    pub shares: Vec<Share>,
    /// The departure of the ride and the estimated pickup, when booked.
    pub departure: Timestamp,
    pub pickup_at: Timestamp,
    pub booked_at: Timestamp,
    pub completed_at: Option<Timestamp>,
    /// From the rules when booked: how long after completion it settles by itself,
    /// and after its pickup an accepted booking never completed expires.
    pub settle_after_ms: i64,
    pub status: BookingStatus,
}

impl Booking {
    /// When a server event is due for this booking, if any.
    pub fn due_at(&self) -> Option<Timestamp> {
        match self.status {
            BookingStatus::Requested => Some(self.pickup_at),
            BookingStatus::Accepted => Some(self.pickup_at.plus_ms(self.settle_after_ms)),
            BookingStatus::Completed => self.completed_at.map(|at| at.plus_ms(self.settle_after_ms)),
            _ => None,
        }
    }
}

/// A ride object as it is stored, one row each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "object", rename_all = "snake_case")]
pub enum RideObject {
    Point(MeetingPoint),
    Offer(Offer),
    Request(Request),
    Occurrence(Occurrence),
    Booking(Booking),
}

impl RideObject {
    /// (kind, id) of its storage row.
    pub fn key(&self) -> (&'static str, String) {
        match self {
            RideObject::Point(point) => ("point", point.id.clone()),
            RideObject::Offer(offer) => ("offer", offer.id.to_string()),
            RideObject::Request(request) => ("request", request.id.to_string()),
            RideObject::Occurrence(occurrence) => ("occurrence", occurrence_key(&occurrence.offer, occurrence.date)),
            RideObject::Booking(booking) => ("booking", booking.id.to_string()),
        }
    }
}

/// A change a command makes to the rides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RideChange {
    Put(RideObject),
    RemovePoint(String),
}

/// The storage key of an occurrence: `<offer id>/<date>`.
pub fn occurrence_key(offer: &Id, date: Date) -> String {
    format!("{offer}/{}", clock::format_date(date))
}

/// All the rides, and indexes derived from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rides {
    points: BTreeMap<String, MeetingPoint>,
    offers: BTreeMap<Id, Offer>,
    requests: BTreeMap<Id, Request>,
    occurrences: BTreeMap<(Id, Date), Occurrence>,
    bookings: BTreeMap<Id, Booking>,
    /// Bookings each person takes part in, as passenger or driver.
    by_person: HashMap<AccountId, BTreeSet<Id>>,
    /// Bookings of each request.
    by_request: HashMap<Id, BTreeSet<Id>>,
    /// Server events due: (when, booking).
    due: BTreeSet<(Timestamp, Id)>,
}

impl Rides {
    /// Rebuilds the rides and their indexes from stored objects.
    pub fn restore(objects: impl Iterator<Item = RideObject>) -> Rides {
        let mut rides = Rides::default();
        for object in objects {
            rides.apply(RideChange::Put(object));
        }
        rides
    }

    pub fn apply(&mut self, change: RideChange) {
        match change {
            RideChange::Put(RideObject::Point(point)) => {
                self.points.insert(point.id.clone(), point);
            }
            RideChange::RemovePoint(id) => {
                self.points.remove(&id);
            }
            RideChange::Put(RideObject::Offer(offer)) => {
                self.offers.insert(offer.id.clone(), offer);
            }
            RideChange::Put(RideObject::Request(request)) => {
                self.requests.insert(request.id.clone(), request);
            }
            RideChange::Put(RideObject::Occurrence(occurrence)) => {
                self.occurrences.insert((occurrence.offer.clone(), occurrence.date), occurrence);
            }
            RideChange::Put(RideObject::Booking(booking)) => self.put_booking(booking),
        }
    }

    fn put_booking(&mut self, booking: Booking) {
        if let Some(old) = self.bookings.get(&booking.id) {
            if let Some(at) = old.due_at() {
                self.due.remove(&(at, old.id.clone()));
            }
        }
        if let Some(at) = booking.due_at() {
            self.due.insert((at, booking.id.clone()));
        }
        for person in [&booking.passenger, &booking.driver] {
            self.by_person.entry(person.clone()).or_default().insert(booking.id.clone());
        }
        self.by_request.entry(booking.request.clone()).or_default().insert(booking.id.clone());
        self.bookings.insert(booking.id.clone(), booking);
    }

    pub fn points(&self) -> impl Iterator<Item = &MeetingPoint> {
        self.points.values()
    }

    pub fn offer(&self, id: &Id) -> Option<&Offer> {
        self.offers.get(id)
    }

    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.values()
    }

    pub fn request(&self, id: &Id) -> Option<&Request> {
        self.requests.get(id)
    }

    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.requests.values()
    }

    pub fn booking(&self, id: &Id) -> Option<&Booking> {
        self.bookings.get(id)
    }

    pub fn occurrence(&self, offer: &Id, date: Date) -> Option<&Occurrence> {
        self.occurrences.get(&(offer.clone(), date))
    }

    /// The occurrences of an offer, by date.
    pub fn occurrences_of<'a>(&'a self, offer: &'a Id) -> impl Iterator<Item = &'a Occurrence> + 'a {
        self.occurrences
            .range((offer.clone(), Date::MIN)..=(offer.clone(), Date::MAX))
            .map(|(_, occurrence)| occurrence)
    }

    /// Every object, for storage and comparison.
    pub fn objects(&self) -> impl Iterator<Item = RideObject> + '_ {
        let points = self.points.values().cloned().map(RideObject::Point);
        let offers = self.offers.values().cloned().map(RideObject::Offer);
        let requests = self.requests.values().cloned().map(RideObject::Request);
        let occurrences = self.occurrences.values().cloned().map(RideObject::Occurrence);
        let bookings = self.bookings.values().cloned().map(RideObject::Booking);
        points.chain(offers).chain(requests).chain(occurrences).chain(bookings)
    }

    /// The object a storage key names.
    pub fn object(&self, kind: &str, id: &str) -> Option<RideObject> {
        match kind {
            "point" => self.points.get(id).cloned().map(RideObject::Point),
            "offer" => self.offers.get(&Id::parse("id", id).ok()?).cloned().map(RideObject::Offer),
            "request" => self.requests.get(&Id::parse("id", id).ok()?).cloned().map(RideObject::Request),
            "booking" => self.bookings.get(&Id::parse("id", id).ok()?).cloned().map(RideObject::Booking),
            "occurrence" => {
                let (offer, date) = id.split_once('/')?;
                let key = (Id::parse("id", offer).ok()?, clock::parse_date(date).ok()?);
                self.occurrences.get(&key).cloned().map(RideObject::Occurrence)
            }
            _ => None,
        }
    }

    /// Bookings whose server event is due at `now`, in due order.
    pub fn due(&self, now: Timestamp) -> impl Iterator<Item = &Booking> + '_ {
        self.due.range(..=(now, Id::max())).filter_map(|(_, id)| self.bookings.get(id))
    }

    /// The bookings of a person, as passenger or driver.
    pub fn bookings_of<'a>(&'a self, person: &AccountId) -> impl Iterator<Item = &'a Booking> + 'a {
        self.by_person.get(person).into_iter().flatten().filter_map(|id| self.bookings.get(id))
    }

    /// The bookings of a request.
    pub fn bookings_of_request<'a>(&'a self, request: &Id) -> impl Iterator<Item = &'a Booking> + 'a {
        self.by_request.get(request).into_iter().flatten().filter_map(|id| self.bookings.get(id))
    }
}

/// The fare for a distance: metres × rate per km ÷ 1000, rounded to the cent, half up.
pub fn fare_minor(distance_m: u32, fare_per_km_e4: i64) -> i64 {
    // rate in 1/10000 of the currency per km; cents = m × rate_e4 / (1000 × 100).
    let numerator = i64::from(distance_m) * fare_per_km_e4;
    (numerator + 50_000) / 100_000
}

/// The motion parameters of the rules.
pub fn motion(rules: &Rules) -> Motion {
    Motion { road_factor_e3: rules.road_factor_e3, speed_kmh: rules.speed_kmh }
}

// ---------------------------------------------------------------------------------
// Deciding commands. Each reads the state and returns the changes; `ledger::commit`
// applies them.

fn refuse<T>(refusal: Refusal) -> Result<T, Refusal> {
    Err(refusal)
}

fn resolve(state: &State, place: &PlaceRef) -> Result<Place, Refusal> {
    match place {
        PlaceRef::At(location) => Ok(Place { location: *location, meeting_point: None }),
        PlaceRef::MeetingPoint(id) => {
            let point = state.rides().points.get(id).ok_or_else(|| Refusal::UnknownPoint(id.clone()))?;
            Ok(Place { location: point.location, meeting_point: Some(id.clone()) })
        }
    }
}

fn fresh(state: &State, id: &Id) -> Result<(), Refusal> {
    let rides = state.rides();
    if rides.offers.contains_key(id) || rides.requests.contains_key(id) || rides.bookings.contains_key(id) {
        return refuse(Refusal::RideExists(id.to_string()));
    }
    Ok(())
}

pub fn decide_place_set(effect: &mut Effect, point: &str, name: &Text, location: Point) {
    let point = MeetingPoint { id: point.to_owned(), name: name.clone(), location };
    effect.rides.push(RideChange::Put(RideObject::Point(point)));
}

pub fn decide_place_remove(state: &State, effect: &mut Effect, point: &str) -> Result<(), Refusal> {
    if !state.rides().points.contains_key(point) {
        return refuse(Refusal::UnknownPoint(point.to_owned()));
    }
    effect.rides.push(RideChange::RemovePoint(point.to_owned()));
    Ok(())
}

pub fn decide_offer(
    state: &State,
    effect: &mut Effect,
    driver: &AccountId,
    spec: &OfferSpec,
    now: Timestamp,
) -> Result<(), Refusal> {
    let rules = state.rules();
    fresh(state, &spec.offer)?;
    let origin = resolve(state, &spec.origin)?;
    let destination = resolve(state, &spec.destination)?;
    let today = rules.zone.local_date(now);
    match &spec.schedule {
        Schedule::Once { departure } => check_horizon(*departure, *departure, now)?,
        Schedule::Weekly { until: Some(until), .. } if *until < today => return refuse(Refusal::InThePast),
        Schedule::Weekly { .. } => {}
    }
    let direct_m = road_distance_m(origin.location, destination.location, rules.road_factor_e3);
    let share = u64::from(direct_m) * u64::from(rules.detour_share_e4) / 10_000;
    let detour_limit_m = spec.detour_m.unwrap_or_else(|| rules.detour_m_min.max(share as u32));
    let offer = Offer {
        id: spec.offer.clone(),
        driver: driver.clone(),
        origin,
        destination,
        seats: spec.seats,
        direct_m,
        detour_limit_m,
        schedule: spec.schedule.clone(),
        created_on: today,
        withdrawn: false,
        cancelled_dates: BTreeSet::new(),
    };
    effect.rides.push(RideChange::Put(RideObject::Offer(offer)));
    Ok(())
}

pub fn decide_request(
    state: &State,
    effect: &mut Effect,
    passenger: &AccountId,
    spec: &RequestSpec,
    now: Timestamp,
) -> Result<(), Refusal> {
    let rules = state.rules();
    fresh(state, &spec.request)?;
    let pickup = resolve(state, &spec.pickup)?;
    let dropoff = resolve(state, &spec.dropoff)?;
    check_horizon(spec.earliest, spec.latest, now)?;
    let distance_m = road_distance_m(pickup.location, dropoff.location, rules.road_factor_e3);
    check_trip_distance(distance_m, rules)?;
    let request = Request {
        id: spec.request.clone(),
        passenger: passenger.clone(),
        pickup,
        dropoff,
        earliest: spec.earliest,
        latest: spec.latest,
        seats: spec.seats,
        distance_m,
        withdrawn: false,
    };
    effect.rides.push(RideChange::Put(RideObject::Request(request)));
    Ok(())
}

fn check_horizon(earliest: Timestamp, latest: Timestamp, now: Timestamp) -> Result<(), Refusal> {
    if latest < now {
        return refuse(Refusal::InThePast);
    }
    if earliest > now.plus_ms(HORIZON_MS) {
        return refuse(Refusal::TooFarAhead);
    }
    Ok(())
}

fn check_trip_distance(distance_m: u32, rules: &Rules) -> Result<(), Refusal> {
    let km = |metres: u32| format!("{:.1} km", f64::from(metres) / 1000.0);
    if distance_m < rules.trip_m_min {
        return refuse(Refusal::TripTooShort { distance: km(distance_m), min: km(rules.trip_m_min) });
    }
    if distance_m > rules.trip_m_max {
        return refuse(Refusal::TripTooLong { distance: km(distance_m), max: km(rules.trip_m_max) });
    }
    Ok(())
}

/// The occurrence a booking asks for: the offer's ride of that local date.
fn occurrence_for(state: &State, offer: &Offer, date: Option<Date>) -> Result<Occurrence, Refusal> {
    let rules = state.rules();
    let (date, departure) = match (&offer.schedule, date) {
        (Schedule::Once { departure }, date) => {
            let own = rules.zone.local_date(*departure);
            if date.is_some_and(|date| date != own) {
                return refuse(Refusal::NotScheduled("this ride runs on one day only".into()));
            }
            (own, *departure)
        }
        (Schedule::Weekly { .. }, None) => {
            return refuse(Refusal::NotScheduled("a weekly ride is booked for a date; say which".into()));
        }
        (Schedule::Weekly { weekdays, minute_of_day, until }, Some(date)) => {
            let runs = weekdays & (1 << clock::weekday_index(date)) != 0;
            let in_range = date >= offer.created_on && until.is_none_or(|until| date <= until);
            if !runs || !in_range {
                return refuse(Refusal::NotScheduled(format!("the ride does not run on {}", clock::format_date(date))));
            }
            (date, rules.zone.to_instant(date, *minute_of_day))
        }
    };
    if offer.cancelled_dates.contains(&clock::format_date(date)) {
        return refuse(Refusal::RideClosed(format!("the driver called off the ride of {}", clock::format_date(date))));
    }
    Ok(state.rides().occurrence(&offer.id, date).cloned().unwrap_or(Occurrence {
        offer: offer.id.clone(),
        date,
        departure,
        stops: Vec::new(),
    }))
}

/// The itinerary of an occurrence as the insertion rule sees it.
pub fn stop_views(rides: &Rides, occurrence: &Occurrence) -> Vec<StopView> {
    occurrence
        .stops
        .iter()
        .map(|stop| {
            let window = if stop.pickup {
                rides
                    .booking(&stop.booking)
                    .and_then(|booking| rides.request(&booking.request))
                    .map(|request| (request.earliest, request.latest))
            } else {
                None
            };
            StopView { location: stop.location, window }
        })
        .collect()
}

pub fn seats_taken(rides: &Rides, occurrence: &Occurrence) -> u32 {
    let booked: BTreeSet<&Id> = occurrence.stops.iter().map(|stop| &stop.booking).collect();
    booked.iter().filter_map(|id| rides.booking(id)).filter(|booking| booking.status.is_trip()).map(|b| b.seats).sum()
}

/// Where a request fits into an occurrence of an offer, if it does.
pub fn fit(
    rides: &Rides,
    rules: &Rules,
    offer: &Offer,
    occurrence: &Occurrence,
    request: &Request,
) -> Option<Insertion> {
    let stops = stop_views(rides, occurrence);
    let itinerary = Itinerary {
        origin: offer.origin.location,
        destination: offer.destination.location,
        departure: occurrence.departure,
        stops: &stops,
        direct_m: offer.direct_m,
        detour_limit_m: offer.detour_limit_m,
    };
    let passenger = Passenger {
        pickup: request.pickup.location,
        dropoff: request.dropoff.location,
        earliest: request.earliest,
        latest: request.latest,
    };
    matching::best_insertion(&itinerary, &passenger, motion(rules))
}

pub struct BookArgs<'a> {
    pub booking: &'a Id,
    pub offer: &'a Id,
    pub request: &'a Id,
    pub date: Option<Date>,
}

pub fn decide_book(
    state: &State,
    effect: &mut Effect,
    passenger: &AccountId,
    args: BookArgs<'_>,
    now: Timestamp,
) -> Result<(), Refusal> {
    let rides = state.rides();
    let rules = state.rules();
    fresh(state, args.booking)?;
    let request = rides.request(args.request).ok_or_else(|| Refusal::UnknownRide(args.request.to_string()))?;
    if request.passenger != *passenger {
        return refuse(Refusal::NotYours(args.request.to_string()));
    }
    if request.withdrawn {
        return refuse(Refusal::RideClosed("the request was withdrawn".into()));
    }
    let offer = rides.offer(args.offer).ok_or_else(|| Refusal::UnknownRide(args.offer.to_string()))?;
    if offer.withdrawn {
        return refuse(Refusal::RideClosed("the driver withdrew the offer".into()));
    }
    if offer.driver == *passenger {
        return refuse(Refusal::OwnRide);
    }
    let mut occurrence = occurrence_for(state, offer, args.date)?;
    if seats_taken(rides, &occurrence) + request.seats > offer.seats {
        return refuse(Refusal::NoSeats);
    }
    let insertion = fit(rides, rules, offer, &occurrence, request).ok_or(Refusal::DoesNotFit)?;
    if insertion.pickup_at <= now {
        return refuse(Refusal::TooLate("the pickup time has passed".into()));
    }
    check_trips(state, passenger, insertion.pickup_at, None)?;
    let driving_already =
        occurrence.stops.iter().any(|stop| rides.booking(&stop.booking).is_some_and(|b| b.status.is_trip()));
    if !driving_already {
        check_trips(state, &offer.driver, occurrence.departure, Some((&offer.id, occurrence.date)))?;
    }
    let fare = fare_minor(request.distance_m, rules.fare_per_km_e4);
    let shares = shares(state, passenger, fare, insertion.pickup_at)?;
    // Each account pays at most once per booking (the sponsor's rides are its own),
    // so checking each share against its account's available money is exact.
    assert!(
        shares.iter().enumerate().all(|(i, a)| shares[i + 1..].iter().all(|b| b.account != a.account)),
        "one share per account"
    );
    for share in &shares {
        let account =
            state.account(&share.account).ok_or_else(|| Refusal::UnknownAccount(share.account.to_string()))?;
        let floor = account.floor.map_or(0, |floor| floor.minor());
        if account.available() - share.amount < floor {
            return refuse(Refusal::InsufficientFunds {
                account: account.id.to_string(),
                available: format_minor(account.available()),
                floor: format_minor(floor),
                amount: format_minor(share.amount),
            });
        }
        effect.holds.push((share.account.clone(), share.amount));
    }
    occurrence.stops.insert(
        insertion.dropoff_index,
        Stop { booking: args.booking.clone(), pickup: false, location: request.dropoff.location },
    );
    occurrence.stops.insert(
        insertion.pickup_index,
        Stop { booking: args.booking.clone(), pickup: true, location: request.pickup.location },
    );
    let booking = Booking {
        id: args.booking.clone(),
        offer: offer.id.clone(),
        date: occurrence.date,
        request: request.id.clone(),
        passenger: passenger.clone(),
        driver: offer.driver.clone(),
        seats: request.seats,
        distance_m: request.distance_m,
        fare,
        shares,
        departure: occurrence.departure,
        pickup_at: insertion.pickup_at,
        booked_at: now,
        completed_at: None,
        settle_after_ms: rules.settle_after_ms,
        status: BookingStatus::Requested,
    };
    effect.rides.push(RideChange::Put(RideObject::Occurrence(occurrence)));
    effect.rides.push(RideChange::Put(RideObject::Booking(booking)));
    Ok(())
}

/// At most so many trips a local day, and none closer than the gap to another.
/// `occurrence` is the driver's ride the new trip belongs to (not counted twice).
fn check_trips(
    state: &State,
    person: &AccountId,
    start: Timestamp,
    occurrence: Option<(&Id, Date)>,
) -> Result<(), Refusal> {
    let rules = state.rules();
    let rides = state.rides();
    let day = rules.zone.local_date(start);
    let mut trips: BTreeSet<(Timestamp, String)> = BTreeSet::new();
    for booking in rides.bookings_of(person).filter(|booking| booking.status.is_trip()) {
        if booking.passenger == *person {
            trips.insert((booking.pickup_at, booking.id.to_string()));
        } else if occurrence.is_none_or(|(offer, date)| booking.offer != *offer || booking.date != date) {
            trips.insert((booking.departure, occurrence_key(&booking.offer, booking.date)));
        }
    }
    for (at, _) in &trips {
        if (at.unix_ms() - start.unix_ms()).abs() < rules.trip_gap_ms {
            return refuse(Refusal::TripsTooClose { account: person.to_string(), minutes: rules.trip_gap_ms / 60_000 });
        }
    }
    let same_day = trips.iter().filter(|(at, _)| rules.zone.local_date(*at) == day).count();
    if same_day as u32 >= rules.trips_per_day_max {
        return refuse(Refusal::TooManyTrips { account: person.to_string(), max: rules.trips_per_day_max });
    }
    Ok(())
}

/// Who pays a fare: the passenger, or the sponsor within its caps and the passenger
/// for the rest.
fn shares(state: &State, passenger: &AccountId, fare: i64, pickup_at: Timestamp) -> Result<Vec<Share>, Refusal> {
    let rules = state.rules();
    let passenger_pays = || {
        let share = Share { account: passenger.clone(), amount: fare, sponsor: false };
        Ok(if fare > 0 { vec![share] } else { Vec::new() })
    };
    let Payer::Sponsor { account: sponsor, cap_trip, cap_day, cap_month } = &rules.payer else {
        return passenger_pays();
    };
    if sponsor == passenger {
        // The sponsor's own rides are its own to pay.
        return passenger_pays();
    }
    if state.account(sponsor).is_none() {
        return refuse(Refusal::UnknownAccount(sponsor.to_string()));
    }
    let day = rules.zone.local_date(pickup_at);
    let (mut used_day, mut used_month) = (0, 0);
    for booking in state.rides().bookings_of(passenger) {
        let counted =
            booking.passenger == *passenger && booking.status.is_trip() && booking.status != BookingStatus::Released;
        if !counted {
            continue;
        }
        let sponsored: i64 = booking.shares.iter().filter(|share| share.sponsor).map(|share| share.amount).sum();
        let other = rules.zone.local_date(booking.pickup_at);
        if other == day {
            used_day += sponsored;
        }
        if (other.year(), other.month()) == (day.year(), day.month()) {
            used_month += sponsored;
        }
    }
    let sponsored = fare.min(*cap_trip).min(cap_day - used_day).min(cap_month - used_month).max(0);
    let mut shares = Vec::new();
    if sponsored > 0 {
        shares.push(Share { account: sponsor.clone(), amount: sponsored, sponsor: true });
    }
    if fare > sponsored {
        shares.push(Share { account: passenger.clone(), amount: fare - sponsored, sponsor: false });
    }
    Ok(shares)
}

/// Who may act on a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Passenger,
    Driver,
    Either,
}

fn booking_for<'a>(state: &'a State, id: &Id, signer: &AccountId, role: Role) -> Result<&'a Booking, Refusal> {
    let booking = state.rides().booking(id).ok_or_else(|| Refusal::UnknownRide(id.to_string()))?;
    let allowed = match role {
        Role::Passenger => booking.passenger == *signer,
        Role::Driver => booking.driver == *signer,
        Role::Either => booking.passenger == *signer || booking.driver == *signer,
    };
    if !allowed {
        return refuse(Refusal::NotYours(id.to_string()));
    }
    Ok(booking)
}

fn wrong_state(booking: &Booking, action: &'static str) -> Refusal {
    Refusal::WrongState { booking: booking.id.to_string(), status: booking.status.as_str(), action }
}

/// The booking leaves the itinerary: its hold is released and its stops removed.
fn release(state: &State, effect: &mut Effect, booking: &Booking, status: BookingStatus) {
    for share in &booking.shares {
        effect.holds.push((share.account.clone(), -share.amount));
    }
    if let Some(occurrence) = state.rides().occurrence(&booking.offer, booking.date) {
        let mut occurrence = occurrence.clone();
        occurrence.stops.retain(|stop| stop.booking != booking.id);
        effect.rides.push(RideChange::Put(RideObject::Occurrence(occurrence)));
    }
    let mut booking = booking.clone();
    booking.status = status;
    effect.rides.push(RideChange::Put(RideObject::Booking(booking)));
}

/// The held fare goes to the driver.
fn settle(effect: &mut Effect, booking: &Booking) {
    for share in &booking.shares {
        effect.holds.push((share.account.clone(), -share.amount));
        effect.postings.push(Posting { account: share.account.clone(), amount_minor: -share.amount });
    }
    // A free ride (a fare rounded to nothing) settles without moving money.
    if booking.fare > 0 {
        effect.postings.push(Posting { account: booking.driver.clone(), amount_minor: booking.fare });
    }
    let mut booking = booking.clone();
    booking.status = BookingStatus::Settled;
    effect.rides.push(RideChange::Put(RideObject::Booking(booking)));
}

fn with_status(effect: &mut Effect, booking: &Booking, status: BookingStatus, completed_at: Option<Timestamp>) {
    let mut booking = booking.clone();
    booking.status = status;
    if completed_at.is_some() {
        booking.completed_at = completed_at;
    }
    effect.rides.push(RideChange::Put(RideObject::Booking(booking)));
}

pub fn decide_accept(
    state: &State,
    effect: &mut Effect,
    signer: &AccountId,
    id: &Id,
    accept: bool,
) -> Result<(), Refusal> {
    let booking = booking_for(state, id, signer, Role::Driver)?;
    if booking.status != BookingStatus::Requested {
        return refuse(wrong_state(booking, if accept { "accept" } else { "decline" }));
    }
    if accept {
        with_status(effect, booking, BookingStatus::Accepted, None);
    } else {
        release(state, effect, booking, BookingStatus::Declined);
    }
    Ok(())
}

pub fn decide_cancel(
    state: &State,
    effect: &mut Effect,
    signer: &AccountId,
    target: &CancelTarget,
    now: Timestamp,
) -> Result<(), Refusal> {
    let rides = state.rides();
    match target {
        CancelTarget::Booking(id) => {
            let booking = booking_for(state, id, signer, Role::Either)?;
            if !matches!(booking.status, BookingStatus::Requested | BookingStatus::Accepted) {
                return refuse(wrong_state(booking, "cancel"));
            }
            if booking.pickup_at <= now {
                return refuse(Refusal::TooLate("the pickup time has passed; the ride is completed or expires".into()));
            }
            release(state, effect, booking, BookingStatus::Cancelled);
        }
        CancelTarget::Offer { offer: id, date } => {
            let offer = rides.offer(id).ok_or_else(|| Refusal::UnknownRide(id.to_string()))?;
            if offer.driver != *signer {
                return refuse(Refusal::NotYours(id.to_string()));
            }
            if offer.withdrawn {
                return refuse(Refusal::RideClosed("the offer is already withdrawn".into()));
            }
            let mut withdrawn = offer.clone();
            match date {
                Some(date) => {
                    occurrence_for(state, offer, Some(*date))?;
                    withdrawn.cancelled_dates.insert(clock::format_date(*date));
                }
                None => withdrawn.withdrawn = true,
            }
            let mut affected = Vec::new();
            for occurrence in
                rides.occurrences_of(id).filter(|occurrence| date.is_none_or(|date| occurrence.date == date))
            {
                let mut seen = BTreeSet::new();
                for stop in &occurrence.stops {
                    if seen.insert(stop.booking.clone()) {
                        affected.push(stop.booking.clone());
                    }
                }
            }
            cancel_future(state, effect, affected.iter(), now);
            effect.rides.push(RideChange::Put(RideObject::Offer(withdrawn)));
        }
        CancelTarget::Request(id) => {
            let request = rides.request(id).ok_or_else(|| Refusal::UnknownRide(id.to_string()))?;
            if request.passenger != *signer {
                return refuse(Refusal::NotYours(id.to_string()));
            }
            if request.withdrawn {
                return refuse(Refusal::RideClosed("the request is already withdrawn".into()));
            }
            let bookings: Vec<Id> = rides.bookings_of_request(id).map(|booking| booking.id.clone()).collect();
            cancel_future(state, effect, bookings.iter(), now);
            let mut withdrawn = request.clone();
            withdrawn.withdrawn = true;
            effect.rides.push(RideChange::Put(RideObject::Request(withdrawn)));
        }
    }
    Ok(())
}

/// Cancels the bookings that are still before their pickup; the others stay, to be
/// completed or to expire. Several bookings may share an occurrence: the stops are
/// removed from one copy of it.
fn cancel_future<'a>(state: &State, effect: &mut Effect, ids: impl Iterator<Item = &'a Id>, now: Timestamp) {
    let rides = state.rides();
    let mut occurrences: BTreeMap<(Id, Date), Occurrence> = BTreeMap::new();
    for id in ids {
        let Some(booking) = rides.booking(id) else { continue };
        let active = matches!(booking.status, BookingStatus::Requested | BookingStatus::Accepted);
        if !active || booking.pickup_at <= now {
            continue;
        }
        for share in &booking.shares {
            effect.holds.push((share.account.clone(), -share.amount));
        }
        let key = (booking.offer.clone(), booking.date);
        if let Some(occurrence) = occurrences.get_mut(&key) {
            occurrence.stops.retain(|stop| stop.booking != booking.id);
        } else if let Some(occurrence) = rides.occurrence(&booking.offer, booking.date) {
            let mut occurrence = occurrence.clone();
            occurrence.stops.retain(|stop| stop.booking != booking.id);
            occurrences.insert(key, occurrence);
        }
        let mut cancelled = booking.clone();
        cancelled.status = BookingStatus::Cancelled;
        effect.rides.push(RideChange::Put(RideObject::Booking(cancelled)));
    }
    for occurrence in occurrences.into_values() {
        effect.rides.push(RideChange::Put(RideObject::Occurrence(occurrence)));
    }
}

pub fn decide_complete(
    state: &State,
    effect: &mut Effect,
    signer: &AccountId,
    id: &Id,
    now: Timestamp,
) -> Result<(), Refusal> {
    let booking = booking_for(state, id, signer, Role::Driver)?;
    if booking.status != BookingStatus::Accepted {
        return refuse(wrong_state(booking, "complete"));
    }
    if now < booking.pickup_at {
        return refuse(Refusal::TooEarly(format!("the pickup is due at {}", booking.pickup_at)));
    }
    with_status(effect, booking, BookingStatus::Completed, Some(now));
    Ok(())
}

pub fn decide_confirm(state: &State, effect: &mut Effect, signer: &AccountId, id: &Id) -> Result<(), Refusal> {
    let booking = booking_for(state, id, signer, Role::Passenger)?;
    if booking.status != BookingStatus::Completed {
        return refuse(wrong_state(booking, "confirm"));
    }
    settle(effect, booking);
    Ok(())
}

pub fn decide_dispute(
    state: &State,
    effect: &mut Effect,
    signer: &AccountId,
    id: &Id,
    now: Timestamp,
) -> Result<(), Refusal> {
    let booking = booking_for(state, id, signer, Role::Passenger)?;
    if booking.status != BookingStatus::Completed {
        return refuse(wrong_state(booking, "dispute"));
    }
    let deadline = booking.completed_at.expect("a completed booking has its time").plus_ms(booking.settle_after_ms);
    if now >= deadline {
        return refuse(Refusal::TooLate(format!("disputes close at {deadline}; the ride settles")));
    }
    with_status(effect, booking, BookingStatus::Disputed, None);
    Ok(())
}

pub fn decide_resolve(state: &State, effect: &mut Effect, id: &Id, resolution: Resolution) -> Result<(), Refusal> {
    let booking = state.rides().booking(id).ok_or_else(|| Refusal::UnknownRide(id.to_string()))?;
    if booking.status != BookingStatus::Disputed {
        return refuse(wrong_state(booking, "resolve"));
    }
    match resolution {
        Resolution::Settle => settle(effect, booking),
        Resolution::Release => {
            for share in &booking.shares {
                effect.holds.push((share.account.clone(), -share.amount));
            }
            with_status(effect, booking, BookingStatus::Released, None);
        }
    }
    Ok(())
}

/// `ride.settle`: a completed ride, undisputed for its settlement delay.
pub fn decide_auto_settle(state: &State, effect: &mut Effect, id: &Id, now: Timestamp) -> Result<(), Refusal> {
    let booking = state.rides().booking(id).ok_or_else(|| Refusal::UnknownRide(id.to_string()))?;
    let due = booking.due_at().filter(|_| booking.status == BookingStatus::Completed);
    if due.is_none_or(|due| now < due) {
        return refuse(Refusal::NotDue(id.to_string()));
    }
    settle(effect, booking);
    Ok(())
}

/// `ride.expire`: a booking never accepted by its pickup time, or accepted and never
/// completed within the settlement delay after it.
pub fn decide_expire(state: &State, effect: &mut Effect, id: &Id, now: Timestamp) -> Result<(), Refusal> {
    let booking = state.rides().booking(id).ok_or_else(|| Refusal::UnknownRide(id.to_string()))?;
    let expiring = matches!(booking.status, BookingStatus::Requested | BookingStatus::Accepted);
    if !expiring || booking.due_at().is_none_or(|due| now < due) {
        return refuse(Refusal::NotDue(id.to_string()));
    }
    release(state, effect, booking, BookingStatus::Expired);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fares_round_to_the_cent_half_up() {
        let check = |metres: u32, rate: i64, expected: i64| {
            assert_eq!(fare_minor(metres, rate), expected, "{metres} m at {rate}")
        };
        check(10_000, 600, 60); // 10 km at 0.06
        check(8_813, 600, 53); // 52.878 cents
        check(8_750, 600, 53); // 52.5: half up
        check(8_749, 600, 52); // 52.494
        check(25_000, 600, 150);
        check(2_000, 600, 12);
        check(12_345, 650, 80); // 80.2425 at 0.065
        check(0, 600, 0);
    }
}
