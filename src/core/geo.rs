//! Places and distances: one function for matching, fares and the audit.
//!
//! A point is kept in whole microdegrees, parsed from decimal strings, so that it has
//! one exact value everywhere. The distance between two points is the great-circle
//! distance (haversine, mean Earth radius 6371.0088 km) times the policy's road
//! factor, rounded to the whole metre. The trigonometry uses the `libm` crate, a
//! pure-Rust port of musl's libm built only on IEEE-754 operations, so that the
//! server and every auditor get the same metres on any machine.

use std::fmt;

/// Mean Earth radius, metres (IUGG).
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Most decimals of a coordinate written in a ride command: about 100 m, a block
/// rather than a door (exact addresses are not part of the public log).
pub const RIDE_DECIMALS_MAX: u32 = 3;
/// Most decimals of a meeting point's coordinates (public places).
pub const POINT_DECIMALS_MAX: u32 = 6;

/// Why a coordinate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    #[error(
        "\"{0}\" is not a coordinate; write decimal degrees as a string, such as \"45.251\" (at most {1} decimals)"
    )]
    Coordinate(String, u32),
    #[error("the latitude \"{0}\" is outside -90 to 90")]
    Latitude(String),
    #[error("the longitude \"{0}\" is outside -180 to 180")]
    Longitude(String),
}

/// A point on Earth, in microdegrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Point {
    lat_e6: i32,
    lon_e6: i32,
}

impl Point {
    /// Parses latitude and longitude strings with at most `decimals` decimals.
    pub fn parse(lat: &str, lon: &str, decimals: u32) -> Result<Point, GeoError> {
        let lat_e6 = parse_degrees(lat, decimals)?;
        let lon_e6 = parse_degrees(lon, decimals)?;
        if !(-90_000_000..=90_000_000).contains(&lat_e6) {
            return Err(GeoError::Latitude(lat.to_owned()));
        }
        if !(-180_000_000..=180_000_000).contains(&lon_e6) {
            return Err(GeoError::Longitude(lon.to_owned()));
        }
        Ok(Point { lat_e6, lon_e6 })
    }

    pub const fn from_micro_degrees(lat_e6: i32, lon_e6: i32) -> Point {
        Point { lat_e6, lon_e6 }
    }

    pub fn lat_e6(self) -> i32 {
        self.lat_e6
    }

    pub fn lon_e6(self) -> i32 {
        self.lon_e6
    }

    pub fn lat_degrees(self) -> f64 {
        f64::from(self.lat_e6) / 1e6
    }

    pub fn lon_degrees(self) -> f64 {
        f64::from(self.lon_e6) / 1e6
    }

    /// The point rounded to a grid of `step_e6` microdegrees: what public listings show.
    pub fn coarse(self, step_e6: i32) -> Point {
        let snap = |value: i32| (f64::from(value) / f64::from(step_e6)).round() as i32 * step_e6;
        Point { lat_e6: snap(self.lat_e6), lon_e6: snap(self.lon_e6) }
    }

    /// The latitude as the shortest decimal string ("45.251").
    pub fn lat_text(self) -> String {
        format_degrees(self.lat_e6)
    }

    pub fn lon_text(self) -> String {
        format_degrees(self.lon_e6)
    }
}

impl fmt::Display for Point {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}, {}", self.lat_text(), self.lon_text())
    }
}

/// The great-circle distance in metres (haversine), as an `f64`.
pub fn great_circle_m(a: Point, b: Point) -> f64 {
    let to_radians = |micro: i32| f64::from(micro) / 1e6 * (std::f64::consts::PI / 180.0);
    let (lat_a, lat_b) = (to_radians(a.lat_e6), to_radians(b.lat_e6));
    let d_lat = lat_b - lat_a;
    let d_lon = to_radians(b.lon_e6) - to_radians(a.lon_e6);
    let sin_lat = libm::sin(d_lat / 2.0);
    let sin_lon = libm::sin(d_lon / 2.0);
    let h = sin_lat * sin_lat + libm::cos(lat_a) * libm::cos(lat_b) * sin_lon * sin_lon;
    2.0 * EARTH_RADIUS_M * libm::asin(libm::sqrt(h.min(1.0)))
}

/// The road distance in whole metres: great-circle × road factor, rounded half away
/// from zero. `road_factor_e3` is the factor in thousandths (1.3 → 1300).
pub fn road_distance_m(a: Point, b: Point, road_factor_e3: u32) -> u32 {
    let metres = great_circle_m(a, b) * f64::from(road_factor_e3) / 1000.0;
    libm::round(metres) as u32
}

