//! A small W3C WebDriver client over HTTP, enough to drive Chromium through
//! chromedriver: sessions, navigation, elements, clicks, typing, file uploads,
//! scripts and screenshots.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The key W3C WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for something on the page lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// A chromedriver process on a free port.
pub struct Driver {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Driver {
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()))
            .arg(format!("--port={port}"))
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (Debian package chromium-driver)");
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build(),
        );
        let driver = Driver { child, base: format!("http://127.0.0.1:{port}"), agent };
        let started = Instant::now();
        while driver.agent.get(&format!("{}/status", driver.base)).call().is_err() {
            assert!(started.elapsed() < WAIT, "chromedriver did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }

    /// A new browser with its own profile (its own IndexedDB: its own keys).
    pub fn session(&self, profile: &std::path::Path) -> Session<'_> {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1100,1400",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply = self.call("POST", "/session", Some(capabilities));
        let id = reply["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}")).to_owned();
        Session { driver: self, id }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut response = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .header("content-type", "application/json")
                .send(serde_json::to_vec(&body.unwrap_or(json!({}))).unwrap().as_slice()),
        }
        .unwrap_or_else(|error| panic!("chromedriver {method} {path}: {error}"));
        let reply: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
        reply["value"].clone()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window.
pub struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver.call(method, &format!("/session/{}{path}", self.id), body)
    }

    /// Loads a page afresh (through a blank page, so that a change of hash alone
    /// still loads it).
    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": "about:blank"})));
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    /// The first element matching a CSS selector, waiting for it to appear.
    pub fn find(&self, selector: &str) -> String {
        let started = Instant::now();
        loop {
            let reply = self.call("POST", "/element", Some(json!({"using": "css selector", "value": selector})));
            if let Some(id) = reply[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(started.elapsed() < WAIT, "no element {selector} on the page: {}", self.text("main"));
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn count(&self, selector: &str) -> usize {
        let reply = self.call("POST", "/elements", Some(json!({"using": "css selector", "value": selector})));
        reply.as_array().map_or(0, Vec::len)
    }

    pub fn click(&self, selector: &str) {
        let element = self.find(selector);
        self.call("POST", &format!("/element/{element}/click"), Some(json!({})));
    }

    /// Types into a field (a file input takes a file's path).
    pub fn type_into(&self, selector: &str, text: &str) {
        let element = self.find(selector);
        self.call("POST", &format!("/element/{element}/clear"), Some(json!({})));
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": text})));
    }

    pub fn upload(&self, selector: &str, path: &std::path::Path) {
        let element = self.find(selector);
        self.call("POST", &format!("/element/{element}/value"), Some(json!({"text": path.display().to_string()})));
    }

    /// Sets a field's value as a script (dates, times and selects, whose typing depends
    /// on the browser's locale).
    pub fn set(&self, selector: &str, value: &str) {
        self.find(selector);
        self.script("document.querySelector(arguments[0]).value = arguments[1];", json!([selector, value]));
    }

    pub fn text(&self, selector: &str) -> String {
        let reply = self.call("POST", "/element", Some(json!({"using": "css selector", "value": selector})));
        let Some(element) = reply[ELEMENT].as_str() else { return String::new() };
        self.call("GET", &format!("/element/{element}/text"), None).as_str().unwrap_or_default().to_owned()
    }

    /// Waits until an element's text contains `wanted`.
    pub fn wait_for_text(&self, selector: &str, wanted: &str) -> String {
        let started = Instant::now();
        loop {
            let text = self.text(selector);
            if text.contains(wanted) {
                return text;
            }
            assert!(started.elapsed() < WAIT, "{selector} never said \"{wanted}\"; it says \"{text}\"");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn wait_for_count_exactly(&self, selector: &str, wanted: usize) {
        let started = Instant::now();
        while self.count(selector) != wanted {
            assert!(started.elapsed() < WAIT, "not exactly {wanted} of {selector}: {}", self.text("main"));
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    pub fn script(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    pub fn async_script(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/async", Some(json!({"script": script, "args": args})))
    }

    pub fn screenshot(&self, path: &std::path::Path) {
        let png = self.call("GET", "/screenshot", None);
        let bytes = covoit::core::protocol::base64_decode(png.as_str().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.call("DELETE", "", None);
    }
}
