//! How fast a request is matched against many open offers, in-process.
//!
//! Builds a ledger (through the real state machine) with open one-off offers spread
//! over a 400 km × 400 km region — routes of 5 to 25 km leaving within the next
//! week — and, at 1,000, 10,000 and 100,000 offers, builds the ride board and times
//! `Board::matches` for 2,000 requests (trips of 3 to 20 km, one-hour windows).
//! Prints p50, p99 and the worst latency; asserts nothing about time.
//!
//!     cargo bench --bench matching

use std::time::Instant;

use covoit::core::board::Board;
use covoit::core::geo::{Point, road_distance_m};
use covoit::core::ids::{AccountId, Id};
use covoit::core::ledger::{self, State};
use covoit::core::policy::{Currency, Genesis, Policy};
use covoit::core::protocol::{self, BodyWire, CommandWire, OfferWire, PlaceWire, base64_encode, sign_body};
use covoit::core::rides::{Place, Request};
use covoit::core::time::Timestamp;
use ed25519_dalek::SigningKey;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LEDGER: &str = "covoit/bench/matching";
const DRIVERS: u64 = 1_000;
const QUERIES: usize = 2_000;
/// The region's south-west corner, and its size in microdegrees (about 400 km).
const SOUTH_WEST: (i32, i32) = (43_500_000, -500_000);
const SPAN_E6: i32 = 3_600_000;

/// A small deterministic generator (xorshift), so that reruns measure the same work.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn point(&mut self) -> Point {
        let lat = SOUTH_WEST.0 + self.below(SPAN_E6 as u64) as i32;
        let lon = SOUTH_WEST.1 + self.below(SPAN_E6 as u64) as i32;
        // Ride places have three decimals.
        Point::from_micro_degrees(lat / 1000 * 1000, lon / 1000 * 1000)
    }

    /// A point about `km` away from `from`, in a random direction.
    fn away(&mut self, from: Point, km: f64) -> Point {
        let angle = self.below(360) as f64 * std::f64::consts::PI / 180.0;
        let dlat = (km / 111.2 * angle.sin() * 1e6) as i32;
        let dlon = (km / 78.0 * angle.cos() * 1e6) as i32;
        Point::from_micro_degrees((from.lat_e6() + dlat) / 1000 * 1000, (from.lon_e6() + dlon) / 1000 * 1000)
    }
}

fn main() {
    let start = Timestamp::parse("2026-11-25T08:00:00Z").unwrap();
    let operator = SigningKey::from_bytes(&[0xee; 32]);
    let genesis = Genesis {
        currency: Currency::default(),
        ledger: LEDGER.into(),
        ledger_key: base64_encode(SigningKey::from_bytes(&[0xdd; 32]).verifying_key().as_bytes()),
        operator_key: base64_encode(operator.verifying_key().as_bytes()),
        policy: Policy { approval_required: false, ..Policy::default() },
    };
    let mut state = State::from_genesis(&genesis, start).unwrap();
    let drivers: Vec<(String, SigningKey)> =
        (0..DRIVERS).map(|n| (format!("00000000-0000-4000-8000-{n:012x}"), SigningKey::from_bytes(&seed(n)))).collect();
    let mut seqs = vec![0u64; DRIVERS as usize];
    for (n, (id, key)) in drivers.iter().enumerate() {
        run(&mut state, key, body(id, 0, CommandWire::Register { name: format!("Driver {n}") }), start);
        seqs[n] = 1;
    }
    let mut random = Random(0x5eed_c0ffee);
    let mut offers = 0u64;
    let started = Instant::now();
    for target in [1_000u64, 10_000, 100_000] {
        while offers < target {
            let driver = (offers % DRIVERS) as usize;
            let origin = random.point();
            let length = 5.0 + random.below(20) as f64;
            let destination = random.away(origin, length);
            let departure = start.plus_ms(3_600_000 + random.below(7 * 24 * 60) as i64 * 60_000);
            let offer = CommandWire::Offer(Box::new(OfferWire {
                offer: format!("00000000-0000-4000-9000-{offers:012x}"),
                origin: PlaceWire::at(&origin.lat_text(), &origin.lon_text()),
                destination: PlaceWire::at(&destination.lat_text(), &destination.lon_text()),
                seats: 3,
                detour_km: None,
                departure: Some(departure.to_string()),
                weekdays: None,
                time: None,
                until: None,
            }));
            let (id, key) = &drivers[driver];
            run(&mut state, key, body(id, seqs[driver], offer), start);
            seqs[driver] += 1;
            offers += 1;
        }
        let built = Instant::now();
        let board = Board::build(&state);
        let build_ms = built.elapsed().as_secs_f64() * 1e3;
        measure(&board, &state, &mut random, start, build_ms);
    }
    eprintln!("(the ledger of {offers} offers took {:.0} s to build)", started.elapsed().as_secs_f64());
}

fn measure(board: &Board, state: &State, random: &mut Random, now: Timestamp, build_ms: f64) {
    let passenger = AccountId::parse("00000000-0000-4000-a000-000000000001").unwrap();
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut found = 0usize;
    for query in 0..QUERIES {
        let pickup = random.point();
        let length = 3.0 + random.below(17) as f64;
        let dropoff = random.away(pickup, length);
        let earliest = now.plus_ms(3_600_000 + random.below(7 * 24 * 60) as i64 * 60_000);
        let request = Request {
            id: Id::parse("request", &format!("00000000-0000-4000-b000-{query:012x}")).unwrap(),
            passenger: passenger.clone(),
            pickup: Place { location: pickup, meeting_point: None },
            dropoff: Place { location: dropoff, meeting_point: None },
            earliest,
            latest: earliest.plus_ms(3_600_000),
            seats: 1,
            distance_m: road_distance_m(pickup, dropoff, state.rules().road_factor_e3),
            withdrawn: false,
        };
        let timer = Instant::now();
        let matches = board.matches(&request, now);
        latencies.push(timer.elapsed().as_secs_f64() * 1e6);
        found += usize::from(!matches.is_empty());
    }
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{:>7} open offers: match p50 {:>6.1} µs, p99 {:>6.1} µs, worst {:>7.1} µs ({} of {QUERIES} requests matched; board built in {build_ms:.0} ms)",
        board.offer_count(),
        percentile(0.50),
        percentile(0.99),
        latencies.last().unwrap(),
        found
    );
}

fn seed(n: u64) -> [u8; 32] {
    let mut seed = [0x42u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed
}

fn body(account: &str, seq: u64, command: CommandWire) -> BodyWire {
    BodyWire {
        ledger: LEDGER.into(),
        account: account.into(),
        seq: seq.to_string(),
        not_after: "2030-01-01T00:00:00Z".into(),
        by: None,
        command,
    }
}

fn run(state: &mut State, key: &SigningKey, body: BodyWire, now: Timestamp) {
    let envelope = sign_body(key, &body);
    let command = protocol::verify_envelope(envelope).expect("a valid envelope");
    ledger::apply(state, &command, now).expect("the command applies");
}
