//! The web page in a real headless Chromium (Debian's chromium and chromium-driver),
//! driven over WebDriver: a desk, a driver and two residents, each in their own
//! browser profile, from joining to paying for a ride; axe-core checks every main
//! screen for accessibility. Screenshots go to `target/tmp/screenshots/`.
//!
//! Run by `.ci/run`, which installs the browser and axe-core:
//!     cargo test --locked --features browser --test browser

#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;
mod webdriver;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::TestApp;
use webdriver::{Driver, Session};

fn screenshots() -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

/// axe-core, from the npm registry (see .ci/run).
fn axe_source() -> String {
    let path = std::env::var("AXE_CORE").unwrap_or_else(|_| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        root.join("target/web-tools/node_modules/axe-core/axe.min.js").display().to_string()
    });
    std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("axe-core at {path}: run .ci/run, which installs it"))
}

/// Runs axe-core on the page; fails on any serious or critical violation.
fn check_accessibility(session: &Session<'_>, axe: &str, screen: &str) {
    session.script(axe, json!([]));
    let result = session.async_script(
        "const done = arguments[arguments.length - 1];
         axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))));",
        json!([]),
    );
    let serious: Vec<&Value> = result
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(serious.is_empty(), "accessibility violations on the {screen} screen: {serious:?}");
}

/// "12,30 Y'ACA" → "12.30".
fn shown_amount(text: &str) -> String {
    text.split_whitespace().next().unwrap_or_default().replace(',', ".")
}

fn join(session: &Session<'_>, base: &str, name: &str) -> String {
    session.go(base);
    session.type_into("#join-name", name);
    session.click("#join-button");
    session.wait_for_text("#account-status", "En attente");
    session.find("#my-account");
    session.text("#my-account")
}

/// The next whole minute at least `minutes` from now, as UTC (date, "HH:MM").
fn soon(minutes: u64) -> (String, String, u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let at = (now / 60 + minutes + 1) * 60;
    let stamp = covoit::core::time::Timestamp::from_unix_ms(at as i64 * 1000).to_string();
    (stamp[..10].to_owned(), stamp[11..16].to_owned(), at)
}

/// "HH:MM" half an hour earlier on the clock, wrapping past midnight.
fn half_an_hour_earlier(time: &str) -> String {
    let minutes = time[..2].parse::<u32>().unwrap() * 60 + time[3..].parse::<u32>().unwrap();
    let earlier = (minutes + 24 * 60 - 30) % (24 * 60);
    format!("{:02}:{:02}", earlier / 60, earlier % 60)
}

