//! `corral serve` (issue 22) against a real daemon on loopback, through
//! the tiny HTTP client of the page's tests: the markdown example renders
//! what is posted; hostile requests first get their status — an oversize
//! body 413 with nothing run, an unknown route 404, a trapping or
//! runaway module 500 with nothing of why in the page, a module that
//! writes no CGI response 502, overload 503 with Retry-After — and the
//! server answers the next request after each. A newer version published
//! while it runs is taken up. Bad flags exit 2.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::web::{Reply, read_reply, send};
use crate::{Daemon, Sandbox, assert_code, module, text, wait_until};

/// A running `corral serve`: its address and its stderr (the access log).
struct Front {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Front {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Jobs submitted for requests so far (the server's debug log).
    fn submitted(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("a request's job is submitted"))
            .count()
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        send(&self.addr, "POST", path, &[], body)
    }

    fn get(&self, path: &str) -> Reply {
        send(&self.addr, "GET", path, &[], "")
    }
}

/// Starts `corral serve` on data dir `a` with `args`, on a free loopback
/// port; returns once it prints its URL.
fn front(sb: &Sandbox, args: &[&str]) -> Front {
    let log = sb.path("serve.log");
    let mut child = sb
        .command(&["--data-dir", "a", "serve", "--listen", "127.0.0.1:0"])
        .args(args)
        // Each request's job in the log, as submitted.
        .env("RUST_LOG", "corral_node::serve=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("corral serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the URL");
    let addr = line
        .trim()
        .strip_prefix("http://")
        .map(|a| a.trim_end_matches('/').to_string())
        .unwrap_or_else(|| {
            panic!(
                "no URL from corral serve: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
    Front { child, addr, log }
}

/// A daemon sharing its own slots, with the markdown example, the test
/// kit and primes (which writes no CGI response) published by name.
fn published(sb: &Sandbox) -> Daemon {
    assert_code(&sb.corral(&["--data-dir", "a", "init", "--name", "web"]), 0);
    let daemon = Daemon(sb.daemon("a", &["--share", "always"], &["--slots", "2"], &[]));
    for (reference, name) in [
        ("markdown@1.0.0", "markdown"),
        ("testkit@1.0.0", "testkit"),
        ("primes@1.0.0", "primes"),
    ] {
        assert_code(
            &sb.corral(&["--data-dir", "a", "publish", reference, &module(name)]),
            0,
        );
    }
    daemon
}

fn jobs(sb: &Sandbox) -> usize {
    let out = sb.corral(&["--data-dir", "a", "jobs", "--json"]);
    assert_code(&out, 0);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("jobs --json")
        .as_array()
        .map_or(0, Vec::len)
}

#[track_caller]
fn still_serves(front: &Front) {
    let r = front.post("/md", "*still* here\n");
    assert_eq!(r.status, 200, "{}\n{}", r.body, front.log());
    assert!(r.body.contains("<em>still</em>"), "{}", r.body);
}

#[test]
fn hostile_requests_get_their_status_and_the_server_stays_up() {
    let sb = Sandbox::new();
    let _daemon = published(&sb);
    let front = front(
        &sb,
        &[
            "--route",
            "/md=markdown@1",
            "--route",
            "/tk/*=testkit@^1",
            "--route",
            "/primes=primes",
            "--max-body",
            "4KiB",
            "--timeout",
            "3s",
            "--memory",
            "64MiB",
            "--concurrency",
            "1",
        ],
    );

    // An oversize body: 413 before anything runs (no job is submitted).
    still_serves(&front);
    let before = front.submitted();
    assert!(before > 0, "the log shows submissions: {}", front.log());
    let r = front.post("/md", &"#".repeat(5000));
    assert_eq!(r.status, 413, "{}", r.body);
    // Declared small, sent big: the body is cut at the limit, still 413.
    let mut stream = TcpStream::connect(&front.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut raw =
        b"POST /md HTTP/1.1\r\nhost: x\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..3 {
        raw.extend(b"800\r\n");
        raw.extend(std::iter::repeat_n(b'a', 0x800));
        raw.extend(b"\r\n");
    }
    raw.extend(b"0\r\n\r\n");
    stream.write_all(&raw).expect("send");
    let reply = text(&read_reply(&mut stream));
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert_eq!(
        front.submitted(),
        before,
        "nothing ran for an oversize body"
    );
    still_serves(&front);

    // Unknown routes: 404 (an exact route serves only its path).
    for path in ["/nope", "/md/extra", "/tkx", "/"] {
        let r = front.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }

    // A trap, a runaway loop and a memory hog: 500, the reason only in the
    // log.
    for (query, reason) in [
        ("trap", "trap"),
        ("loop", "timeout"),
        ("alloc", "memory_limit"),
    ] {
        let started = Instant::now();
        let r = front.get(&format!("/tk/x?{query}"));
        assert_eq!(r.status, 500, "{query}: {}\n{}", r.body, front.log());
        assert_eq!(r.body, "500 Internal Server Error\n", "{query}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{query} took {:?}",
            started.elapsed()
        );
        let log = front.log();
        assert!(
            log.lines()
                .any(|l| l.contains("the task stopped") && l.contains(reason)),
            "{query}: no {reason} in the log:\n{log}"
        );
        still_serves(&front);
    }

    // A module whose stdout is no CGI response: 502, why in the log.
    let r = front.get("/primes");
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        front.log().contains("not a CGI response"),
        "{}",
        front.log()
    );
    still_serves(&front);

    // Overload: one request in flight at most; a second meanwhile gets 503
    // with Retry-After, and the first still gets its answer.
    let addr = front.addr.clone();
    let slow = std::thread::spawn(move || send(&addr, "GET", "/tk/?nap+2500", &[], ""));
    std::thread::sleep(Duration::from_millis(700));
    let r = front.post("/md", "# hi\n");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.head.contains("retry-after: 1"), "{}", r.head);
    let r = slow.join().expect("the slow request");
    assert_eq!(r.status, 200, "{}\n{}", r.body, front.log());
    still_serves(&front);

    // One access-log line per request: route, method, path, status,
    // device, time.
    let log = front.log();
    assert!(
        log.lines()
            .any(|l| l.starts_with("corral serve: /md POST /md 413 device=- ")),
        "{log}"
    );
    assert!(
        log.lines().any(
            |l| l.starts_with("corral serve: /md POST /md 200 device=web ") && l.ends_with("ms")
        ),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("corral serve: - GET /nope 404 device=-")),
        "{log}"
    );
    // Every request's job was forgotten once answered, those that
    // trapped or hit a limit too.
    assert!(front.submitted() >= 10, "{log}");
    wait_until(
        "request jobs left in corral jobs",
        Duration::from_secs(10),
        || jobs(&sb) == 0,
    );
}

#[test]
fn each_route_keeps_its_own_limits_over_the_flags() {
    let sb = Sandbox::new();
    let _daemon = published(&sb);
    let front = front(
        &sb,
        &[
            "--route",
            "/md=markdown@1",
            "--route",
            "/long=markdown@1;max-body=16KiB",
            "--route",
            "/tk/*=testkit@^1",
            "--route",
            "/quick/*=testkit@^1; timeout=1s",
            "--max-body",
            "4KiB",
            "--timeout",
            "10s",
        ],
    );
    // The flags' body limit refuses what the route's own takes.
    let document = format!("*long* {}\n", "x".repeat(5000));
    let r = front.post("/md", &document);
    assert_eq!(r.status, 413, "{}", r.body);
    let r = front.post("/long", &document);
    assert_eq!(r.status, 200, "{}\n{}", r.body, front.log());
    assert!(r.body.contains("<em>long</em>"), "{}", r.body);
    let r = front.post("/long", &"#".repeat(17 * 1024));
    assert_eq!(r.status, 413, "over the route's own limit: {}", r.body);

    // The route's own time limit stops a nap the flags' would let finish.
    let r = front.get("/quick/?nap+2500");
    assert_eq!(r.status, 500, "{}\n{}", r.body, front.log());
    assert!(
        front
            .log()
            .lines()
            .any(|l| l.contains("the task stopped") && l.contains("timeout")),
        "{}",
        front.log()
    );
    let r = front.get("/tk/?nap+2500");
    assert_eq!(r.status, 200, "{}\n{}", r.body, front.log());
    still_serves(&front);
}

#[test]
fn markdown_renders_and_the_module_sees_a_cgi_request() {
    let sb = Sandbox::new();
    let _daemon = published(&sb);
    let front = front(
        &sb,
        &[
            "--route",
            "/md=markdown@1",
            "--route",
            "/tk/*=testkit",
            "--refresh",
            "300ms",
        ],
    );

    let r = front.post("/md", "# Hello\n\nfrom *the mesh*, <b>raw</b>\n");
    assert_eq!(r.status, 200, "{}\n{}", r.body, front.log());
    assert!(
        r.head.contains("content-type: text/html; charset=utf-8"),
        "{}",
        r.head
    );
    assert!(
        r.body.contains("<h1>Hello</h1>") && r.body.contains("<em>the mesh</em>"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("&lt;b&gt;raw"),
        "raw HTML is text: {}",
        r.body
    );
    // As `curl --data-binary @README.md` sends it (a form's type, but
    // Markdown), and as the page's form sends it.
    let form = ["content-type: application/x-www-form-urlencoded"];
    let r = send(&front.addr, "POST", "/md", &form, "## As curl sends it\n");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "<h2>As curl sends it</h2>\n");
    let r = send(
        &front.addr,
        "POST",
        "/md",
        &form,
        "markdown=%23+From+the+form",
    );
    assert_eq!(r.body, "<h1>From the form</h1>\n");
    let r = front.get("/md");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<form"), "{}", r.body);
    let r = send(&front.addr, "DELETE", "/md", &[], "");
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(r.head.contains("allow: get, head, post"), "{}", r.head);
    // Not UTF-8: the module's own 400.
    let mut stream = TcpStream::connect(&front.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
        .write_all(b"POST /md HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 3\r\n\r\n\xff\xfe\xfd")
        .expect("send");
    let reply = text(&read_reply(&mut stream));
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");

    // The environment: CGI variables, headers as HTTP_*, never the
    // client's credentials.
    let r = send(
        &front.addr,
        "POST",
        "/tk/a%20b/c?env",
        &[
            "x-trace: t1",
            "authorization: Bearer s3cret",
            "cookie: session=s3cret",
            "proxy: http://evil",
            "content-type: text/plain",
        ],
        "body!",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.body, front.log());
    for line in [
        "GATEWAY_INTERFACE=CGI/1.1",
        "REQUEST_METHOD=POST",
        "SCRIPT_NAME=/tk",
        "PATH_INFO=/a b/c",
        "QUERY_STRING=env",
        "CONTENT_TYPE=text/plain",
        "CONTENT_LENGTH=5",
        "SERVER_PROTOCOL=HTTP/1.1",
        "REMOTE_ADDR=127.0.0.1",
        "HTTP_X_TRACE=t1",
    ] {
        assert!(r.body.lines().any(|l| l == line), "{line} in:\n{}", r.body);
    }
    assert!(
        !r.body.contains("s3cret") && !r.body.contains("evil"),
        "{}",
        r.body
    );
    // stdin is the body.
    let r = front.post("/tk/?stdin", "echo me");
    assert_eq!(r.body, "echo me");

    // A newer matching version published meanwhile serves the next
    // requests (the routes are resolved again every --refresh).
    assert_code(
        &sb.corral(&[
            "--data-dir",
            "a",
            "publish",
            "markdown@1.1.0",
            &module("markdown"),
        ]),
        0,
    );
    crate::wait_until(
        "the route to take up markdown@1.1.0",
        Duration::from_secs(20),
        || front.log().contains("/md → markdown@1.1.0"),
    );
    let r = front.post("/md", "# still\n");
    assert_eq!(r.body, "<h1>still</h1>\n");
}

#[test]
fn bad_flags_and_unresolved_modules_exit_2_with_the_reason() {
    let sb = Sandbox::new();
    let _daemon = published(&sb);
    let serve = |args: &[&str]| {
        let mut full = vec!["--data-dir", "a", "serve", "--listen", "127.0.0.1:0"];
        full.extend(args);
        sb.corral(&full)
    };
    for (args, says) in [
        (vec!["--route", "/md"], "PATH=NAME"),
        (vec!["--route", "md=markdown"], "must start with /"),
        (
            vec!["--route", "/md=markdown", "--route", "/md=testkit"],
            "twice",
        ),
        (vec!["--route", "/md=nosuch@1"], "not_found"),
        (vec!["--route", "/md=markdown@^2"], "1.0.0"),
        (
            vec!["--route", "/md=markdown", "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["--route", "/md=markdown", "--max-body", "1TiB"],
            "--max-body",
        ),
        (vec!["--route", "/md=markdown;speed=3"], "not a limit"),
        (
            vec!["--route", "/md=markdown;timeout=1s;timeout=1s"],
            "twice",
        ),
        (
            vec!["--route", "/md=markdown;max-body=1TiB"],
            "--route /md: max-body",
        ),
        (
            vec!["--route", "/md=markdown;timeout=400d"],
            "--route /md: timeout",
        ),
        (vec![], "--route"),
    ] {
        let out = serve(&args);
        assert_code(&out, 2);
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    // Without a daemon: exit 2, saying to start one.
    let out = sb.corral(&[
        "--data-dir",
        "b",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--route",
        "/md=markdown",
    ]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("corral up"),
        "{}",
        text(&out.stderr)
    );
}