/// Degrees of latitude per metre, and of longitude per metre at `lat` (for boxes).
pub fn degrees_per_metre(lat: f64) -> (f64, f64) {
    let per_degree = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
    let cos = libm::cos(lat.abs().min(89.0) * std::f64::consts::PI / 180.0);
    (1.0 / per_degree, 1.0 / (per_degree * cos))
}

fn parse_degrees(text: &str, decimals: u32) -> Result<i32, GeoError> {
    let error = || GeoError::Coordinate(text.chars().take(24).collect(), decimals);
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').map_or((digits, ""), |(whole, fraction)| (whole, fraction));
    let well_formed = !whole.is_empty()
        && whole.len() <= 3
        && whole.bytes().all(|byte| byte.is_ascii_digit())
        && (whole.len() == 1 || !whole.starts_with('0'))
        && fraction.bytes().all(|byte| byte.is_ascii_digit())
        && fraction.len() <= decimals as usize
        && digits.contains('.') != fraction.is_empty();
    if !well_formed {
        return Err(error());
    }
    let whole: i32 = whole.parse().map_err(|_| error())?;
    let fraction_e6: i32 = format!("{fraction:0<6}").parse().map_err(|_| error())?;
    let value = whole * 1_000_000 + fraction_e6;
    if negative && value == 0 {
        return Err(error());
    }
    Ok(if negative { -value } else { value })
}

fn format_degrees(micro: i32) -> String {
    let sign = if micro < 0 { "-" } else { "" };
    let magnitude = micro.unsigned_abs();
    let (whole, fraction) = (magnitude / 1_000_000, magnitude % 1_000_000);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let fraction = format!("{fraction:06}");
    format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_have_one_spelling() {
        let check = |lat: &str, lon: &str, expected: Option<(i32, i32)>| {
            let parsed = Point::parse(lat, lon, RIDE_DECIMALS_MAX).ok().map(|p| (p.lat_e6(), p.lon_e6()));
            assert_eq!(parsed, expected, "{lat}, {lon}");
        };
        check("45.251", "1.323", Some((45_251_000, 1_323_000)));
        check("-45.5", "-1", Some((-45_500_000, -1_000_000)));
        check("0", "0", Some((0, 0)));
        check("90", "180", Some((90_000_000, 180_000_000)));
        check("45.250", "1.30", Some((45_250_000, 1_300_000)));
        check("45.2512", "1.323", None); // a fourth decimal
        check("45.", "1", None);
        check(".5", "1", None);
        check("045.1", "1", None);
        check("-0", "1", None);
        check("+45", "1", None);
        check("90.001", "0", None);
        check("0", "-180.001", None);
        check("1e1", "0", None);
        check("", "0", None);
        let point = Point::parse("45.251", "-1.3", RIDE_DECIMALS_MAX).unwrap();
        assert_eq!((point.lat_text(), point.lon_text()), ("45.251".into(), "-1.3".into()));
        assert!(Point::parse("45.123456", "1.5", POINT_DECIMALS_MAX).is_ok());
    }

    #[test]
    fn the_distance_is_symmetric_zero_on_itself_and_rounded_to_the_metre() {
        let a = Point::parse("45.251", "1.323", 3).unwrap();
        let b = Point::parse("45.159", "1.532", 3).unwrap();
        assert_eq!(road_distance_m(a, a, 1300), 0);
        assert_eq!(road_distance_m(a, b, 1300), road_distance_m(b, a, 1300));
        assert_eq!(road_distance_m(a, b, 1000), libm::round(great_circle_m(a, b)) as u32);
        // One thousandth of a degree of latitude is 111.195 m on the mean sphere.
        let north = Point::from_micro_degrees(45_252_000, 1_323_000);
        assert_eq!(road_distance_m(a, north, 1000), 111);
        assert_eq!(road_distance_m(a, north, 1300), 145);
    }

    /// Published coordinates of Ayen and nearby towns, against geodesic distances
    /// computed by an independent library (see tests/data/SOURCES.md).
    #[test]
    fn known_distances_between_real_places() {
        let table = include_str!("../../tests/data/places.txt");
        let places: Vec<(&str, Point, f64, f64)> = table
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let point = Point::parse(fields[1], fields[2], 4).unwrap();
                (fields[0], point, fields[3].parse().unwrap(), fields[4].parse().unwrap())
            })
            .collect();
        let (_, ayen, _, _) = places[0];
        assert!(places.len() >= 4);
        for (name, point, geodesic, haversine) in &places[1..] {
            let ours = great_circle_m(ayen, *point);
            assert!((ours - haversine).abs() <= 1.0, "{name}: {ours} m against an independent haversine {haversine} m");
            // The sphere is not the ellipsoid: within 0.5 % of the WGS84 geodesic.
            assert!((ours - geodesic).abs() / geodesic < 0.005, "{name}: {ours} m against the geodesic {geodesic} m");
        }
    }
}
