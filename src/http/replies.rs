//! The JSON shapes of successful replies, built by hand from the store's views.
//!
//! Amounts and sequence numbers are decimal strings, as the wire contract says;
//! leaf indexes and sizes are integers.

use serde::Serialize;

use crate::core::board::{Listing, Match};
use crate::core::body::Schedule;
use crate::core::geo::Point;
use crate::core::ids::Id;
use crate::core::leaf::Posting;
use crate::core::merkle::Hash;
use crate::core::money::format_minor;
use crate::core::policy::{Currency, Policy};
use crate::core::protocol::base64_encode;
use crate::core::rides::{Booking, MeetingPoint, Offer, Place, Request, RideObject};
use crate::core::time as clock;
use crate::store::read::{AccountView, LedgerView, PostingsPage};
use crate::store::writer::Receipt;

#[derive(Serialize)]
pub struct ReceiptReply {
    index: u64,
    tx: String,
    accepted_at: String,
    account: String,
    seq: String,
    postings: Vec<PostingReply>,
}

#[derive(Serialize)]
pub struct PostingReply {
    account: String,
    amount: String,
}

pub fn receipt(receipt: &Receipt) -> ReceiptReply {
    ReceiptReply {
        index: receipt.index,
        tx: base64_encode(&receipt.tx),
        accepted_at: receipt.accepted_at.to_string(),
        account: receipt.account.to_string(),
        seq: receipt.seq.to_string(),
        postings: receipt.postings.iter().map(posting).collect(),
    }
}

fn posting(posting: &Posting) -> PostingReply {
    PostingReply { account: posting.account.to_string(), amount: format_minor(posting.amount_minor) }
}

#[derive(Serialize)]
pub struct LedgerReply<'a> {
    ledger: &'a str,
    currency: &'a Currency,
    ledger_key: &'a str,
    operator_key: &'a str,
    policy: &'a Policy,
    size: u64,
}

pub fn ledger(view: &LedgerView) -> LedgerReply<'_> {
    LedgerReply {
        ledger: &view.genesis.ledger,
        currency: &view.genesis.currency,
        ledger_key: &view.genesis.ledger_key,
        operator_key: &view.genesis.operator_key,
        policy: &view.policy,
        size: view.size,
    }
}

#[derive(Serialize)]
pub struct AccountReply<'a> {
    account: &'a str,
    name: Option<&'a str>,
    status: &'a str,
    balance: String,
    available: String,
    held: String,
    floor: Option<String>,
    next_seq: String,
    custodial: bool,
}

pub fn account(view: &AccountView) -> AccountReply<'_> {
    AccountReply {
        account: &view.account,
        name: view.name.as_deref(),
        status: &view.status,
        balance: format_minor(view.balance),
        available: format_minor(view.balance - view.held),
        held: format_minor(view.held),
        floor: view.floor.map(format_minor),
        next_seq: view.next_seq.to_string(),
        custodial: view.custodial,
    }
}

#[derive(Serialize)]
pub struct AccountsReply<'a> {
    accounts: Vec<AccountReply<'a>>,
}

pub fn accounts(views: &[AccountView]) -> AccountsReply<'_> {
    AccountsReply { accounts: views.iter().map(account).collect() }
}

#[derive(Serialize)]
pub struct BookingsReply {
    bookings: Vec<BookingReply>,
}

pub fn bookings(objects: &[RideObject]) -> BookingsReply {
    let bookings = objects
        .iter()
        .filter_map(|object| match object {
            RideObject::Booking(b) => Some(booking(b)),
            _ => None,
        })
        .collect();
    BookingsReply { bookings }
}

#[derive(Serialize)]
pub struct PostingsReply<'a> {
    account: &'a str,
    postings: Vec<HistoryLine<'a>>,
    next_before: Option<u64>,
}

#[derive(Serialize)]
pub struct HistoryLine<'a> {
    index: u64,
    accepted_at: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    amount: String,
    balance_after: String,
    memo: Option<&'a str>,
    counterparties: &'a [String],
}

pub fn postings(page: &PostingsPage) -> PostingsReply<'_> {
    let postings = page
        .postings
        .iter()
        .map(|line| HistoryLine {
            index: line.index,
            accepted_at: &line.accepted_at,
            kind: &line.kind,
            amount: format_minor(line.amount),
            balance_after: format_minor(line.balance_after),
            memo: line.memo.as_deref(),
            counterparties: &line.counterparties,
        })
        .collect();
    PostingsReply { account: &page.account, postings, next_before: page.next_before }
}

