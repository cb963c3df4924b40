//! The live page's HTTP API (issue 21) against real daemons, through a
//! tiny HTTP/1.1 client on a std `TcpStream`: refusals first (no token,
//! no CSRF proof, oversize bodies, unknown paths, too many streams), then
//! the API answering what the CLI answers and the push stream following a
//! job.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Daemon, Sandbox, assert_code, text, wait_until};

/// One HTTP exchange: status, head (lowercase) and body.
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends `method path` with `headers` (and `body`) and reads the whole
/// reply (the connection is closed after it).
fn send(addr: &str, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
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
fn read_reply(stream: &mut TcpStream) -> Vec<u8> {
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

fn get(addr: &str, path: &str) -> Reply {
    send(addr, "GET", path, &[], "")
}

/// An open event stream: its status line, then its lines as they come.
struct Events {
    status: u16,
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(addr: &str, headers: &[&str]) -> Events {
        let mut stream = TcpStream::connect(addr).expect("connect to the page");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut request = format!("GET /api/events HTTP/1.1\r\nhost: {addr}\r\n");
        for h in headers {
            request.push_str(h);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Events { status, reader }
    }

    /// The next snapshot's JSON (chunk sizes and heartbeats skipped).
    fn next_snapshot(&mut self) -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.reader.read_line(&mut line).expect("an event");
            assert!(n > 0, "the stream ended");
            if let Some(data) = line.strip_prefix("data: ") {
                return serde_json::from_str(data.trim()).expect("snapshot JSON");
            }
        }
    }
}

/// `corral ARGS --json` of data dir `data`, parsed.
fn cli_json(sb: &Sandbox, data: &str, args: &[&str]) -> Value {
    let mut full = vec!["--data-dir", data];
    full.extend(args);
    full.push("--json");
    let out = sb.corral(&full);
    assert_code(&out, 0);
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// A daemon for data dir `a` (inited as `solo`) with its page on `http`:
/// the daemon and the page's address as it reports it.
fn solo(sb: &Sandbox, http: &str) -> (Daemon, String) {
    assert_code(
        &sb.corral(&["--data-dir", "a", "init", "--name", "solo"]),
        0,
    );
    let daemon = Daemon(sb.daemon("a", &["--share", "always"], &["--http", http], &[]));
    let addr = sb.status("a")["http"]
        .as_str()
        .expect("the status names the page's address")
        .to_string();
    (daemon, addr)
}

#[test]
fn beyond_loopback_every_request_needs_the_token_and_actions_their_proof() {
    let sb = Sandbox::new();
    let (_daemon, bound) = solo(&sb, "0.0.0.0:0");
    let port = bound.rsplit_once(':').expect("a port").1;
    let addr = format!("127.0.0.1:{port}");
    let token_file = sb.path("a/http.token");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token is private");
    }
    let token = std::fs::read_to_string(&token_file)
        .expect("token")
        .trim()
        .to_string();

    // `corral dashboard --url` hands out the token.
    let out = sb.corral(&["--data-dir", "a", "dashboard", "--url"]);
    assert_code(&out, 0);
    assert_eq!(
        text(&out.stdout).trim(),
        format!("http://127.0.0.1:{port}/?token={token}")
    );

    // No token, a wrong one: 401 with a JSON reason, for the page and the API.
    for path in ["/", "/api/status", "/api/events", "/nowhere"] {
        let r = get(&addr, path);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert_eq!(r.json()["code"], "unauthorized");
    }
    assert_eq!(get(&addr, "/?token=0123").status, 401);
    let bearer = format!("authorization: Bearer {token}");
    assert_eq!(
        send(&addr, "GET", "/api/status", &[&bearer], "").status,
        200
    );

    // The token, once: a cookie (HttpOnly, SameSite=Strict, not the token)
    // and back to `/` without it.
    let login = get(&addr, &format!("/?token={token}"));
    assert_eq!(login.status, 303, "{}", login.body);
    assert!(login.head.contains("location: /\r\n"), "{}", login.head);
    let cookie_line = login
        .head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .expect("a cookie")
        .to_string();
    assert!(cookie_line.contains("httponly") && cookie_line.contains("samesite=strict"));
    assert!(!cookie_line.contains(&token), "the cookie is not the token");
    // (the head was lowercased; the cookie's value is hex either way)
    let cookie = format!("cookie: {}", cookie_line.split(';').next().expect("value"));
    let page = send(&addr, "GET", "/", &[&cookie], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("EventSource"), "the page is served");
    assert!(
        !page.body.contains(&token),
        "the token is never in the page"
    );
    assert!(page.head.contains("x-frame-options: deny"));

    // Actions: the token alone is not enough.
    let cancel = "/api/jobs/00000000000000000000000000000000/cancel";
    let r = send(&addr, "POST", cancel, &[&cookie], "");
    assert_eq!(r.status, 403, "{}", r.body);
    let r = send(
        &addr,
        "POST",
        cancel,
        &[&cookie, "x-corral-csrf: 1", "origin: http://evil.example"],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // With the proofs: an unknown job is a 404, a malformed id a 400.
    let r = send(&addr, "POST", cancel, &[&cookie, "x-corral-csrf: 1"], "");
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["code"], "not_found");
    let r = send(
        &addr,
        "POST",
        "/api/jobs/nope/cancel",
        &[&cookie, "x-corral-csrf: 1"],
        "",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // Oversize bodies: by their declared length, or as they arrive.
    let r = send(
        &addr,
        "POST",
        cancel,
        &[&cookie, "x-corral-csrf: 1", "content-length: 100000000"],
        "",
    );
    assert_eq!(r.status, 413, "{}", r.body);
    let big = "x".repeat(100 * 1024);
    let r = send(&addr, "POST", cancel, &[&cookie, "x-corral-csrf: 1"], &big);
    assert_eq!(r.status, 413, "{}", r.body);
    // Unknown paths and methods.
    let r = send(&addr, "GET", "/api/nothing", &[&cookie], "");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
    assert_eq!(
        send(&addr, "DELETE", "/api/status", &[&cookie], "").status,
        405
    );
    // Garbage on the wire gets a 400 from the parser, and the daemon goes on.
    let mut raw = TcpStream::connect(&addr).expect("connect");
    raw.write_all(b"\x00\x01 nonsense\r\n\r\n").expect("send");
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    assert_eq!(cli_json(&sb, "a", &["status"])["name"], "solo");
}

#[test]
fn on_loopback_the_page_answers_only_loopback_host_names() {
    let sb = Sandbox::new();
    let (_daemon, addr) = solo(&sb, "127.0.0.1:0");
    assert!(!sb.path("a/http.token").exists(), "no token on loopback");
    let out = sb.corral(&["--data-dir", "a", "dashboard", "--url"]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout).trim(), format!("http://{addr}/"));
    assert_eq!(get(&addr, "/api/status").status, 200);
    let port = addr.rsplit_once(':').expect("port").1;
    let localhost = format!("host: localhost:{port}");
    assert_eq!(send(&addr, "GET", "/", &[&localhost], "").status, 200);
    // A name rebound to 127.0.0.1 by another site.
    let r = send(&addr, "GET", "/api/status", &["host: evil.example"], "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        send(&addr, "POST", "/api/jobs/x/cancel", &[], "").status,
        403
    );
}

#[test]
fn a_taken_port_leaves_the_daemon_running_without_its_page() {
    let sb = Sandbox::new();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = holder.local_addr().expect("addr").to_string();
    assert_code(
        &sb.corral(&["--data-dir", "a", "init", "--name", "solo"]),
        0,
    );
    let _daemon = Daemon(sb.daemon("a", &["--share", "always"], &["--http", &taken], &[]));
    let status = cli_json(&sb, "a", &["status"]);
    assert_eq!(status["name"], "solo");
    assert_eq!(status["http"], Value::Null);
    let out = sb.corral(&["--data-dir", "a", "dashboard", "--url"]);
    assert_code(&out, 1);
    assert!(
        text(&out.stderr).contains("no page"),
        "{}",
        text(&out.stderr)
    );
    // --no-http: no page either.
    let sb = Sandbox::new();
    assert_code(
        &sb.corral(&["--data-dir", "a", "init", "--name", "quiet"]),
        0,
    );
    let _quiet = Daemon(sb.daemon("a", &["--share", "always"], &["--no-http"], &[]));
    assert_eq!(cli_json(&sb, "a", &["status"])["http"], Value::Null);
}

#[test]
fn event_streams_are_bounded_and_the_daemon_keeps_answering() {
    let sb = Sandbox::new();
    let (_daemon, addr) = solo(&sb, "127.0.0.1:0");
    let mut open = Vec::new();
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..100 {
        let events = Events::open(&addr, &[]);
        match events.status {
            200 => ok += 1,
            503 => busy += 1,
            other => panic!("a stream got {other}"),
        }
        if events.status == 200 {
            open.push(events);
        }
    }
    assert!(ok <= 16, "{ok} streams open");
    assert_eq!(ok + busy, 100);
    assert!(ok >= 1);
    // Streams that are open still get snapshots; the daemon answers.
    assert_eq!(open[0].next_snapshot()["status"]["name"], "solo");
    assert_eq!(cli_json(&sb, "a", &["status"])["name"], "solo");
    assert_eq!(get(&addr, "/api/status").status, 200);
    // Once pages go, streams can be opened again.
    drop(open);
    wait_until(
        "no stream could be opened again",
        Duration::from_secs(10),
        || Events::open(&addr, &[]).status == 200,
    );
}

#[test]
fn the_api_answers_what_the_cli_does_and_the_stream_follows_a_job() {
    let sb = Sandbox::new();
    sb.mesh_of_two("laptop", "desk");
    let _a = Daemon(sb.daemon("a", &["--share", "never"], &["--http", "127.0.0.1:0"], &[]));
    let peer = sb.address("a");
    let _b: Daemon = Daemon(start_desk(&sb, &peer));
    wait_until(
        "the laptop did not see the desk",
        Duration::from_secs(30),
        || cli_json(&sb, "a", &["peers"])[0]["name"] == "desk",
    );
    let addr = sb.status("a")["http"].as_str().expect("page").to_string();

    // Status: the same document, field by field (counters may not move
    // while nothing runs).
    let api = get(&addr, "/api/status").json();
    let cli = cli_json(&sb, "a", &["status"]);
    assert_eq!(api, cli);
    // Peers: the same devices, names and capacities (ages move).
    let strip = |mut v: Value| {
        for p in v.as_array_mut().into_iter().flatten() {
            if let Some(p) = p.as_object_mut() {
                for k in ["age_ms", "last_seen_ms", "rtt_ms", "paths"] {
                    p.remove(k);
                }
            }
        }
        v
    };
    assert_eq!(
        strip(get(&addr, "/api/peers").json()),
        strip(cli_json(&sb, "a", &["peers"]))
    );

    // The stream's first snapshot, then one that shows a submitted job.
    let mut events = Events::open(&addr, &[]);
    assert_eq!(events.status, 200);
    let snap = events.next_snapshot();
    assert_eq!(snap["status"]["name"], "laptop");
    assert_eq!(snap["peers"][0]["name"], "desk");
    assert!(snap["now_ms"].as_u64().is_some());
    let id = sb.detach(&["--tasks", "2", "--", "sleep-ms", "200"]);
    let started = Instant::now();
    let mut seen_done = false;
    while started.elapsed() < Duration::from_secs(60) {
        let snap = events.next_snapshot();
        let job = snap["jobs"]
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["id"] == id.as_str()).cloned());
        if let Some(job) = job
            && job["state"] == "completed"
        {
            assert_eq!(job["tasks_done"], 2, "{job}");
            seen_done = true;
            break;
        }
    }
    assert!(seen_done, "the stream never showed the job completed");

    // Jobs and one job: as `corral jobs` and `corral job ID` show them.
    assert_eq!(
        get(&addr, "/api/jobs").json(),
        cli_json(&sb, "a", &["jobs"])
    );
    let job = get(&addr, &format!("/api/jobs/{id}")).json();
    assert_eq!(job, cli_json(&sb, "a", &["job", &id]));
    assert_eq!(job["tasks"][0]["peer"], "desk");
    let r = get(&addr, "/api/jobs/ffffffffffffffffffffffffffffffff");
    assert_eq!(r.status, 404, "{}", r.body);
    // Cancelling a finished job is refused with the daemon's reason.
    let r = send(
        &addr,
        "POST",
        &format!("/api/jobs/{id}/cancel"),
        &["x-corral-csrf: 1"],
        "",
    );
    assert!(
        r.status == 409 || r.status == 200,
        "{} {}",
        r.status,
        r.body
    );
}

