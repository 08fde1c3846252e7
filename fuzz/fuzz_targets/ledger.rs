//! The state machine under hostile commands: sequences of signed commands of every
//! type (fields mostly well formed, sometimes anything), from the desk and three
//! members, as time goes by, through `open_envelope` and `ledger::apply`, with the due
//! server events in between, as the writer runs them. No panic; a refusal changes
//! nothing; the invariants hold after every leaf; every due event applies; every leaf
//! encodes (its postings balance) and decodes back; and replaying the accepted leaves
//! from the genesis, as `covoit audit` does, gives the same state.
#![no_main]

use covoit::core::ids::AccountId;
use covoit::core::leaf::{self, Content, OwnedContent};
use covoit::core::ledger::{self, State};
use covoit::core::policy::{Currency, Event, Genesis, Policy};
use covoit::core::protocol::{self, BodyWire, CommandWire, OfferWire, PlaceWire, RequestWire, VerifiedCommand};
use covoit::core::time::{Timestamp, format_date};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

const LEDGER: &str = "covoit/fuzz";
const START: &str = "2026-11-25T08:00:00Z";
const MEMBERS: [&str; 3] = [
    "0f8e2a5c-3b1d-4c6e-9a7f-2d4b6c8e0a1b",
    "1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d",
    "2b3c4d5e-6f7a-4b1c-9d2e-3f4a5b6c7d8e",
];
const RIDES: [&str; 4] = [
    "6f1c2a3e-0000-4000-8000-000000000001",
    "6f1c2a3e-0000-4000-8000-000000000002",
    "6f1c2a3e-0000-4000-8000-000000000003",
    "6f1c2a3e-0000-4000-8000-000000000004",
];
const POINTS: [&str; 2] = ["mairie", "eglise"];

fn signing_keys() -> [SigningKey; 4] {
    let [operator, alice, bob] = covoit_fuzz::keys();
    [operator, alice, bob, SigningKey::from_bytes(&[0xc3; 32])]
}

/// A field: usually one of a few good values, once in sixteen any string.
#[derive(Debug)]
enum Field<T> {
    Good(T),
    Raw(String),
}

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Field<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(if u.ratio(1, 16)? { Field::Raw(u.arbitrary()?) } else { Field::Good(u.arbitrary()?) })
    }
}

/// True once in eight.
#[derive(Debug)]
struct Rare(bool);

impl<'a> Arbitrary<'a> for Rare {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Rare(u.ratio(1, 8)?))
    }
}

impl<T: Render> Field<T> {
    fn render(&self, now: Timestamp) -> String {
        match self {
            Field::Good(value) => value.render(now),
            Field::Raw(text) => text.clone(),
        }
    }
}

trait Render {
    fn render(&self, now: Timestamp) -> String;
}

