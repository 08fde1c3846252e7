//! Fitting a passenger into a driver's ride: the insertion rule.
//!
//! A ride's itinerary is the driver's origin, the stops of the passengers already
//! booked (each pickup before its dropoff) and the destination. A request fits when
//! its pickup and dropoff can be inserted, in that order, so that the whole route is
//! no longer than the driver's own route plus the detour limit, and every pickup —
//! the new one and those already booked — is reached within its passenger's window,
//! at the policy's average speed from the departure time. Of the insertions that
//! fit, the best adds the least distance, then picks the passenger up earliest, then
//! comes first in itinerary order. The state machine checks a booking with this
//! function; the matching read ranks offers with it.

use crate::core::geo::{Point, road_distance_m};
use crate::core::time::Timestamp;

/// A stop already in an itinerary; pickups carry their passenger's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopView {
    pub location: Point,
    pub window: Option<(Timestamp, Timestamp)>,
}

/// A driver's ride as the insertion rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Itinerary<'a> {
    pub origin: Point,
    pub destination: Point,
    pub departure: Timestamp,
    pub stops: &'a [StopView],
    /// The driver's own route, metres.
    pub direct_m: u32,
    /// How much longer than its own route the ride may become, metres.
    pub detour_limit_m: u32,
}

/// The passenger to fit in.
#[derive(Debug, Clone, Copy)]
pub struct Passenger {
    pub pickup: Point,
    pub dropoff: Point,
    pub earliest: Timestamp,
    pub latest: Timestamp,
}

/// Road factor and speed, from the rules in force.
#[derive(Debug, Clone, Copy)]
pub struct Motion {
    pub road_factor_e3: u32,
    pub speed_kmh: u32,
}

/// Where the new stops go and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insertion {
    /// The new pickup goes before the existing stop of this index (stops.len() = at
    /// the end, before the destination).
    pub pickup_index: usize,
    /// The new dropoff goes before the existing stop of this index, after the pickup.
    pub dropoff_index: usize,
    /// Metres the ride grows by.
    pub added_m: u32,
    pub pickup_at: Timestamp,
}

/// Milliseconds to drive `metres` at `speed_kmh`.
pub fn drive_ms(metres: u64, speed_kmh: u32) -> i64 {
    (metres * 3_600 / u64::from(speed_kmh.max(1))) as i64
}

/// The best insertion of `passenger` into `itinerary`, or `None` if none fits.
pub fn best_insertion(itinerary: &Itinerary<'_>, passenger: &Passenger, motion: Motion) -> Option<Insertion> {
    let distance = |a: Point, b: Point| u64::from(road_distance_m(a, b, motion.road_factor_e3));
    // The points of the current route: origin, stops, destination.
    let mut route: Vec<Point> = Vec::with_capacity(itinerary.stops.len() + 2);
    route.push(itinerary.origin);
    route.extend(itinerary.stops.iter().map(|stop| stop.location));
    route.push(itinerary.destination);
    let legs: Vec<u64> = route.windows(2).map(|pair| distance(pair[0], pair[1])).collect();
    let current: u64 = legs.iter().sum();
    let to_pickup: Vec<u64> = route.iter().map(|point| distance(*point, passenger.pickup)).collect();
    let to_dropoff: Vec<u64> = route.iter().map(|point| distance(*point, passenger.dropoff)).collect();
    let pickup_to_dropoff = distance(passenger.pickup, passenger.dropoff);
    let limit = u64::from(itinerary.direct_m) + u64::from(itinerary.detour_limit_m);
    let stops = itinerary.stops.len();

    let mut best: Option<Insertion> = None;
    // The pickup goes into leg `i` (between route[i] and route[i + 1]), the dropoff
    // into leg `j ≥ i`.
    for i in 0..=stops {
        for j in i..=stops {
            let total = if i == j {
                current - legs[i] + to_pickup[i] + pickup_to_dropoff + to_dropoff[i + 1]
            } else {
                current - legs[i] - legs[j] + to_pickup[i] + to_pickup[i + 1] + to_dropoff[j] + to_dropoff[j + 1]
            };
            if total > limit {
                continue;
            }
            let Some(pickup_at) = windows_hold(itinerary, passenger, motion, &legs, (&to_pickup, &to_dropoff), (i, j))
            else {
                continue;
            };
            let candidate =
                // Legs rounded to the metre can make a route through on-road stops a
                // metre shorter than without them: no added distance then.
                Insertion { pickup_index: i, dropoff_index: j, added_m: total.saturating_sub(current) as u32, pickup_at };
            let better =
                best.is_none_or(|best| (candidate.added_m, candidate.pickup_at) < (best.added_m, best.pickup_at));
            if better {
                best = Some(candidate);
            }
        }
    }
    best
}