/// Data dir `b` (the desk, one slot, sharing always) up, dialling `peer`.
fn start_desk(sb: &Sandbox, peer: &str) -> Child {
    sb.daemon(
        "b",
        &["--share", "always"],
        &["--slots", "1", "--no-http", "--peer", peer],
        &[],
    )
}

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
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
    fn start() -> Option<Driver> {
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
        wait_until(
            "chromedriver did not start",
            Duration::from_secs(20),
            || TcpStream::connect(&driver.addr).is_ok(),
        );
        Some(driver)
    }

    /// A WebDriver command: its `value`.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
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

fn dechunk(body: &str) -> String {
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
fn base64(text: &str) -> Vec<u8> {
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

/// The page in a real browser (Debian's `chromium`, driven over WebDriver
/// by `chromedriver`): its script connects to the event stream and draws
/// this device and a finished job; a click on the job shows its record.
/// Skips loudly without them unless `CORRAL_REQUIRE_BROWSER` is set.
/// Writes a screenshot to the target dir's test temp dir.
#[test]
fn a_headless_browser_draws_the_devices_and_the_jobs() {
    let Some(driver) = Driver::start() else {
        assert!(
            std::env::var_os("CORRAL_REQUIRE_BROWSER").is_none(),
            "CORRAL_REQUIRE_BROWSER is set but chromedriver is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED: no chromedriver here (apt-get install chromium chromium-driver) — \
             the page was not drawn"
        );
        return;
    };
    let sb = Sandbox::new();
    let (_daemon, addr) = solo(&sb, "127.0.0.1:0");
    let tk = crate::module("testkit");
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        &tk,
        "--detach",
        "--tasks",
        "2",
        "--",
        "sleep-ms",
        "50",
    ]);
    assert_code(&out, 0);
    let id = text(&out.stdout).trim().to_string();
    wait_until("the job did not complete", Duration::from_secs(60), || {
        sb.job(&id)["state"] == "completed"
    });

    let profile = tempfile::tempdir().expect("profile dir");
    let caps = serde_json::json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,700",
                 format!("--user-data-dir={}", profile.path().display())],
    }}}});
    let session = driver.call("POST", "/session", &caps)["sessionId"]
        .as_str()
        .expect("a session")
        .to_string();
    let s = format!("/session/{session}");
    driver.call(
        "POST",
        &format!("{s}/url"),
        &serde_json::json!({ "url": format!("http://{addr}/") }),
    );
    let script = |js: &str| {
        driver.call(
            "POST",
            &format!("{s}/execute/sync"),
            &serde_json::json!({ "script": js, "args": [] }),
        )
    };
    let read = || {
        script(
            "return ['devices', 'jobs', 'conn', 'detail']
               .map((id) => document.getElementById(id).innerText).join('\\n')",
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    };
    wait_until(
        "the page did not draw the device and the job",
        Duration::from_secs(30),
        || {
            let page = read();
            page.contains("solo (this device)") && page.contains(&id[..12]) && page.contains("live")
        },
    );
    let page = read();
    assert!(page.contains("completed") && page.contains("2/2"), "{page}");
    // A click on the job: its record, read through the API.
    script("document.querySelector('#jobs tr.job').click(); return null");
    wait_until(
        "the job's record was not shown",
        Duration::from_secs(30),
        || read().contains(&format!("job {id}")),
    );
    let png = base64(
        driver
            .call("GET", &format!("{s}/screenshot"), &Value::Null)
            .as_str()
            .expect("png"),
    );
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&shot, png).expect("write the screenshot");
    eprintln!("screenshot of the page: {}", shot.display());
    driver.call("DELETE", &s, &Value::Null);
}

