//! The ride board: open offers and requests indexed in space, for matching, the
//! public listing and the live streams.
//!
//! The board is derived state, like the balances, kept in memory beside the writer's
//! state and refreshed after each commit from what the batch changed. Each offer is
//! indexed (an R-tree) by the box that holds every point its driver could reach
//! within the detour limit: the route's box widened by the half-minor axis of the
//! ellipse whose foci are origin and destination and whose string is the route plus
//! the detour. No pickup or dropoff outside that box can fit, so a request is only
//! tried against the few offers whose box holds both of its points.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rstar::primitives::{GeomWithData, Rectangle};
use rstar::{AABB, Envelope, RTree, RTreeObject};
use time::Date;

use crate::core::body::Schedule;
use crate::core::geo::{Point, degrees_per_metre};
use crate::core::ids::{AccountId, Id};
use crate::core::ledger::State;
use crate::core::matching::{self, Itinerary, Passenger, StopView};
use crate::core::policy::Rules;
use crate::core::rides::{self, MeetingPoint, Offer, Place, Request};
use crate::core::time::{self as clock, Timestamp};

/// Most offers a match examines after the spatial filter.
pub const CANDIDATES_MAX: usize = 2_000;
/// Most matches returned for a request.
pub const MATCHES_MAX: usize = 20;
/// Most offers in a public listing.
pub const LISTING_MAX: usize = 100;
/// Public listings show places to the nearest 0.005° (about 500 m), unless they are
/// meeting points.
pub const COARSE_STEP_E6: i32 = 5_000;

/// An offer in space and time: its reach box × the hours its pickups can fall in
/// (from departure to the end of the longest route it may drive); weekly offers
/// span all time.
type OfferBox = GeomWithData<Rectangle<[f64; 3]>, Id>;
type RequestPoint = GeomWithData<[f64; 2], Id>;

/// One day's ride of an offer, as matching needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DayView {
    departure: Timestamp,
    stops: Vec<StopView>,
    seats_taken: u32,
}

#[derive(Debug, Clone)]
struct OfferEntry {
    offer: Offer,
    area: Rectangle<[f64; 2]>,
    space_time: Rectangle<[f64; 3]>,
    days: BTreeMap<Date, DayView>,
}

/// An offer that fits a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    pub offer: Id,
    pub driver: AccountId,
    pub date: Date,
    pub departure: Timestamp,
    pub pickup_at: Timestamp,
    pub added_m: u32,
    pub fare: i64,
    pub seats_free: u32,
    pub origin: Place,
    pub destination: Place,
}

/// An upcoming ride in the public listing: coarse places only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub offer: Id,
    pub date: Date,
    pub departure: Timestamp,
    pub origin: Point,
    pub origin_point: Option<String>,
    pub destination: Point,
    pub destination_point: Option<String>,
    pub seats_free: u32,
}

/// What a live stream is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A new offer fits an open request.
    Match { request: Id, found: Box<Match> },
    /// A booking of the request changed (it names the ride's driver and passenger).
    Booking { request: Id, booking: Id, status: &'static str, driver: AccountId, passenger: AccountId },
}

impl Notification {
    pub fn request(&self) -> &Id {
        match self {
            Notification::Match { request, .. } | Notification::Booking { request, .. } => request,
        }
    }