/// An account: the operator, the reserve, a member, or an unknown UUID.
#[derive(Debug, Arbitrary, Clone, Copy)]
struct Who(u8);
impl Render for Who {
    fn render(&self, _: Timestamp) -> String {
        match self.0 % 6 {
            0 => "operator".into(),
            1 => "reserve".into(),
            2..=4 => MEMBERS[usize::from(self.0 % 6 - 2)].into(),
            _ => "7e57e57e-0000-4000-8000-00000000dead".into(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Ride(u8);
impl Render for Ride {
    fn render(&self, _: Timestamp) -> String {
        RIDES[usize::from(self.0) % RIDES.len()].into()
    }
}

#[derive(Debug, Arbitrary)]
struct Point(bool);
impl Render for Point {
    fn render(&self, _: Timestamp) -> String {
        POINTS[usize::from(self.0)].into()
    }
}

/// An amount in cents, or in whole units.
#[derive(Debug, Arbitrary)]
enum Money {
    Cents(u16),
    Units(u32),
}
impl Render for Money {
    fn render(&self, _: Timestamp) -> String {
        match self {
            Money::Cents(cents) => format!("{}.{:02}", cents / 100, cents % 100),
            Money::Units(units) => units.to_string(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Floor(u16);
impl Render for Floor {
    fn render(&self, _: Timestamp) -> String {
        if self.0 == 0 { "0".into() } else { format!("-{}.{:02}", self.0 / 100, self.0 % 100) }
    }
}

#[derive(Debug, Arbitrary)]
struct Name(u8);
impl Render for Name {
    fn render(&self, _: Timestamp) -> String {
        ["Alice Martin", "Bob", "Élise Dupont-Ayen", "x", "Mairie d'Ayen", "☕ café"][usize::from(self.0) % 6].into()
    }
}

/// A time some quarters of an hour from now (up to 32 hours either way).
#[derive(Debug, Arbitrary)]
struct Later(i8);
impl Render for Later {
    fn render(&self, now: Timestamp) -> String {
        now.plus_ms(i64::from(self.0) * 15 * 60_000).to_string()
    }
}

/// A date some days from today.
#[derive(Debug, Arbitrary)]
struct Day(i8);
impl Render for Day {
    fn render(&self, now: Timestamp) -> String {
        let date = time::OffsetDateTime::from_unix_timestamp(now.unix_ms() / 1000).unwrap().date();
        format_date(date + time::Duration::days(i64::from(self.0)))
    }
}

#[derive(Debug, Arbitrary)]
struct Weekdays(u8);
impl Render for Weekdays {
    fn render(&self, _: Timestamp) -> String {
        let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let days: Vec<&str> = (0..7).filter(|bit| self.0 & (1 << bit) != 0).map(|bit| names[bit]).collect();
        if days.is_empty() { "mon".into() } else { days.join(",") }
    }
}

#[derive(Debug, Arbitrary)]
struct Clock(u8, u8);
impl Render for Clock {
    fn render(&self, _: Timestamp) -> String {
        format!("{:02}:{:02}", self.0 % 24, (self.1 % 4) * 15)
    }
}

#[derive(Debug, Arbitrary)]
struct Km(u8);
impl Render for Km {
    fn render(&self, _: Timestamp) -> String {
        if self.0.is_multiple_of(3) { format!("{}", self.0 / 10) } else { format!("{}.{}", self.0 / 10, self.0 % 10) }
    }
}

/// Around Ayen: steps of 0.002° of latitude (~220 m) and 0.003° of longitude (~240 m);
/// once in eight a meeting point, once in sixteen anything.
#[derive(Debug)]
enum Place {
    Near(i8, i8),
    Point(Point),
    Raw(String, String),
}

impl<'a> Arbitrary<'a> for Place {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=15u8)? {
            0 => Place::Raw(u.arbitrary()?, u.arbitrary()?),
            1 | 2 => Place::Point(u.arbitrary()?),
            _ => Place::Near(u.arbitrary()?, u.arbitrary()?),
        })
    }
}
impl Place {
    fn wire(&self) -> PlaceWire {
        match self {
            Place::Near(dlat, dlon) => {
                let lat = 45_250 + i32::from(*dlat) * 2;
                let lon = 1_330 + i32::from(*dlon) * 3;
                PlaceWire::at(
                    &format!("{}.{:03}", lat / 1000, lat % 1000),
                    &format!("{}.{:03}", lon / 1000, lon % 1000),
                )
            }
            Place::Point(point) => PlaceWire::meeting_point(&point.render(Timestamp::from_unix_ms(0))),
            Place::Raw(lat, lon) => PlaceWire::at(lat, lon),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Cmd {
    Register {
        name: Field<Name>,
    },
    Custodial {
        target: Field<Who>,
        name: Field<Name>,
    },
    Approve {
        target: Field<Who>,
    },
    CreditSet {
        target: Field<Who>,
        floor: Field<Floor>,
    },
    Issue {
        to: Field<Who>,
        amount: Field<Money>,
        memo: Option<Field<Name>>,
    },
    Transfer {
        to: Field<Who>,
        amount: Field<Money>,
        memo: Option<Field<Name>>,
    },
    Redeem {
        amount: Field<Money>,
        memo: Option<Field<Name>>,
    },
    PolicySet(PolicyInput),
    PlaceSet {
        point: Field<Point>,
        name: Field<Name>,
        at: Place,
    },
    PlaceRemove {
        point: Field<Point>,
    },
    OfferOnce {
        offer: Field<Ride>,
        origin: Place,
        destination: Place,
        seats: u8,
        detour_km: Option<Field<Km>>,
        departure: Field<Later>,
    },
    OfferWeekly {
        offer: Field<Ride>,
        origin: Place,
        destination: Place,
        seats: u8,
        detour_km: Option<Field<Km>>,
        weekdays: Field<Weekdays>,
        time: Field<Clock>,
        until: Option<Field<Day>>,
    },
    Request {
        request: Field<Ride>,
        pickup: Place,
        dropoff: Place,
        earliest: Field<Later>,
        latest: Field<Later>,
        seats: u8,
    },
    Book {
        booking: Field<Ride>,
        offer: Field<Ride>,
        request: Field<Ride>,
        date: Option<Field<Day>>,
    },
    Accept {
        booking: Field<Ride>,
    },
    Decline {
        booking: Field<Ride>,
    },
    Cancel {
        booking: Option<Field<Ride>>,
        offer: Option<Field<Ride>>,
        request: Option<Field<Ride>>,
        date: Option<Field<Day>>,
        memo: Option<Field<Name>>,
    },
    Complete {
        booking: Field<Ride>,
    },
    Confirm {
        booking: Field<Ride>,
    },
    Dispute {
        booking: Field<Ride>,
        memo: Option<Field<Name>>,
    },
    Resolve {
        booking: Field<Ride>,
        settle: bool,
        memo: Option<Field<Name>>,
    },
}

#[derive(Debug, Arbitrary)]
struct Sponsor(Who, Field<Money>, Field<Money>, Field<Money>);

#[derive(Debug, Arbitrary)]
struct PolicyInput {
    approval_required: bool,
    auto_settle_hours: u8,
    average_speed_kmh: u8,
    detour_km_min: Field<Km>,
    detour_share_max: u8,
    fare_per_km: Field<Money>,
    /// With payer "sponsor": the sponsor, and its caps per day, month and trip.
    sponsor: Option<Sponsor>,
    road_factor: u8,
    trip_gap_minutes_min: u8,
    trip_km_max: Field<Km>,
    trip_km_min: Field<Km>,
    trips_per_day_max: u8,
    summer_time: Option<bool>,
    utc_offset_minutes: Option<i16>,
}

impl PolicyInput {
    fn policy(&self, now: Timestamp) -> Policy {
        let (payer, sponsor, day, month, trip) = match &self.sponsor {
            Some(Sponsor(who, day, month, trip)) => (
                "sponsor".to_owned(),
                Some(who.render(now)),
                Some(day.render(now)),
                Some(month.render(now)),
                Some(trip.render(now)),
            ),
            None => ("passenger".to_owned(), None, None, None, None),
        };
        Policy {
            approval_required: self.approval_required,
            auto_settle_hours: u32::from(self.auto_settle_hours),
            average_speed_kmh: u32::from(self.average_speed_kmh),
            detour_km_min: self.detour_km_min.render(now),
            detour_share_max: format!("0.{:02}", self.detour_share_max % 100),
            fare_per_km: self.fare_per_km.render(now),
            payer,
            road_factor: format!("1.{}", self.road_factor % 10),
            sponsor,
            sponsor_cap_day: day,
            sponsor_cap_month: month,
            sponsor_cap_trip: trip,
            summer_time: self.summer_time.map(|eu| if eu { "eu".into() } else { "none".into() }),
            trip_gap_minutes_min: u32::from(self.trip_gap_minutes_min),
            trip_km_max: self.trip_km_max.render(now),
            trip_km_min: self.trip_km_min.render(now),
            trips_per_day_max: u32::from(self.trips_per_day_max),
            utc_offset_minutes: self.utc_offset_minutes.map(i32::from),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Step {
    /// 0 the desk, 1 to 3 a member.
    signer: u8,
    /// Before this command arrives: up to 200 minutes, or up to 55 hours.
    wait: u8,
    /// The desk signs for a member's (custodial) account.
    by_desk: Rare,
    /// A seq one off the right one: ahead or behind.
    seq_wrong: Rare,
    seq_ahead: bool,
    /// The command expired a minute ago.
    expired: Rare,
    command: Cmd,
}

impl Step {
    fn wait_ms(&self) -> i64 {
        let minutes = if self.wait <= 200 { i64::from(self.wait) } else { i64::from(self.wait - 200) * 60 };
        minutes * 60_000
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    approval_required: bool,
    /// Start from nothing (0), or from a prelude (1 to 4; see `World::prelude`).
    prelude: u8,
    steps: Vec<Step>,
}

/// A leaf as the log keeps it: an accepted command, or a server event.
#[derive(Clone)]
enum Entry {
    Command(Box<VerifiedCommand>),
    Event(Event),
}

impl Step {
    fn command(&self, now: Timestamp) -> CommandWire {
        let r = |field: &Field<_>| -> String { field.render(now) };
        let o = |field: &Option<Field<Name>>| field.as_ref().map(|f| f.render(now));
        let ride = |field: &Option<Field<Ride>>| field.as_ref().map(|f| f.render(now));
        let day = |field: &Option<Field<Day>>| field.as_ref().map(|f| f.render(now));
        let km = |field: &Option<Field<Km>>| field.as_ref().map(|f| f.render(now));
        match &self.command {
            Cmd::Register { name } => CommandWire::Register { name: name.render(now) },
            Cmd::Custodial { target, name } => {
                CommandWire::Custodial { target: target.render(now), name: name.render(now) }
            }
            Cmd::Approve { target } => CommandWire::Approve { target: target.render(now) },
            Cmd::CreditSet { target, floor } => {
                CommandWire::CreditSet { target: target.render(now), floor: floor.render(now) }
            }
            Cmd::Issue { to, amount, memo } => {
                CommandWire::Issue { to: to.render(now), amount: amount.render(now), memo: o(memo) }
            }
            Cmd::Transfer { to, amount, memo } => {
                CommandWire::Transfer { to: to.render(now), amount: amount.render(now), memo: o(memo) }
            }
            Cmd::Redeem { amount, memo } => CommandWire::Redeem { amount: amount.render(now), memo: o(memo) },
            Cmd::PolicySet(input) => CommandWire::PolicySet { policy: Box::new(input.policy(now)) },
            Cmd::PlaceSet { point, name, at } => {
                let place = at.wire();
                CommandWire::PlaceSet {
                    point: point.render(now),
                    name: name.render(now),
                    lat: place.lat.unwrap_or_default(),
                    lon: place.lon.unwrap_or_default(),
                }
            }
            Cmd::PlaceRemove { point } => CommandWire::PlaceRemove { point: point.render(now) },
            Cmd::OfferOnce { offer, origin, destination, seats, detour_km, departure } => {
                CommandWire::Offer(Box::new(OfferWire {
                    offer: offer.render(now),
                    origin: origin.wire(),
                    destination: destination.wire(),
                    seats: u32::from(*seats % 10),
                    detour_km: km(detour_km),
                    departure: Some(departure.render(now)),
                    weekdays: None,
                    time: None,
                    until: None,
                }))
            }
            Cmd::OfferWeekly { offer, origin, destination, seats, detour_km, weekdays, time, until } => {
                CommandWire::Offer(Box::new(OfferWire {
                    offer: offer.render(now),
                    origin: origin.wire(),
                    destination: destination.wire(),
                    seats: u32::from(*seats % 10),
                    detour_km: km(detour_km),
                    departure: None,
                    weekdays: Some(weekdays.render(now)),
                    time: Some(time.render(now)),
                    until: day(until),
                }))
            }
            Cmd::Request { request, pickup, dropoff, earliest, latest, seats } => {
                CommandWire::Request(Box::new(RequestWire {
                    request: request.render(now),
                    pickup: pickup.wire(),
                    dropoff: dropoff.wire(),
                    earliest: earliest.render(now),
                    latest: latest.render(now),
                    seats: u32::from(*seats % 10),
                }))
            }
            Cmd::Book { booking, offer, request, date } => CommandWire::Book {
                booking: booking.render(now),
                offer: offer.render(now),
                request: request.render(now),
                date: day(date),
            },
            Cmd::Accept { booking } => CommandWire::Accept { booking: r(booking) },
            Cmd::Decline { booking } => CommandWire::Decline { booking: r(booking) },
            Cmd::Cancel { booking, offer, request, date, memo } => CommandWire::Cancel {
                booking: ride(booking),
                offer: ride(offer),
                request: ride(request),
                date: day(date),
                memo: o(memo),
            },
            Cmd::Complete { booking } => CommandWire::Complete { booking: r(booking) },
            Cmd::Confirm { booking } => CommandWire::Confirm { booking: r(booking) },
            Cmd::Dispute { booking, memo } => CommandWire::Dispute { booking: r(booking), memo: o(memo) },
            Cmd::Resolve { booking, settle, memo } => CommandWire::Resolve {
                booking: r(booking),
                outcome: if *settle { "settle".into() } else { "release".into() },
                memo: o(memo),
            },
        }
    }
}

fn genesis(approval_required: bool) -> Genesis {
    let [operator, ..] = signing_keys();
    Genesis {
        currency: Currency::default(),
        ledger: LEDGER.into(),
        ledger_key: protocol::base64_encode(SigningKey::from_bytes(&[0x1e; 32]).verifying_key().as_bytes()),
        operator_key: protocol::base64_encode(operator.verifying_key().as_bytes()),
        policy: Policy { approval_required, ..Policy::default() },
    }
}

#[derive(Clone)]
struct World {
    state: State,
    now: Timestamp,
    log: Vec<(Entry, Timestamp)>,
}

impl World {
    /// What the writer does before each batch: append the events that are due.
    fn events(&mut self) {
        for event in ledger::due_events(&self.state, self.now) {
            let outcome = ledger::apply_event(&mut self.state, &event, self.now)
                .unwrap_or_else(|refusal| panic!("a due event was refused: {event:?}: {refusal}"));
            self.state.assert_invariants();
            if verbose() {
                eprintln!("accepted event {} with {} postings", event.kind(), outcome.postings.len());
            }
            self.record(Entry::Event(event), &outcome.postings);
        }
    }

    /// Signs and submits a body, as a client and the writer do; says whether it was accepted.
    fn submit(&mut self, key: &SigningKey, body: &BodyWire) -> bool {
        let envelope = protocol::sign_body(key, body);
        let json = covoit_fuzz::envelope_bytes(&envelope);
        let Ok(command) = protocol::open_envelope(&json) else { return false };
        let before = self.state.clone();
        match ledger::apply(&mut self.state, &command, self.now) {
            Ok(outcome) => {
                self.state.assert_invariants();
                if verbose() {
                    eprintln!("accepted {} with {} postings", body.command.kind(), outcome.postings.len());
                }
                self.record(Entry::Command(Box::new(command)), &outcome.postings);
                true
            }
            Err(refusal) => {
                let _ = refusal.to_string();
                if verbose() {
                    eprintln!("refused {}: {}", body.command.kind(), refusal.code());
                }
                assert!(self.state == before, "a refusal ({}) changed the state", refusal.code());
                false
            }
        }
    }

    /// Appends a leaf as the writer does: its bytes must encode, and decode to the same.
    fn record(&mut self, entry: Entry, postings: &[leaf::Posting]) {
        let (index, at) = (self.state.size() - 1, self.now);
        let bytes = match &entry {
            Entry::Command(command) => leaf::encode(index, at, Content::Command(command.envelope()), postings),
            Entry::Event(event) => leaf::encode(index, at, Content::Event(event), postings),
        };
        let decoded = leaf::decode(&bytes).expect("a leaf the writer encodes decodes");
        assert_eq!((decoded.index, decoded.accepted_at, &decoded.postings[..]), (index, at, postings));
        match (&decoded.content, &entry) {
            (OwnedContent::Event(decoded), Entry::Event(event)) => assert_eq!(**decoded, *event),
            (OwnedContent::Command(decoded), Entry::Command(command)) => assert_eq!(decoded, command.envelope()),
            _ => panic!("the leaf holds another kind of content"),
        }
        self.log.push((entry, at));
    }

    fn next_seq(&self, account: &str) -> u64 {
        self.state.account(&AccountId::parse(account).unwrap()).map_or(0, |account| account.next_seq.value())
    }

    fn body(&self, account: &str, seq: u64, command: CommandWire) -> BodyWire {
        BodyWire {
            ledger: LEDGER.into(),
            account: account.into(),
            seq: seq.to_string(),
            not_after: self.now.plus_ms(600_000).to_string(),
            by: None,
            command,
        }
    }

    /// A start further into the ledger's life, so that the fuzzer's commands reach the
    /// rides at once: from level 1, three active members with money and a meeting
    /// point; from 2, a daily offer by the second member and a request by the first
    /// that it matches, for tomorrow; from 3, a booking of it, accepted; at 4, the ride
    /// done (the next morning), waiting for the passenger's word.
    fn prelude(&mut self, level: u8) {
        let keys = fixtures().0.clone();
        let desk = |world: &mut World, command| {
            let body = world.body("operator", world.next_seq("operator"), command);
            world.submit(&keys[0], &body)
        };
        let member = |world: &mut World, member: usize, command| {
            let body = world.body(MEMBERS[member], world.next_seq(MEMBERS[member]), command);
            assert!(world.submit(&keys[member + 1], &body), "the prelude's ride commands are accepted");
        };
        for (member, id) in MEMBERS.iter().enumerate() {
            let register = self.body(id, 0, CommandWire::Register { name: format!("Member {member}") });
            assert!(self.submit(&keys[member + 1], &register));
            desk(self, CommandWire::Approve { target: (*id).into() }); // refused when registration is open
            assert!(desk(self, CommandWire::Issue { to: (*id).into(), amount: "100.00".into(), memo: None }));
        }
        let (lat, lon) = ("45.252".into(), "1.331".into());
        assert!(desk(self, CommandWire::PlaceSet { point: POINTS[0].into(), name: "Mairie".into(), lat, lon }));
        if level < 2 {
            return;
        }
        let offer = OfferWire {
            offer: RIDES[0].into(),
            origin: PlaceWire::at("45.250", "1.330"),
            destination: PlaceWire::at("45.264", "1.405"),
            seats: 3,
            detour_km: None,
            departure: None,
            weekdays: Some("mon,tue,wed,thu,fri,sat,sun".into()),
            time: Some("07:30".into()),
            until: None,
        };
        member(self, 1, CommandWire::Offer(Box::new(offer)));
        let request = RequestWire {
            request: RIDES[1].into(),
            pickup: PlaceWire::at("45.251", "1.332"),
            dropoff: PlaceWire::at("45.263", "1.404"),
            earliest: "2026-11-26T06:00:00Z".into(),
            latest: "2026-11-26T07:30:00Z".into(),
            seats: 1,
        };
        member(self, 0, CommandWire::Request(Box::new(request)));
        if level < 3 {
            return;
        }
        let book = CommandWire::Book {
            booking: RIDES[2].into(),
            offer: RIDES[0].into(),
            request: RIDES[1].into(),
            date: Some("2026-11-26".into()),
        };
        member(self, 0, book);
        member(self, 1, CommandWire::Accept { booking: RIDES[2].into() });
        if level < 4 {
            return;
        }
        self.now = Timestamp::parse("2026-11-26T07:15:00Z").unwrap();
        self.events();
        member(self, 1, CommandWire::Complete { booking: RIDES[2].into() });
    }
}

/// With COVOIT_FUZZ_VERBOSE set, the target says what it accepted and refused: to see
/// how deep a corpus goes (`cargo fuzz run ledger corpus/ledger -- -runs=0`).
fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("COVOIT_FUZZ_VERBOSE").is_some())
}

/// The keys and the genesis, made once.
fn fixtures() -> &'static ([SigningKey; 4], Genesis, Genesis) {
    static FIXTURES: std::sync::OnceLock<([SigningKey; 4], Genesis, Genesis)> = std::sync::OnceLock::new();
    FIXTURES.get_or_init(|| (signing_keys(), genesis(true), genesis(false)))
}

/// The world after each level of prelude (1 to 4), made once for each genesis.
fn prelude_world(approval_required: bool, level: u8) -> &'static World {
    static WORLDS: std::sync::OnceLock<Vec<World>> = std::sync::OnceLock::new();
    let worlds = WORLDS.get_or_init(|| {
        let (_, approved, open) = fixtures();
        let start = Timestamp::parse(START).unwrap();
        let mut worlds = Vec::new();
        for genesis in [approved, open] {
            for level in 1..=4 {
                let state = State::from_genesis(genesis, start).unwrap();
                let mut world = World { state, now: start, log: Vec::new() };
                world.prelude(level);
                worlds.push(world);
            }
        }
        worlds
    });
    &worlds[usize::from(!approval_required) * 4 + usize::from(level - 1)]
}

fuzz_target!(|input: Input| {
    let (keys, approved, open) = fixtures();
    let genesis = if input.approval_required { approved } else { open };
    let start = Timestamp::parse(START).unwrap();
    let level = input.prelude % 5;
    let mut world = if level > 0 {
        prelude_world(input.approval_required, level).clone()
    } else {
        World { state: State::from_genesis(genesis, start).expect("the genesis"), now: start, log: Vec::new() }
    };
    for step in input.steps.iter().take(64) {
        world.now = world.now.plus_ms(step.wait_ms());
        world.events();
        let signer = usize::from(step.signer % 4);
        let by_desk = step.by_desk.0;
        let account = if signer == 0 && !by_desk { "operator" } else { MEMBERS[signer.max(1) - 1] };
        let key = if by_desk { &keys[0] } else { &keys[signer] };
        let next = world.next_seq(account);
        let seq = match (step.seq_wrong.0, step.seq_ahead) {
            (false, _) => next,
            (true, true) => next + 1,
            (true, false) => next.saturating_sub(1),
        };
        let mut body = world.body(account, seq, step.command(world.now));
        if step.expired.0 {
            body.not_after = world.now.plus_ms(-60_000).to_string();
        }
        body.by = by_desk.then(|| "operator".to_owned());
        world.submit(key, &body);
    }
    // The auditor's replay, from the leaves alone.
    let mut replayed = State::from_genesis(genesis, start).unwrap();
    for (entry, at) in &world.log {
        match entry {
            Entry::Command(command) => {
                ledger::apply(&mut replayed, command, *at).expect("the replay accepts what was accepted");
            }
            Entry::Event(event) => {
                ledger::apply_event(&mut replayed, event, *at).expect("the replay accepts the events");
            }
        }
    }
    assert!(replayed == world.state, "the replay reaches the same state");
});