/// `corral demo` prints its page's URL and, without `--no-wait`, keeps the
/// mesh and the page up after the picture until a line arrives on stdin;
/// then the devices leave and the page is gone.
#[test]
fn the_demo_keeps_its_mesh_and_page_up_until_enter() {
    let sb = Sandbox::new();
    // Killed if the test fails (the test-only daemons then go with the
    // sandbox's directory).
    let mut demo = Daemon(
        sb.command(&["demo", "--out", "demo", "--tasks", "2"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("corral demo starts"),
    );
    let child = &mut demo.0;
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut page = None;
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).expect("demo output");
        assert!(n > 0, "the demo ended before its picture");
        if let Some(url) = line.trim().strip_prefix("live page: ") {
            page = Some(
                url.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string(),
            );
        }
        if line.starts_with("picture: ") {
            break;
        }
    }
    let addr = page.expect("the demo printed its page's URL before the picture");
    // The picture is written; the mesh is still up and the page shows it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().expect("poll").is_none(), "the demo waits");
    let peers = get(&addr, "/api/peers").json();
    assert_eq!(peers.as_array().map(Vec::len), Some(2), "{peers}");
    // Enter: the mesh stops and the demo exits.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("Enter");
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("poll") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the demo did not stop after Enter"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code}");
    assert!(TcpStream::connect(&addr).is_err(), "the page is gone");
}