    /// Whether a member's own stream shows it: a change to a booking they drive or
    /// ride in.
    pub fn concerns(&self, account: &AccountId) -> bool {
        matches!(self, Notification::Booking { driver, passenger, .. } if driver == account || passenger == account)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Board {
    rules: Option<Rules>,
    points: Vec<MeetingPoint>,
    offers: HashMap<Id, OfferEntry>,
    offer_tree: RTree<OfferBox>,
    requests: HashMap<Id, Request>,
    request_tree: RTree<RequestPoint>,
}

impl Board {
    /// The board of a whole state.
    pub fn build(state: &State) -> Board {
        let mut board = Board { rules: Some(state.rules().clone()), ..Board::default() };
        board.points = state.rides().points().cloned().collect();
        for offer in state.rides().offers().filter(|offer| !offer.withdrawn) {
            board.put_offer(state, offer.clone());
        }
        for request in state.rides().requests().filter(|request| !request.withdrawn) {
            board.put_request(request.clone());
        }
        board
    }

    fn rules(&self) -> &Rules {
        self.rules.as_ref().expect("a board is built from a state")
    }

    /// Brings the board up to date after a commit; returns what streams should hear.
    pub fn refresh(
        &mut self,
        state: &State,
        changed: &BTreeSet<(&'static str, String)>,
        policy: bool,
        now: Timestamp,
    ) -> Vec<Notification> {
        if policy {
            *self = Board::build(state);
        }
        let rides = state.rides();
        let mut notifications = Vec::new();
        let mut new_offers = Vec::new();
        for (kind, id) in changed {
            match *kind {
                "point" => self.points = rides.points().cloned().collect(),
                "offer" => {
                    let Some(offer) = Id::parse("offer", id).ok().and_then(|id| rides.offer(&id)) else { continue };
                    let is_new = !self.offers.contains_key(&offer.id);
                    self.remove_offer(&offer.id);
                    if !offer.withdrawn {
                        self.put_offer(state, offer.clone());
                        if is_new {
                            new_offers.push(offer.id.clone());
                        }
                    }
                }
                "occurrence" => {
                    let Some((offer, date)) = id.split_once('/') else { continue };
                    let (Ok(offer), Ok(date)) = (Id::parse("offer", offer), clock::parse_date(date)) else { continue };
                    if let (Some(entry), Some(occurrence)) =
                        (self.offers.get_mut(&offer), rides.occurrence(&offer, date))
                    {
                        entry.days.insert(date, day_view(state, occurrence));
                    }
                }
                "request" => {
                    let Some(request) = Id::parse("request", id).ok().and_then(|id| rides.request(&id)) else {
                        continue;
                    };
                    self.remove_request(&request.id);
                    if !request.withdrawn {
                        self.put_request(request.clone());
                    }
                }
                "booking" => {
                    let Some(booking) = Id::parse("booking", id).ok().and_then(|id| rides.booking(&id)) else {
                        continue;
                    };
                    notifications.push(Notification::Booking {
                        request: booking.request.clone(),
                        booking: booking.id.clone(),
                        status: booking.status.as_str(),
                        driver: booking.driver.clone(),
                        passenger: booking.passenger.clone(),
                    });
                }
                _ => {}
            }
        }
        for offer in new_offers {
            notifications.extend(self.requests_fitting(&offer, now));
        }
        notifications
    }

    fn put_offer(&mut self, state: &State, offer: Offer) {
        let area = reach(&offer, self.rules());
        let space_time = in_time(&offer, &area, self.rules());
        let days = state
            .rides()
            .occurrences_of(&offer.id)
            .map(|occurrence| (occurrence.date, day_view(state, occurrence)))
            .collect();
        self.offer_tree.insert(GeomWithData::new(space_time, offer.id.clone()));
        self.offers.insert(offer.id.clone(), OfferEntry { offer, area, space_time, days });
    }

    fn remove_offer(&mut self, id: &Id) {
        if let Some(entry) = self.offers.remove(id) {
            self.offer_tree.remove(&GeomWithData::new(entry.space_time, id.clone()));
        }
    }

    fn put_request(&mut self, request: Request) {
        let location = [request.pickup.location.lon_degrees(), request.pickup.location.lat_degrees()];
        self.request_tree.insert(GeomWithData::new(location, request.id.clone()));
        self.requests.insert(request.id.clone(), request);
    }

    fn remove_request(&mut self, id: &Id) {
        if let Some(request) = self.requests.remove(id) {
            let location = [request.pickup.location.lon_degrees(), request.pickup.location.lat_degrees()];
            self.request_tree.remove(&GeomWithData::new(location, id.clone()));
        }
    }

    pub fn request(&self, id: &Id) -> Option<&Request> {
        self.requests.get(id)
    }

    pub fn points(&self) -> &[MeetingPoint] {
        &self.points
    }

    pub fn offer_count(&self) -> usize {
        self.offers.len()
    }

    /// The offers that fit a request, best first.
    pub fn matches(&self, request: &Request, now: Timestamp) -> Vec<Match> {
        let (pickup, dropoff) = (corner(request.pickup.location), corner(request.dropoff.location));
        let dates = self.dates_of(request);
        let window = AABB::from_corners(
            [pickup[0], pickup[1], hours(request.earliest)],
            [pickup[0], pickup[1], hours(request.latest)],
        );
        let mut found: Vec<Match> = self
            .offer_tree
            .locate_in_envelope_intersecting(window)
            .filter_map(|candidate| self.offers.get(&candidate.data))
            .filter(|entry| contains(&entry.area, dropoff))
            .take(CANDIDATES_MAX)
            .filter(|entry| entry.offer.driver != request.passenger)
            .filter_map(|entry| self.best_day(entry, request, &dates, now))
            .collect();
        found.sort_by(|a, b| (a.added_m, a.pickup_at, &a.offer).cmp(&(b.added_m, b.pickup_at, &b.offer)));
        found.truncate(MATCHES_MAX);
        found
    }

    /// The local dates a request's window covers (one or two).
    fn dates_of(&self, request: &Request) -> Vec<Date> {
        let zone = self.rules().zone;
        let (first, last) = (zone.local_date(request.earliest), zone.local_date(request.latest));
        if first == last { vec![first] } else { vec![first, last] }
    }

    /// The open requests a new offer fits.
    fn requests_fitting(&self, offer: &Id, now: Timestamp) -> Vec<Notification> {
        let Some(entry) = self.offers.get(offer) else { return Vec::new() };
        let area = entry.area.envelope();
        self.request_tree
            .locate_in_envelope(area)
            .filter_map(|point| self.requests.get(&point.data))
            .filter(|request| {
                request.passenger != entry.offer.driver && contains(&entry.area, corner(request.dropoff.location))
            })
            .take(CANDIDATES_MAX)
            .filter_map(|request| {
                let found = self.best_day(entry, request, &self.dates_of(request), now)?;
                Some(Notification::Match { request: request.id.clone(), found: Box::new(found) })
            })
            .collect()
    }

    /// The best day's ride of an offer for a request, among the dates of its window.
    fn best_day(&self, entry: &OfferEntry, request: &Request, dates: &[Date], now: Timestamp) -> Option<Match> {
        let rules = self.rules();
        let offer = &entry.offer;
        let motion = rides::motion(rules);
        let mut best: Option<Match> = None;
        for &date in dates {
            let Some(departure) = departure_on(offer, date, rules) else { continue };
            // The pickup comes after the departure, and no later than the whole
            // route allows: a cheap test before the insertion rule.
            let longest = u64::from(offer.direct_m) + u64::from(offer.detour_limit_m);
            if departure > request.latest
                || departure.plus_ms(matching::drive_ms(longest, rules.speed_kmh)) < request.earliest
            {
                continue;
            }
            let empty = DayView { departure, stops: Vec::new(), seats_taken: 0 };
            let day = entry.days.get(&date).unwrap_or(&empty);
            if day.seats_taken + request.seats > offer.seats {
                continue;
            }
            let itinerary = Itinerary {
                origin: offer.origin.location,
                destination: offer.destination.location,
                departure: day.departure,
                stops: &day.stops,
                direct_m: offer.direct_m,
                detour_limit_m: offer.detour_limit_m,
            };
            let passenger = Passenger {
                pickup: request.pickup.location,
                dropoff: request.dropoff.location,
                earliest: request.earliest,
                latest: request.latest,
            };
            let Some(fit) = matching::best_insertion(&itinerary, &passenger, motion) else { continue };
            if fit.pickup_at <= now {
                continue;
            }
            let candidate = Match {
                offer: offer.id.clone(),
                driver: offer.driver.clone(),
                date,
                departure: day.departure,
                pickup_at: fit.pickup_at,
                added_m: fit.added_m,
                fare: rides::fare_minor(request.distance_m, rules.fare_per_km_e4),
                seats_free: offer.seats - day.seats_taken,
                origin: offer.origin.clone(),
                destination: offer.destination.clone(),
            };
            if best
                .as_ref()
                .is_none_or(|best| (candidate.added_m, candidate.pickup_at) < (best.added_m, best.pickup_at))
            {
                best = Some(candidate);
            }
        }
        best
    }

    /// Upcoming rides passing within `radius_m` of a point between two times, by
    /// departure, with coarse places.
    pub fn near(&self, point: Point, radius_m: u32, from: Timestamp, to: Timestamp) -> Vec<Listing> {
        let rules = self.rules();
        let (lat_per_m, lon_per_m) = degrees_per_metre(point.lat_degrees());
        let radius = f64::from(radius_m);
        let center = corner(point);
        let envelope = AABB::from_corners(
            [center[0] - radius * lon_per_m, center[1] - radius * lat_per_m, hours(from)],
            [center[0] + radius * lon_per_m, center[1] + radius * lat_per_m, hours(to)],
        );
        let mut listings = Vec::new();
        for candidate in self.offer_tree.locate_in_envelope_intersecting(envelope).take(CANDIDATES_MAX) {
            let Some(entry) = self.offers.get(&candidate.data) else { continue };
            let offer = &entry.offer;
            let mut date = rules.zone.local_date(from);
            let last = rules.zone.local_date(to);
            while date <= last {
                if let Some(departure) = departure_on(offer, date, rules).filter(|at| *at >= from && *at <= to) {
                    let taken = entry.days.get(&date).map_or(0, |day| day.seats_taken);
                    if taken < offer.seats {
                        listings.push(listing(offer, date, departure, offer.seats - taken));
                    }
                }
                let Some(next) = date.next_day() else { break };
                date = next;
            }
        }
        listings.sort_by(|a, b| (a.departure, &a.offer).cmp(&(b.departure, &b.offer)));
        listings.truncate(LISTING_MAX);
        listings
    }
}

fn listing(offer: &Offer, date: Date, departure: Timestamp, seats_free: u32) -> Listing {
    let coarse = |place: &Place| match &place.meeting_point {
        Some(_) => place.location,
        None => place.location.coarse(COARSE_STEP_E6),
    };
    Listing {
        offer: offer.id.clone(),
        date,
        departure,
        origin: coarse(&offer.origin),
        origin_point: offer.origin.meeting_point.clone(),
        destination: coarse(&offer.destination),
        destination_point: offer.destination.meeting_point.clone(),
        seats_free,
    }
}

/// When an offer's ride of a local date leaves, if it runs that day.
pub fn departure_on(offer: &Offer, date: Date, rules: &Rules) -> Option<Timestamp> {
    if offer.withdrawn || offer.cancelled_dates.contains(&clock::format_date(date)) {
        return None;
    }
    match &offer.schedule {
        Schedule::Once { departure } => (rules.zone.local_date(*departure) == date).then_some(*departure),
        Schedule::Weekly { weekdays, minute_of_day, until } => {
            let runs = weekdays & (1 << clock::weekday_index(date)) != 0;
            let in_range = date >= offer.created_on && until.is_none_or(|until| date <= until);
            (runs && in_range).then(|| rules.zone.to_instant(date, *minute_of_day))
        }
    }
}

fn day_view(state: &State, occurrence: &rides::Occurrence) -> DayView {
    DayView {
        departure: occurrence.departure,
        stops: rides::stop_views(state.rides(), occurrence),
        seats_taken: rides::seats_taken(state.rides(), occurrence),
    }
}

/// Hours since the epoch: the board's time axis.
fn hours(at: Timestamp) -> f64 {
    at.unix_ms() as f64 / 3_600_000.0
}

/// An offer's reach box with its time span (see [`OfferBox`]).
fn in_time(offer: &Offer, area: &Rectangle<[f64; 2]>, rules: &Rules) -> Rectangle<[f64; 3]> {
    let (lower, upper) = (area.lower(), area.upper());
    let (start, end) = match &offer.schedule {
        Schedule::Once { departure } => {
            let longest = u64::from(offer.direct_m) + u64::from(offer.detour_limit_m);
            let end = departure.plus_ms(matching::drive_ms(longest, rules.speed_kmh));
            // A minute either way, for rounding.
            (hours(*departure) - 1.0 / 60.0, hours(end) + 1.0 / 60.0)
        }
        Schedule::Weekly { .. } => (f64::MIN / 4.0, f64::MAX / 4.0),
    };
    Rectangle::from_corners([lower[0], lower[1], start], [upper[0], upper[1], end])
}

fn corner(point: Point) -> [f64; 2] {
    [point.lon_degrees(), point.lat_degrees()]
}

fn contains(area: &Rectangle<[f64; 2]>, point: [f64; 2]) -> bool {
    area.envelope().contains_point(&point)
}

/// The box of every point within reach of an offer's route (see the module notes).
fn reach(offer: &Offer, rules: &Rules) -> Rectangle<[f64; 2]> {
    let (a, b) = (offer.origin.location, offer.destination.location);
    let factor = f64::from(rules.road_factor_e3) / 1000.0;
    let route = f64::from(offer.direct_m) / factor;
    let detour = f64::from(offer.detour_limit_m) / factor;
    // Half the minor axis, plus a metre for rounding.
    let widen = (detour * (2.0 * route + detour)).sqrt() / 2.0 + 1.0;
    let lat = a.lat_degrees().abs().max(b.lat_degrees().abs());
    let (lat_per_m, lon_per_m) = degrees_per_metre(lat);
    let (lon_min, lon_max) = (a.lon_degrees().min(b.lon_degrees()), a.lon_degrees().max(b.lon_degrees()));
    let (lat_min, lat_max) = (a.lat_degrees().min(b.lat_degrees()), a.lat_degrees().max(b.lat_degrees()));
    Rectangle::from_corners(
        [lon_min - widen * lon_per_m, lat_min - widen * lat_per_m],
        [lon_max + widen * lon_per_m, lat_max + widen * lat_per_m],
    )
}

/// A sanity check of the box: every point that fits lies inside it.
#[cfg(test)]
fn fits_outside_reach(offer: &Offer, rules: &Rules, point: Point) -> bool {
    use crate::core::geo::road_distance_m;
    let detour = road_distance_m(offer.origin.location, point, rules.road_factor_e3)
        + road_distance_m(point, offer.destination.location, rules.road_factor_e3);
    detour <= offer.direct_m + offer.detour_limit_m && !contains(&reach(offer, rules), corner(point))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::geo::road_distance_m;
    use crate::core::policy::Policy;

    fn offer(from: Point, to: Point, rules: &Rules) -> Offer {
        let direct_m = road_distance_m(from, to, rules.road_factor_e3);
        Offer {
            id: Id::parse("offer", "00000000-0000-4000-8000-0000000000aa").unwrap(),
            driver: AccountId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
            origin: Place { location: from, meeting_point: None },
            destination: Place { location: to, meeting_point: None },
            seats: 3,
            direct_m,
            detour_limit_m: 2_000.max(direct_m * 3 / 10),
            schedule: Schedule::Once { departure: Timestamp::from_unix_ms(0) },
            created_on: Date::MIN,
            withdrawn: false,
            cancelled_dates: Default::default(),
        }
    }

    /// No point that fits the detour rule falls outside the offer's box, on a grid of
    /// points around routes in several directions.
    #[test]
    fn the_reach_box_holds_every_reachable_point() {
        let rules = Rules::from_policy(&Policy::default()).unwrap();
        let ayen = Point::from_micro_degrees(45_247_800, 1_327_200);
        for (lat, lon) in
            [(45_158_300, 1_531_900), (45_319_200, 1_323_100), (45_263_900, 1_409_200), (45_240_000, 1_200_000)]
        {
            let offer = offer(ayen, Point::from_micro_degrees(lat, lon), &rules);
            for dlat in (-300..=300).step_by(7) {
                for dlon in (-300..=300).step_by(7) {
                    let point = Point::from_micro_degrees(45_250_000 + dlat * 1_000, 1_400_000 + dlon * 1_000);
                    assert!(!fits_outside_reach(&offer, &rules, point), "{point} fits but is outside the box");
                }
            }
        }
    }
}