#[derive(Serialize)]
pub struct HealthReply {
    status: &'static str,
    size: u64,
}

pub fn health(view: &LedgerView) -> HealthReply {
    HealthReply { status: "ok", size: view.size }
}

#[derive(Serialize)]
pub struct InclusionReply {
    index: u64,
    size: u64,
    hashes: Vec<String>,
}

pub fn inclusion(index: u64, size: u64, hashes: &[Hash]) -> InclusionReply {
    InclusionReply { index, size, hashes: hashes.iter().map(|hash| base64_encode(hash)).collect() }
}

#[derive(Serialize)]
pub struct ConsistencyReply {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

pub fn consistency(from: u64, to: u64, hashes: &[Hash]) -> ConsistencyReply {
    ConsistencyReply { from, to, hashes: hashes.iter().map(|hash| base64_encode(hash)).collect() }
}

// ---------------------------------------------------------------------------------
// Rides.

#[derive(Serialize)]
pub struct PlaceReply {
    lat: String,
    lon: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    point: Option<String>,
}

fn point(location: Point, meeting_point: Option<&String>) -> PlaceReply {
    PlaceReply { lat: location.lat_text(), lon: location.lon_text(), point: meeting_point.cloned() }
}

fn place(place: &Place) -> PlaceReply {
    point(place.location, place.meeting_point.as_ref())
}

fn km(metres: u32) -> String {
    format!("{:.3}", f64::from(metres) / 1000.0)
}

#[derive(Serialize)]
pub struct MeetingPointReply {
    point: String,
    name: String,
    lat: String,
    lon: String,
}

pub fn meeting_points(points: &[MeetingPoint]) -> Vec<MeetingPointReply> {
    points
        .iter()
        .map(|p| MeetingPointReply {
            point: p.id.clone(),
            name: p.name.as_str().to_owned(),
            lat: p.location.lat_text(),
            lon: p.location.lon_text(),
        })
        .collect()
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum ScheduleReply {
    Once { departure: String },
    Weekly { weekdays: String, time: String, until: Option<String> },
}

fn schedule(schedule: &Schedule) -> ScheduleReply {
    match schedule {
        Schedule::Once { departure } => ScheduleReply::Once { departure: departure.to_string() },
        Schedule::Weekly { weekdays, minute_of_day, until } => {
            const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            let days: Vec<&str> = (0..7).filter(|day| weekdays & (1 << day) != 0).map(|day| NAMES[day]).collect();
            ScheduleReply::Weekly {
                weekdays: days.join(","),
                time: format!("{:02}:{:02}", minute_of_day / 60, minute_of_day % 60),
                until: until.map(clock::format_date),
            }
        }
    }
}

#[derive(Serialize)]
pub struct OfferReply {
    offer: String,
    driver: String,
    origin: PlaceReply,
    destination: PlaceReply,
    seats: u32,
    route_km: String,
    detour_km: String,
    schedule: ScheduleReply,
    withdrawn: bool,
    cancelled_dates: Vec<String>,
}

pub fn offer(offer: &Offer) -> OfferReply {
    OfferReply {
        offer: offer.id.to_string(),
        driver: offer.driver.to_string(),
        origin: place(&offer.origin),
        destination: place(&offer.destination),
        seats: offer.seats,
        route_km: km(offer.direct_m),
        detour_km: km(offer.detour_limit_m),
        schedule: schedule(&offer.schedule),
        withdrawn: offer.withdrawn,
        cancelled_dates: offer.cancelled_dates.iter().cloned().collect(),
    }
}

#[derive(Serialize)]
pub struct RequestReply {
    request: String,
    passenger: String,
    pickup: PlaceReply,
    dropoff: PlaceReply,
    earliest: String,
    latest: String,
    seats: u32,
    distance_km: String,
    withdrawn: bool,
}

pub fn request(request: &Request) -> RequestReply {
    RequestReply {
        request: request.id.to_string(),
        passenger: request.passenger.to_string(),
        pickup: place(&request.pickup),
        dropoff: place(&request.dropoff),
        earliest: request.earliest.to_string(),
        latest: request.latest.to_string(),
        seats: request.seats,
        distance_km: km(request.distance_m),
        withdrawn: request.withdrawn,
    }
}

#[derive(Serialize)]
pub struct ShareReply {
    account: String,
    amount: String,
    sponsor: bool,
}

#[derive(Serialize)]
pub struct BookingReply {
    booking: String,
    offer: String,
    date: String,
    request: String,
    passenger: String,
    driver: String,
    seats: u32,
    distance_km: String,
    fare: String,
    shares: Vec<ShareReply>,
    departure: String,
    pickup_at: String,
    booked_at: String,
    completed_at: Option<String>,
    status: &'static str,
}

pub fn booking(booking: &Booking) -> BookingReply {
    BookingReply {
        booking: booking.id.to_string(),
        offer: booking.offer.to_string(),
        date: clock::format_date(booking.date),
        request: booking.request.to_string(),
        passenger: booking.passenger.to_string(),
        driver: booking.driver.to_string(),
        seats: booking.seats,
        distance_km: km(booking.distance_m),
        fare: format_minor(booking.fare),
        shares: booking
            .shares
            .iter()
            .map(|share| ShareReply {
                account: share.account.to_string(),
                amount: format_minor(share.amount),
                sponsor: share.sponsor,
            })
            .collect(),
        departure: booking.departure.to_string(),
        pickup_at: booking.pickup_at.to_string(),
        booked_at: booking.booked_at.to_string(),
        completed_at: booking.completed_at.map(|at| at.to_string()),
        status: booking.status.as_str(),
    }
}

#[derive(Serialize)]
pub struct RidesReply {
    account: String,
    offers: Vec<OfferReply>,
    requests: Vec<RequestReply>,
    bookings: Vec<BookingReply>,
}

pub fn rides(account: &str, objects: &[RideObject]) -> RidesReply {
    let mut reply =
        RidesReply { account: account.to_owned(), offers: Vec::new(), requests: Vec::new(), bookings: Vec::new() };
    for object in objects {
        match object {
            RideObject::Offer(o) => reply.offers.push(offer(o)),
            RideObject::Request(r) => reply.requests.push(request(r)),
            RideObject::Booking(b) => reply.bookings.push(booking(b)),
            RideObject::Point(_) | RideObject::Occurrence(_) => {}
        }
    }
    reply
}

#[derive(Serialize)]
pub struct MatchReply {
    offer: String,
    driver: String,
    date: String,
    departure: String,
    pickup_at: String,
    added_km: String,
    fare: String,
    seats_free: u32,
    origin: PlaceReply,
    destination: PlaceReply,
}

pub fn found(found: &Match) -> MatchReply {
    MatchReply {
        offer: found.offer.to_string(),
        driver: found.driver.to_string(),
        date: clock::format_date(found.date),
        departure: found.departure.to_string(),
        pickup_at: found.pickup_at.to_string(),
        added_km: km(found.added_m),
        fare: format_minor(found.fare),
        seats_free: found.seats_free,
        origin: place(&found.origin),
        destination: place(&found.destination),
    }
}

#[derive(Serialize)]
pub struct MatchesReply {
    request: String,
    matches: Vec<MatchReply>,
}

pub fn matches(request: &str, matches: &[Match]) -> MatchesReply {
    MatchesReply { request: request.to_owned(), matches: matches.iter().map(found).collect() }
}

#[derive(Serialize)]
pub struct ListingReply {
    offer: String,
    date: String,
    departure: String,
    origin: PlaceReply,
    destination: PlaceReply,
    seats_free: u32,
}

#[derive(Serialize)]
pub struct ListingsReply {
    offers: Vec<ListingReply>,
}

pub fn listings(listings: &[Listing]) -> ListingsReply {
    let offers = listings
        .iter()
        .map(|listing| ListingReply {
            offer: listing.offer.to_string(),
            date: clock::format_date(listing.date),
            departure: listing.departure.to_string(),
            origin: point(listing.origin, listing.origin_point.as_ref()),
            destination: point(listing.destination, listing.destination_point.as_ref()),
            seats_free: listing.seats_free,
        })
        .collect();
    ListingsReply { offers }
}

#[derive(Serialize)]
pub struct BookingChangeReply<'a> {
    booking: String,
    status: &'a str,
}

pub fn booking_change<'a>(booking: &Id, status: &'a str) -> BookingChangeReply<'a> {
    BookingChangeReply { booking: booking.to_string(), status }
}
