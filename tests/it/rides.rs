//! Carpooling over HTTP: a whole day in Ayen, and the last seat booked twice at once.

use covoit::core::protocol::{CommandWire, OfferWire, PlaceWire, RequestWire, sign_body};
use covoit::core::time::Timestamp;
use serde_json::Value;

use crate::support::{Member, TestApp, code};

/// Minutes from the test clock's start, Wednesday 2026-11-25 08:00 UTC (09:00 in Ayen).
fn at(minutes: i64) -> String {
    Timestamp::parse(crate::support::START).unwrap().plus_ms(minutes * 60_000).to_string()
}

const MINUTE: i64 = 60_000;
/// Thursday 2026-11-26 07:30 in Ayen is 06:30 UTC: 22 h 30 min after the start.
const THURSDAY_0730: i64 = 22 * 60 + 30;

fn place(lat: &str, lon: &str) -> PlaceWire {
    PlaceWire::at(lat, lon)
}

fn request(id: &str, pickup: PlaceWire, dropoff: PlaceWire, window: (i64, i64), seats: u32) -> CommandWire {
    CommandWire::Request(Box::new(RequestWire {
        request: id.into(),
        pickup,
        dropoff,
        earliest: at(window.0),
        latest: at(window.1),
        seats,
    }))
}