/// Walks the new route and checks every pickup's window; returns the new pickup's
/// time when all hold.
fn windows_hold(
    itinerary: &Itinerary<'_>,
    passenger: &Passenger,
    motion: Motion,
    legs: &[u64],
    (to_pickup, to_dropoff): (&[u64], &[u64]),
    (i, j): (usize, usize),
) -> Option<Timestamp> {
    let at = |metres: u64| itinerary.departure.plus_ms(drive_ms(metres, motion.speed_kmh));
    let within = |time: Timestamp, (earliest, latest): (Timestamp, Timestamp)| earliest <= time && time <= latest;
    // Distance driven when reaching existing stop k (route index k + 1) on the new route.
    let mut driven = 0u64;
    let mut pickup_at = None;
    for k in 0..=itinerary.stops.len() {
        // Leg k of the old route, from route[k] to route[k + 1], with the new stops in it.
        let reach_next = if k == i && k == j {
            driven += to_pickup[k];
            pickup_at = Some(at(driven));
            driven += u64::from(road_distance_m(passenger.pickup, passenger.dropoff, motion.road_factor_e3));
            driven += to_dropoff[k + 1];
            driven
        } else if k == i {
            driven += to_pickup[k];
            pickup_at = Some(at(driven));
            driven += to_pickup[k + 1];
            driven
        } else if k == j {
            driven += to_dropoff[k] + to_dropoff[k + 1];
            driven
        } else {
            driven += legs[k];
            driven
        };
        if k < itinerary.stops.len() {
            if let Some(window) = itinerary.stops[k].window {
                if !within(at(reach_next), window) {
                    return None;
                }
            }
        }
    }
    let pickup_at = pickup_at.expect("the pickup is in some leg");
    within(pickup_at, (passenger.earliest, passenger.latest)).then_some(pickup_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOTION: Motion = Motion { road_factor_e3: 1000, speed_kmh: 60 };

    /// Points along the equator, `km` kilometres east of 0,0 (1 km ≈ 0.008993°).
    fn east(km: f64) -> Point {
        Point::from_micro_degrees(0, (km * 8_993.216).round() as i32)
    }

    fn time(minutes: i64) -> Timestamp {
        Timestamp::from_unix_ms(minutes * 60_000)
    }

    fn passenger(pickup_km: f64, dropoff_km: f64, window: (i64, i64)) -> Passenger {
        Passenger {
            pickup: east(pickup_km),
            dropoff: east(dropoff_km),
            earliest: time(window.0),
            latest: time(window.1),
        }
    }

    fn ride(stops: &[StopView]) -> Itinerary<'_> {
        Itinerary {
            origin: east(0.0),
            destination: east(20.0),
            departure: time(0),
            stops,
            direct_m: road_distance_m(east(0.0), east(20.0), 1000),
            detour_limit_m: 2_000,
        }
    }

    #[test]
    fn a_passenger_on_the_way_costs_no_detour() {
        let fit = best_insertion(&ride(&[]), &passenger(5.0, 12.0, (0, 60)), MOTION).unwrap();
        assert_eq!((fit.pickup_index, fit.dropoff_index), (0, 0));
        assert!(fit.added_m <= 1, "{fit:?}");
        // 5 km at 60 km/h: five minutes after departure.
        assert_eq!(fit.pickup_at, time(5));
    }

    #[test]
    fn the_detour_limit_and_the_windows_are_kept() {
        // Going back 2 km before the origin costs 4 km of detour: over the 2 km limit.
        assert_eq!(best_insertion(&ride(&[]), &passenger(-2.0, 5.0, (0, 60)), MOTION), None);
        // 1 km back costs 2 km: just within.
        assert!(best_insertion(&ride(&[]), &passenger(-1.0, 5.0, (0, 60)), MOTION).is_some());
        // The pickup at 5 km is at minute 5: a window closing at minute 4 misses it.
        assert_eq!(best_insertion(&ride(&[]), &passenger(5.0, 12.0, (0, 4)), MOTION), None);
        assert_eq!(best_insertion(&ride(&[]), &passenger(5.0, 12.0, (6, 30)), MOTION), None);
    }

    #[test]
    fn stops_go_in_order_and_booked_windows_still_hold() {
        // Someone is booked from 10 km to 15 km, picked up at minute 10 within (9, 11).
        let stops = [
            StopView { location: east(10.0), window: Some((time(9), time(11))) },
            StopView { location: east(15.0), window: None },
        ];
        let fit = best_insertion(&ride(&stops), &passenger(12.0, 18.0, (0, 60)), MOTION).unwrap();
        assert_eq!((fit.pickup_index, fit.dropoff_index), (1, 2), "after the first pickup, after the first dropoff");
        assert_eq!(fit.pickup_at, time(12));
        // A pickup 0.9 km off the road at 5 km, dropped back on the road: about 1 km
        // of detour, which delays the booked passenger's pickup to minute 10.98,
        // past a window closing at 10.5: refused although the detour is allowed.
        let off_road = Passenger {
            pickup: Point::from_micro_degrees(8_094, east(5.0).lon_e6()),
            dropoff: east(5.0),
            earliest: time(0),
            latest: time(60),
        };
        let tight = [StopView { location: east(10.0), window: Some((time(9), time(10).plus_ms(30_000))) }, stops[1]];
        assert_eq!(best_insertion(&ride(&tight), &off_road, MOTION), None);
        let fit = best_insertion(&ride(&stops), &off_road, MOTION).unwrap();
        assert!((950..=1_010).contains(&fit.added_m), "{fit:?}");
    }

    /// Along one meridian, legs rounded to the metre can make a route through the
    /// passenger's stops a metre shorter than the driver's own: no added distance,
    /// and no arithmetic underflow.
    #[test]
    fn rounding_never_makes_a_negative_detour() {
        let north = |lat_e3: i32| Point::from_micro_degrees(lat_e3 * 1_000, 1_000_000);
        let motion = Motion { road_factor_e3: 1300, speed_kmh: 50 };
        let itinerary = Itinerary {
            origin: north(45_000),
            destination: north(45_019),
            departure: time(0),
            stops: &[],
            direct_m: road_distance_m(north(45_000), north(45_019), 1300),
            detour_limit_m: 2_000,
        };
        let passenger =
            Passenger { pickup: north(45_002), dropoff: north(45_017), earliest: time(0), latest: time(60) };
        assert_eq!(best_insertion(&itinerary, &passenger, motion).unwrap().added_m, 0);
    }

    #[test]
    fn the_least_detour_wins_then_the_earliest_pickup() {
        let stops = [StopView { location: east(8.0), window: None }, StopView { location: east(9.0), window: None }];
        // Pickup and dropoff between origin and the first stop: leg 0 for both.
        let fit = best_insertion(&ride(&stops), &passenger(2.0, 4.0, (0, 60)), MOTION).unwrap();
        assert_eq!((fit.pickup_index, fit.dropoff_index), (0, 0));
        // A dropoff beyond the last stop goes in the last leg.
        let fit = best_insertion(&ride(&stops), &passenger(2.0, 19.0, (0, 60)), MOTION).unwrap();
        assert_eq!((fit.pickup_index, fit.dropoff_index), (0, 2));
    }
}