#[test]
fn two_residents_and_a_driver_share_a_ride_in_their_browsers() {
    let app = TestApp::spawn_live();
    let base = format!("{}/", app.base);
    let axe = axe_source();
    let shots = screenshots();
    let profiles = tempfile::tempdir().unwrap();
    let desk_key = profiles.path().join("desk.key");
    covoit::keys::write_new(&desk_key, &app.operator).unwrap();
    let driver = Driver::start();
    let (desk, denise, alice, bernard) = (
        driver.session(&profiles.path().join("desk")),
        driver.session(&profiles.path().join("denise")),
        driver.session(&profiles.path().join("alice")),
        driver.session(&profiles.path().join("bernard")),
    );

    // Joining: the key is made in the browser; the page waits for the desk.
    alice.go(&base);
    alice.find("#join-name");
    check_accessibility(&alice, &axe, "welcome");
    alice.screenshot(&shots.join("1-welcome.png"));
    let alice_id = join(&alice, &base, "Alice Martin");
    alice.screenshot(&shots.join("2-waiting-for-the-desk.png"));
    check_accessibility(&alice, &axe, "waiting");
    let bernard_id = join(&bernard, &base, "Bernard Roux");
    let denise_id = join(&denise, &base, "Denise Faure");
    for id in [&alice_id, &bernard_id, &denise_id] {
        assert_eq!(app.account(id)["status"], "pending", "the page registered {id}");
    }

    // The desk: its key, approvals, meeting points, currency.
    desk.go(&format!("{base}#/guichet"));
    desk.upload("#desk-file", &desk_key);
    desk.click("#desk-form button");
    for id in [&alice_id, &bernard_id, &denise_id] {
        desk.click(&format!("button.approve[data-account=\"{id}\"]"));
        desk.wait_for_count_exactly(&format!("button.approve[data-account=\"{id}\"]"), 0);
    }
    for (id, name, lat, lon) in
        [("mairie", "Mairie d'Ayen", "45.2478", "1.3272"), ("objat", "Place d'Objat", "45.2639", "1.4092")]
    {
        desk.type_into("#point-id", id);
        desk.type_into("#point-name", name);
        desk.type_into("#point-lat", lat);
        desk.type_into("#point-lon", lon);
        desk.click("#point-form button");
        desk.wait_for_text("#status", "C'est fait");
    }
    for id in [&alice_id, &bernard_id] {
        desk.set("#issue-to", id);
        desk.type_into("#issue-amount", "20");
        desk.click("#issue-form button");
        desk.wait_for_text("#status", "C'est fait");
    }
    check_accessibility(&desk, &axe, "desk");
    desk.screenshot(&shots.join("3-desk.png"));
    assert_eq!(app.balance(&alice_id), "20.00");

    // Alice asks first; the ride appears on her page live when Denise offers it.
    // One instant gives the day and the first time, so that a window that
    // crosses midnight (the page takes "not after" as the next morning) is one.
    let (day, from, _) = soon(0);
    let (_, to, _) = soon(40);
    alice.go(&format!("{base}#/demander"));
    alice.set("#pickup-point", "mairie");
    alice.set("#dropoff-point", "objat");
    alice.set("#request-date", &day);
    alice.set("#request-from", &from);
    alice.set("#request-to", &to);
    check_accessibility(&alice, &axe, "request");
    alice.click("#request-form button[type=submit]");
    alice.wait_for_text("main", "toute seule");

    let (departure_day, departure_time, departure) = soon(2);
    denise.go(&format!("{base}#/proposer"));
    denise.set("#origin-point", "mairie");
    denise.set("#destination-point", "objat");
    denise.set("#offer-date", &departure_day);
    denise.set("#offer-time", &departure_time);
    check_accessibility(&denise, &axe, "offer");
    denise.screenshot(&shots.join("4-offer.png"));
    denise.click("#offer-form button[type=submit]");
    denise.wait_for_text("main", "Mes trajets proposés");

    alice.find("button.book");
    check_accessibility(&alice, &axe, "matches");
    alice.screenshot(&shots.join("5-live-match.png"));
    alice.click("button.book");
    alice.wait_for_text("main", "Mes réservations");
    // Denise's page, on her rides since she offered this one, shows the booking
    // without being reloaded: her live stream.
    denise.wait_for_count_exactly("button[data-type=\"ride.accept\"]", 1);
    denise.wait_for_text("#status", "vient d'arriver");

    // Bernard books the same ride; it reaches Denise's page live too.
    bernard.go(&format!("{base}#/demander"));
    bernard.set("#pickup-point", "mairie");
    bernard.set("#dropoff-point", "objat");
    bernard.set("#request-date", &day);
    // Bernard's "not after" is earlier in the day than his "not before": the
    // page reads it as the next day, so his window runs overnight and still
    // holds the ride.
    bernard.set("#request-from", &from);
    bernard.set("#request-to", &half_an_hour_earlier(&from));
    bernard.click("#request-form button[type=submit]");
    bernard.click("button.book");
    bernard.wait_for_text("main", "Mes réservations");
    let requests = app.get(&format!("/v1/accounts/{bernard_id}/rides")).1["requests"].clone();
    let window = |field: &str| {
        let stamp = covoit::core::time::Timestamp::parse(requests[0][field].as_str().unwrap()).unwrap();
        stamp.unix_ms()
    };
    assert_eq!(window("latest") - window("earliest"), (24 * 60 - 30) * 60 * 1000, "Bernard's window: {requests}");
    denise.wait_for_count_exactly("button[data-type=\"ride.accept\"]", 2);

    // Denise accepts both.
    for remaining in [1, 0] {
        denise.click("button[data-type=\"ride.accept\"]");
        denise.wait_for_count_exactly("button[data-type=\"ride.accept\"]", remaining);
    }
    denise.wait_for_count_exactly("button[data-type=\"ride.complete\"]", 2);
    check_accessibility(&denise, &axe, "rides");
    denise.screenshot(&shots.join("6-driver-rides.png"));

    // The ride: after the pickup time the driver says it happened.
    let wait = departure.saturating_sub(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()) + 2;
    std::thread::sleep(Duration::from_secs(wait));
    denise.go(&format!("{base}#/trajets"));
    for remaining in [1, 0] {
        denise.click("button[data-type=\"ride.complete\"]");
        denise.wait_for_count_exactly("button[data-type=\"ride.complete\"]", remaining);
    }

    // Both passengers confirm, which pays Denise.
    for passenger in [&alice, &bernard] {
        passenger.go(&format!("{base}#/trajets"));
        passenger.click("button[data-type=\"ride.confirm\"]");
        passenger.wait_for_text(".booking", "payée");
    }

    // The balances the pages show are the ledger's.
    for (session, id) in [(&alice, &alice_id), (&bernard, &bernard_id), (&denise, &denise_id)] {
        session.go(&format!("{base}#/compte"));
        let shown = shown_amount(&session.wait_for_text("#balance", "Y'ACA"));
        assert_eq!(shown, app.balance(id), "the page shows the ledger's balance for {id}");
    }
    let fare =
        app.get(&format!("/v1/accounts/{denise_id}/postings")).1["postings"][0]["amount"].as_str().unwrap().to_owned();
    assert_eq!(app.balance(&denise_id), format!("{:.2}", 2.0 * fare.parse::<f64>().unwrap()));
    assert_eq!(app.balance(&alice_id), format!("{:.2}", 20.0 - fare.parse::<f64>().unwrap()));
    check_accessibility(&alice, &axe, "account");
    alice.screenshot(&shots.join("7-account.png"));

    // English is one click away.
    alice.set("#language", "en");
    alice.script("document.getElementById('language').dispatchEvent(new Event('change'))", json!([]));
    alice.wait_for_text("nav", "My account");
    check_accessibility(&alice, &axe, "account in English");
}