fn booking(id: &str, offer: &str, request: &str, date: Option<&str>) -> CommandWire {
    CommandWire::Book {
        booking: id.into(),
        offer: offer.into(),
        request: request.into(),
        date: date.map(str::to_owned),
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-9000-{n:012x}")
}

/// Posts a command expecting a refusal; returns its code.
fn refused(app: &TestApp, key: &ed25519_dalek::SigningKey, body: &covoit::core::protocol::BodyWire) -> String {
    let (status, reply) = app.post(&sign_body(key, body));
    assert!(status >= 400, "expected a refusal of {:?}, got {reply}", body.command.kind());
    code(&reply).to_owned()
}

#[test]
fn a_whole_day_in_ayen() {
    let app = TestApp::spawn();
    let desk = app.operator.clone();
    let (denise, etienne, alice, bernard) = (Member::new(11), Member::new(12), Member::new(13), Member::new(14));
    for (member, name) in [(&denise, "Denise"), (&etienne, "Étienne"), (&alice, "Alice"), (&bernard, "Bernard")] {
        app.join(member, name);
    }
    // Claire has no internet: the desk keeps her account and signs for her.
    let claire = uuid(900);
    app.accept(
        &desk,
        &app.body("operator", CommandWire::Custodial { target: claire.clone(), name: "Claire".into() }, false),
    );
    app.issue(&alice, "20.00");
    app.issue(&bernard, "10.00");
    app.accept(&desk, &app.issue_body(&claire, "10.00"));
    // The desk's meeting points.
    for (id, name, lat, lon) in
        [("mairie-ayen", "Mairie d'Ayen", "45.2478", "1.3272"), ("place-objat", "Place d'Objat", "45.2639", "1.4092")]
    {
        let point = CommandWire::PlaceSet { point: id.into(), name: name.into(), lat: lat.into(), lon: lon.into() };
        app.accept(&desk, &app.body("operator", point, false));
    }
    let (_, points) = app.get("/v1/meeting-points");
    assert_eq!(points.as_array().unwrap().len(), 2);

    // Denise drives to work in Objat every weekday at 07:30.
    let commute = uuid(1);
    let offer = CommandWire::Offer(Box::new(OfferWire {
        offer: commute.clone(),
        origin: PlaceWire::meeting_point("mairie-ayen"),
        destination: PlaceWire::meeting_point("place-objat"),
        seats: 3,
        detour_km: None,
        departure: None,
        weekdays: Some("mon,tue,wed,thu,fri".into()),
        time: Some("07:30".into()),
        until: None,
    }));
    app.accept(&denise.key, &app.body(&denise.id, offer, false));
    let (_, shown) = app.get(&format!("/v1/offers/{commute}"));
    assert_eq!(shown["schedule"]["weekdays"], "mon,tue,wed,thu,fri");
    assert_eq!(shown["route_km"], "8.663");
    assert_eq!(shown["detour_km"], "2.598", "30 % of her route");

    // Alice, from the village to Objat, Thursday morning.
    let alice_request = uuid(2);
    let window = (THURSDAY_0730 - 15, THURSDAY_0730 + 20);
    app.accept(
        &alice.key,
        &app.body(
            &alice.id,
            request(&alice_request, place("45.248", "1.328"), place("45.264", "1.408"), window, 1),
            false,
        ),
    );
    let (status, matches) = app.get(&format!("/v1/requests/{alice_request}/matches"));
    assert_eq!(status, 200, "{matches}");
    assert_eq!(matches["matches"][0]["offer"], commute);
    assert_eq!(matches["matches"][0]["date"], "2026-11-26");
    let fare = matches["matches"][0]["fare"].as_str().unwrap().to_owned();
    let alice_booking = uuid(3);
    let receipt = app.accept(
        &alice.key,
        &app.body(&alice.id, booking(&alice_booking, &commute, &alice_request, Some("2026-11-26")), false),
    );
    assert_eq!(receipt["postings"], serde_json::json!([]), "booking holds, it does not pay");
    assert_eq!(app.account(&alice.id)["held"], fare);
    app.accept(&denise.key, &app.body(&denise.id, CommandWire::Accept { booking: alice_booking.clone() }, false));

    // Bernard, from Vars on the way, books the same ride: two passengers.
    let bernard_request = uuid(4);
    app.accept(
        &bernard.key,
        &app.body(
            &bernard.id,
            request(
                &bernard_request,
                place("45.26", "1.365"),
                place("45.264", "1.409"),
                (THURSDAY_0730 - 10, THURSDAY_0730 + 30),
                1,
            ),
            false,
        ),
    );
    let bernard_booking = uuid(5);
    app.accept(
        &bernard.key,
        &app.body(&bernard.id, booking(&bernard_booking, &commute, &bernard_request, Some("2026-11-26")), false),
    );
    app.accept(&denise.key, &app.body(&denise.id, CommandWire::Accept { booking: bernard_booking.clone() }, false));
    // Nobody rides with themselves, and a weekly ride is booked for a date.
    let own = request(&uuid(6), place("45.248", "1.328"), place("45.264", "1.408"), window, 1);
    app.accept(&denise.key, &app.body(&denise.id, own, false));
    assert_eq!(
        refused(
            &app,
            &denise.key,
            &app.body(&denise.id, booking(&uuid(7), &commute, &uuid(6), Some("2026-11-26")), false)
        ),
        "own_ride"
    );
    assert_eq!(
        refused(&app, &alice.key, &app.body(&alice.id, booking(&uuid(7), &commute, &alice_request, None), false)),
        "not_scheduled"
    );
    assert_eq!(
        refused(
            &app,
            &alice.key,
            &app.body(&alice.id, booking(&uuid(7), &commute, &alice_request, Some("2026-11-28")), false)
        ),
        "not_scheduled"
    );

    // Étienne goes to Juillac on Thursday at 14:00; Claire (through the desk) and
    // Alice book it; Alice cancels.
    let juillac = uuid(10);
    let departure = at(THURSDAY_0730 + 6 * 60 + 30);
    let offer = CommandWire::Offer(Box::new(OfferWire {
        offer: juillac.clone(),
        origin: place("45.248", "1.327"),
        destination: place("45.319", "1.323"),
        seats: 2,
        detour_km: Some("3".into()),
        departure: Some(departure.clone()),
        weekdays: None,
        time: None,
        until: None,
    }));
    app.accept(&etienne.key, &app.body(&etienne.id, offer, false));
    let afternoon = (THURSDAY_0730 + 6 * 60 + 20, THURSDAY_0730 + 7 * 60);
    let claire_request = uuid(11);
    app.accept(
        &desk,
        &app.body(
            &claire,
            request(&claire_request, place("45.249", "1.327"), place("45.318", "1.323"), afternoon, 1),
            true,
        ),
    );
    let claire_booking = uuid(12);
    let receipt =
        app.accept(&desk, &app.body(&claire, booking(&claire_booking, &juillac, &claire_request, None), true));
    assert_eq!(receipt["account"], claire);
    app.accept(&etienne.key, &app.body(&etienne.id, CommandWire::Accept { booking: claire_booking.clone() }, false));
    let alice_afternoon = uuid(13);
    app.accept(
        &alice.key,
        &app.body(
            &alice.id,
            request(&alice_afternoon, place("45.248", "1.328"), place("45.318", "1.324"), afternoon, 1),
            false,
        ),
    );
    let alice_juillac = uuid(14);
    app.accept(&alice.key, &app.body(&alice.id, booking(&alice_juillac, &juillac, &alice_afternoon, None), false));
    let held_before = app.account(&alice.id)["held"].clone();
    let cancel = CommandWire::Cancel {
        booking: Some(alice_juillac.clone()),
        offer: None,
        request: None,
        date: None,
        memo: Some("plans changed".into()),
    };
    app.accept(&alice.key, &app.body(&alice.id, cancel, false));
    assert_ne!(app.account(&alice.id)["held"], held_before, "the cancelled booking's hold is released");
    assert_eq!(app.get(&format!("/v1/bookings/{alice_juillac}")).1["status"], "cancelled");

    // Thursday morning: the ride happens.
    app.clock.advance((THURSDAY_0730 + 25) * MINUTE);
    for id in [&alice_booking, &bernard_booking] {
        app.accept(&denise.key, &app.body(&denise.id, CommandWire::Complete { booking: id.clone() }, false));
    }
    app.accept(&alice.key, &app.body(&alice.id, CommandWire::Confirm { booking: alice_booking.clone() }, false));
    // Bernard says he was left at the wrong place; the desk hears both and releases
    // his hold.
    app.accept(
        &bernard.key,
        &app.body(
            &bernard.id,
            CommandWire::Dispute { booking: bernard_booking.clone(), memo: Some("left at the wrong place".into()) },
            false,
        ),
    );
    let resolve = CommandWire::Resolve {
        booking: bernard_booking.clone(),
        outcome: "release".into(),
        memo: Some("heard both; released".into()),
    };
    app.accept(&desk, &app.body("operator", resolve, false));

    // Thursday afternoon: Étienne takes Claire to Juillac; nobody confirms.
    app.clock.advance(6 * 60 * MINUTE + 30 * MINUTE);
    app.accept(&etienne.key, &app.body(&etienne.id, CommandWire::Complete { booking: claire_booking.clone() }, false));
    app.tick();
    assert_eq!(app.get(&format!("/v1/bookings/{claire_booking}")).1["status"], "completed", "not yet 24 hours");
    app.clock.advance(24 * 60 * MINUTE);
    app.tick();
    let settled = app.get(&format!("/v1/bookings/{claire_booking}")).1;
    assert_eq!(settled["status"], "settled", "settled by itself after 24 hours");

    // Statuses, and the money.
    let status = |id: &str| app.get(&format!("/v1/bookings/{id}")).1["status"].as_str().unwrap().to_owned();
    assert_eq!(status(&alice_booking), "settled");
    assert_eq!(status(&bernard_booking), "released");
    // Fares as computed independently (Python, haversine × 1.3 to the metre, × 0.06
    // per km, half up): Alice 8,463 m → 0.51; Bernard 4,514 m → 0.27 (released);
    // Claire 9,982 m → 0.60.
    let expected = [
        (alice.id.as_str(), "19.49", "0.00"),
        (bernard.id.as_str(), "10.00", "0.00"),
        (claire.as_str(), "9.40", "0.00"),
        (denise.id.as_str(), "0.51", "0.00"),
        (etienne.id.as_str(), "0.60", "0.00"),
        ("reserve", "-40.00", "0.00"),
    ];
    for (account, balance, held) in expected {
        let shown = app.account(account);
        assert_eq!((shown["balance"].as_str().unwrap(), shown["held"].as_str().unwrap()), (balance, held), "{account}");
    }
    assert_eq!(fare, "0.51");
    // The log holds every step, the automatic settlement as a server event; the
    // auditor replays it all.
    let (_, history) = app.get(&format!("/v1/accounts/{}/postings", etienne.id));
    assert_eq!(history["postings"][0]["type"], "ride.settle");
    let (report, _) = covoit::audit::run(
        &mut covoit::audit::UrlSource::new(&app.base),
        covoit::audit::Options { seed: [1; 32], ..Default::default() },
        &|_, _| {},
    )
    .expect("the day's log passes the audit");
    assert_eq!(report.circulation, 4000);
    let (_, rides) = app.get(&format!("/v1/accounts/{}/rides", alice.id));
    assert_eq!(rides["bookings"].as_array().unwrap().len(), 2);
    assert_eq!(rides["requests"].as_array().unwrap().len(), 2);

    // The rides survive a restart, and the database's tables match the log.
    let before = app.get(&format!("/v1/accounts/{}/rides", denise.id)).1;
    let mut app = app;
    app.restart();
    assert_eq!(app.get(&format!("/v1/accounts/{}/rides", denise.id)).1, before);
    app.stop();
    let database = app.folder.path().join("covoit.db");
    let options = covoit::audit::Options { seed: [2; 32], ..Default::default() };
    let (report, auditor) =
        covoit::audit::run(&mut covoit::audit::DatabaseSource::open(&database).unwrap(), options, &|_, _| {}).unwrap();
    covoit::audit::DatabaseSource::open(&database)
        .unwrap()
        .check_derived(&auditor, &report)
        .expect("the stored rides are the log's");
}

#[test]
fn two_passengers_booking_the_last_seat_at_once_get_one_seat() {
    let app = TestApp::spawn();
    let driver = Member::new(21);
    let passengers: Vec<Member> = (22..30).map(Member::new).collect();
    app.join(&driver, "Driver");
    let offer_id = uuid(100);
    let offer = CommandWire::Offer(Box::new(OfferWire {
        offer: offer_id.clone(),
        origin: place("45.248", "1.327"),
        destination: place("45.264", "1.409"),
        seats: 1,
        detour_km: None,
        departure: Some(at(120)),
        weekdays: None,
        time: None,
        until: None,
    }));
    app.accept(&driver.key, &app.body(&driver.id, offer, false));
    let mut envelopes = Vec::new();
    for (n, passenger) in passengers.iter().enumerate() {
        app.join(passenger, "Passenger");
        app.issue(passenger, "5.00");
        let request_id = uuid(200 + n as u32);
        app.accept(
            &passenger.key,
            &app.body(
                &passenger.id,
                request(&request_id, place("45.248", "1.328"), place("45.264", "1.408"), (100, 160), 1),
                false,
            ),
        );
        let body = app.body(&passenger.id, booking(&uuid(300 + n as u32), &offer_id, &request_id, None), false);
        envelopes.push(sign_body(&passenger.key, &body));
    }
    let replies: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = envelopes.iter().map(|envelope| scope.spawn(|| app.post(envelope))).collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    let booked = replies.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(booked, 1, "one seat, one booking: {replies:?}");
    for (status, reply) in replies.iter().filter(|(status, _)| *status != 200) {
        assert_eq!((*status, code(reply)), (409, "no_seats"));
    }
    let held: usize = passengers.iter().filter(|p| app.account(&p.id)["held"] != "0.00").count();
    assert_eq!(held, 1, "only the booked passenger's money is held");
}

fn offer_at(id: &str, origin: (&str, &str), minutes: i64) -> CommandWire {
    CommandWire::Offer(Box::new(OfferWire {
        offer: id.into(),
        origin: place(origin.0, origin.1),
        destination: place("45.264", "1.409"),
        seats: 2,
        detour_km: None,
        departure: Some(at(minutes)),
        weekdays: None,
        time: None,
        until: None,
    }))
}

/// Reads server-sent events from a live stream until `wanted` has been seen.
fn read_events(reader: &mut impl std::io::BufRead, wanted: &str) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut name = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended before a \"{wanted}\" event");
        let line = line.trim_end();
        if let Some(event) = line.strip_prefix("event:") {
            name = event.trim().to_owned();
        } else if let Some(data) = line.strip_prefix("data:") {
            events.push((name.clone(), serde_json::from_str(data.trim()).unwrap()));
            if name == wanted {
                return events;
            }
        }
    }
}

