//! What the browser tests of the live page share (issue 21): a tiny
//! HTTP/1.1 client on a std `TcpStream` (the page's API and WebDriver are
//! both spoken with it), a `chromedriver` on a free port, and decoders for
//! what comes back (chunked bodies, base64 screenshots, tar archives). Used
//! by the loopback tests (`tests/cli/dashboard.rs`) and the three-host one
//! (`tests/netns/dashboard.rs`).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bytes as text (lossy).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One HTTP exchange: status, head (lowercase) and body.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends `method path` with `headers` (and `body`) and reads the whole
/// reply (the connection is closed after it).
pub fn send(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect to the page");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut request = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        request.push_str(&format!("host: {addr}\r\n"));
    }
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if !body.is_empty() {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let raw = text(&read_reply(&mut stream));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {raw:?}"));
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

/// Reads one reply: up to its declared length, the end of its chunks, or
/// the end of the connection (a server may keep it open despite
/// `connection: close`).
pub fn read_reply(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = text(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok());
            let body = &raw[end + 4..];
            let complete = match length {
                Some(n) => body.len() >= n,
                None => head.contains("transfer-encoding: chunked") && body.ends_with(b"0\r\n\r\n"),
            };
            if complete {
                return raw;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// A chromedriver on a free port, stopped when dropped.
pub struct Driver {
    child: Child,
    addr: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub fn start() -> Option<Driver> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let driver = Driver {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(&driver.addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(driver)
    }

    /// A WebDriver command: its `value`.
    pub fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let r = send(
            &self.addr,
            method,
            path,
            &["content-type: application/json"],
            &body,
        );
        let body = if r.head.contains("transfer-encoding: chunked") {
            dechunk(&r.body)
        } else {
            r.body.clone()
        };
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(r.status, 200, "{method} {path}: {v}");
        v["value"].clone()
    }
}

pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// Decodes standard base64 (a screenshot).
pub fn base64(text: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let sextets: Vec<u8> = text.bytes().filter_map(digit).collect();
    let mut out = Vec::with_capacity(sextets.len() * 3 / 4);
    for chunk in sextets.chunks(4) {
        let mut n = 0u32;
        for (i, s) in chunk.iter().enumerate() {
            n |= u32::from(*s) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Sends `method path` with a byte body; answers status, head (lowercase)
/// and body (de-chunked).
pub fn send_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect to the page");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\nhost: {addr}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    // A refusal may come (and the connection close) before all is sent.
    let _ = stream.write_all(body);
    let raw = read_reply(&mut stream);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no reply head in {:?}", text(&raw)));
    let head = text(&raw[..end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = raw[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(text(&rest[..eol]).trim(), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    (status, head, body)
}

/// The entries of a tar archive: path and bytes.
pub fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("an entry");
        let mut body = Vec::new();
        entry.read_to_end(&mut body).expect("its bytes");
        entries.push((entry.path().expect("a path").display().to_string(), body));
    }
    entries
}

/// A headless chromium session of a [`Driver`], ended when dropped.
pub struct Session<'a> {
    driver: &'a Driver,
    path: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    /// A headless chromium of `width`×`height`.
    pub fn session(&self, width: u32, height: u32) -> Session<'_> {
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = serde_json::json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "args": ["--headless", "--no-sandbox", "--disable-gpu",
                     format!("--window-size={width},{height}"),
                     format!("--user-data-dir={}", profile.path().display())],
        }}}});
        let id = self.call("POST", "/session", &caps)["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        Session {
            driver: self,
            path: format!("/session/{id}"),
            _profile: profile,
        }
    }
}

impl Session<'_> {
    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.driver.call(
            "POST",
            &format!("{}/url", self.path),
            &serde_json::json!({ "url": url }),
        );
    }

    /// Runs `js` in the page: its return value.
    pub fn script(&self, js: &str) -> Value {
        self.driver.call(
            "POST",
            &format!("{}/execute/sync", self.path),
            &serde_json::json!({ "script": js, "args": [] }),
        )
    }

    /// Runs `js`, which calls `arguments[0]` with its answer when done.
    pub fn script_async(&self, js: &str) -> Value {
        self.driver.call(
            "POST",
            &format!("{}/execute/async", self.path),
            &serde_json::json!({ "script": js, "args": [] }),
        )
    }

    /// The element `css` selects: its WebDriver id.
    pub fn find(&self, css: &str) -> String {
        let found = self.driver.call(
            "POST",
            &format!("{}/element", self.path),
            &serde_json::json!({ "using": "css selector", "value": css }),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    /// Types `text` into element `css` (a file input takes a path).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.driver.call(
            "POST",
            &format!("{}/element/{id}/value", self.path),
            &serde_json::json!({ "text": text }),
        );
    }

    /// Clicks element `css`.
    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.driver.call(
            "POST",
            &format!("{}/element/{id}/click", self.path),
            &serde_json::json!({}),
        );
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let png = base64(
            self.driver
                .call("GET", &format!("{}/screenshot", self.path), &Value::Null)
                .as_str()
                .expect("png"),
        );
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        png
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // After a failure the driver goes with its process instead (a
        // second panic here would abort the test binary).
        if !std::thread::panicking() {
            self.driver.call("DELETE", &self.path, &Value::Null);
        }
    }
}