/// `passenger`, given 5.00, asks for one seat from near Ayen towards Objat, picked up
/// between minutes 55 and 95 of the test's day.
fn ask_near_ayen(app: &TestApp, passenger: &Member, id: &str) {
    app.issue(passenger, "5.00");
    let asked = request(id, place("45.248", "1.328"), place("45.264", "1.408"), (55, 95), 1);
    app.accept(&passenger.key, &app.body(&passenger.id, asked, false));
}

#[test]
fn matches_are_ranked_and_new_offers_reach_open_requests_live() {
    let app = TestApp::spawn();
    let (early, late, aside, passenger) = (Member::new(31), Member::new(32), Member::new(33), Member::new(34));
    for member in [&early, &late, &aside, &passenger] {
        app.join(member, "Member");
    }
    let wanted = uuid(500);
    ask_near_ayen(&app, &passenger, &wanted);

    // The passenger follows the request live, from before any offer exists.
    let mut response = ureq::get(&format!("{}/v1/requests/{wanted}/events", app.base)).call().unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = std::io::BufReader::new(response.body_mut().as_reader());
    let opening = read_events(&mut stream, "matches");
    assert_eq!(opening.last().unwrap().1["matches"], serde_json::json!([]));

    app.accept(&late.key, &app.body(&late.id, offer_at(&uuid(501), ("45.248", "1.327"), 75), false));
    let heard = read_events(&mut stream, "match");
    assert_eq!(heard.last().unwrap().1["offer"], uuid(501), "a new fitting offer is pushed");
    app.accept(&early.key, &app.body(&early.id, offer_at(&uuid(502), ("45.248", "1.327"), 60), false));
    // Starting a little south-west of the pickup: a small detour.
    app.accept(&aside.key, &app.body(&aside.id, offer_at(&uuid(503), ("45.244", "1.322"), 55), false));
    // An offer going elsewhere does not fit.
    let elsewhere = CommandWire::Offer(Box::new(OfferWire {
        destination: place("45.319", "1.323"),
        ..match offer_at(&uuid(504), ("45.248", "1.327"), 60) {
            CommandWire::Offer(offer) => *offer,
            _ => unreachable!(),
        }
    }));
    app.accept(&early.key, &app.body(&early.id, elsewhere, false));

    let (_, found) = app.get(&format!("/v1/requests/{wanted}/matches"));
    let order: Vec<&str> = found["matches"].as_array().unwrap().iter().map(|m| m["offer"].as_str().unwrap()).collect();
    assert_eq!(order, [uuid(502), uuid(501), uuid(503)], "least detour first, then earliest pickup: {found}");
    let added: Vec<f64> =
        found["matches"].as_array().unwrap().iter().map(|m| m["added_km"].as_str().unwrap().parse().unwrap()).collect();
    assert!(added[0] <= added[2] && added[1] <= added[2] && added[2] > 0.0, "{added:?}");

    // Booking changes reach the stream too.
    app.accept(&passenger.key, &app.body(&passenger.id, booking(&uuid(505), &uuid(502), &wanted, None), false));
    let heard = read_events(&mut stream, "booking");
    assert_eq!(heard.last().unwrap().1, serde_json::json!({"booking": uuid(505), "status": "requested"}));

    // The public listing near Ayen shows the rides with coarse places.
    let (status, listing) = app.get("/v1/offers?lat=45.248&lon=1.327&radius_km=5");
    assert_eq!(status, 200, "{listing}");
    let offers = listing["offers"].as_array().unwrap();
    assert_eq!(offers.len(), 4);
    for offer in offers {
        let lat: f64 = offer["origin"]["lat"].as_str().unwrap().parse().unwrap();
        assert!(((lat * 1000.0).round() as i64) % 5 == 0, "coarse to 0.005°: {offer}");
    }
    let (status, reply) = app.get("/v1/offers?lat=north&lon=1");
    assert_eq!((status, code(&reply)), (400, "invalid_query"));
}

#[test]
fn a_driver_hears_of_bookings_on_their_offers_live() {
    let app = TestApp::spawn();
    let (driver, other_driver, passenger) = (Member::new(71), Member::new(72), Member::new(73));
    for member in [&driver, &other_driver, &passenger] {
        app.join(member, "Member");
    }
    app.accept(&driver.key, &app.body(&driver.id, offer_at(&uuid(701), ("45.248", "1.327"), 60), false));
    app.accept(&other_driver.key, &app.body(&other_driver.id, offer_at(&uuid(702), ("45.248", "1.327"), 70), false));
    let wanted = uuid(703);
    ask_near_ayen(&app, &passenger, &wanted);

    // The driver's page follows the driver's own rides: first what they are now.
    let mut response = ureq::get(&format!("{}/v1/accounts/{}/events", app.base, driver.id)).call().unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = std::io::BufReader::new(response.body_mut().as_reader());
    let opening = read_events(&mut stream, "rides");
    let rides = &opening.last().unwrap().1;
    assert_eq!(rides, &app.get(&format!("/v1/accounts/{}/rides", driver.id)).1, "the same as GET …/rides");
    assert_eq!(rides["offers"][0]["offer"], uuid(701));

    // A booking with another driver is not the driver's business: the passenger books
    // and cancels one, then books the driver's offer; only that reaches the stream,
    // and each change to it.
    let other = booking(&uuid(704), &uuid(702), &wanted, None);
    app.accept(&passenger.key, &app.body(&passenger.id, other, false));
    let cancel = CommandWire::Cancel { booking: Some(uuid(704)), offer: None, request: None, date: None, memo: None };
    app.accept(&passenger.key, &app.body(&passenger.id, cancel, false));
    app.accept(&passenger.key, &app.body(&passenger.id, booking(&uuid(705), &uuid(701), &wanted, None), false));
    let heard = read_events(&mut stream, "booking");
    assert_eq!(heard, [("booking".to_owned(), serde_json::json!({"booking": uuid(705), "status": "requested"}))]);
    app.accept(&driver.key, &app.body(&driver.id, CommandWire::Accept { booking: uuid(705) }, false));
    let heard = read_events(&mut stream, "booking");
    assert_eq!(heard, [("booking".to_owned(), serde_json::json!({"booking": uuid(705), "status": "accepted"}))]);

    // An account nobody has is a 404, as for GET /v1/accounts/{id}.
    let (status, reply) = app.get(&format!("/v1/accounts/{}/events", uuid(799)));
    assert_eq!((status, code(&reply)), (404, "unknown_account"));
}

/// One address holds at most `STREAMS_PER_CLIENT_MAX` live streams: the next is told so
/// (503 `too_many_streams`), and a closed stream gives its place back.
#[test]
fn one_address_cannot_hold_every_live_stream() {
    use covoit::http::STREAMS_PER_CLIENT_MAX;
    let app = TestApp::spawn();
    let passenger = Member::new(61);
    app.join(&passenger, "Member");
    let wanted = uuid(600);
    ask_near_ayen(&app, &passenger, &wanted);
    let url = format!("{}/v1/requests/{wanted}/events", app.base);
    let agent = ureq::Agent::new_with_config(ureq::Agent::config_builder().http_status_as_error(false).build());
    let mut open = Vec::new();
    for _ in 0..STREAMS_PER_CLIENT_MAX {
        let mut response = agent.get(&url).call().unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let mut stream = std::io::BufReader::new(response.body_mut().as_reader());
        read_events(&mut stream, "matches");
        drop(stream);
        open.push(response);
    }
    let mut refused = agent.get(&url).call().unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    let reply: Value = serde_json::from_str(&refused.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(code(&reply), "too_many_streams");
    assert!(reply["error"]["message"].as_str().unwrap().contains("from your address"), "{reply}");

    drop(open.pop());
    // The server notices the closed connection when it reads its end, or at the
    // latest when it next writes to it (an event, or the keep-alive comment every
    // 15 s). An event for this request makes that write come at once: a fitting offer.
    let driver = Member::new(62);
    app.join(&driver, "Member");
    app.accept(&driver.key, &app.body(&driver.id, offer_at(&uuid(601), ("45.248", "1.327"), 75), false));
    let deadline = std::time::Instant::now() + covoit::http::STREAM_KEEP_ALIVE * 2;
    loop {
        let mut response = agent.get(&url).call().unwrap();
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a closed stream never gave its place back");
        drop(response.body_mut().read_to_string());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
