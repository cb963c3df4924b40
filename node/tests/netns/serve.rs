//! `corral serve` across hosts (issue 22): the markdown example published
//! on host 0, `corral serve` on host 1 (inside its namespace), and a real
//! HTTP client (curl) on host 2 sending concurrent requests, each with its
//! own document: every answer is that document's HTML, and the requests
//! ran on more than one device (the server's access log names them); then
//! requests that hold a device for a while, spread the same way.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{Lan, corral, make_mesh, netns_available};

const LIMIT: Duration = Duration::from_secs(60);
/// The server's port inside host 1's namespace.
const PORT: u16 = 8080;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../examples/wasm/{name}.wasm"))
        .display()
        .to_string()
}

fn markdown() -> String {
    example("markdown")
}

fn testkit() -> String {
    example("testkit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `corral serve` running in a host's namespace; killed on drop.
pub struct Front {
    child: Child,
    /// Its URL's host and port.
    pub addr: String,
    log: PathBuf,
}

impl Front {
    /// Its stderr so far (the access log and warnings).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of its access log so far.
    pub fn requests(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.starts_with("corral serve: /"))
            .count()
    }

    /// The devices named by its access log's lines with status 200 (after
    /// the first `skip` requests), and how many each ran.
    pub fn devices_after(&self, skip: usize) -> BTreeMap<String, usize> {
        let mut count = BTreeMap::new();
        let log = self.log();
        let lines = log
            .lines()
            .filter(|l| l.starts_with("corral serve: /"))
            .skip(skip);
        for line in lines.filter(|l| l.contains(" 200 device=")) {
            if let Some(device) = line
                .split(' ')
                .find_map(|w| w.strip_prefix("device="))
                .filter(|d| *d != "-")
            {
                *count.entry(device.to_string()).or_insert(0) += 1;
            }
        }
        count
    }

    /// As [`Front::devices_after`], over every request.
    pub fn devices(&self) -> BTreeMap<String, usize> {
        self.devices_after(0)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three hosts sharing two slots each, markdown@1.0.0 and testkit@1.0.0
/// published on host 0, hosts 0 and 2 trusting host 1 (which submits every
/// request's task), and `corral serve --route /md=markdown@1 --route
/// '/tk/*=testkit@1' ARGS` on host 1.
pub fn serving_lan(args: &[&str]) -> (Lan, Front) {
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    for i in 0..3 {
        lan.up_with(i, &["--share", "always", "--slots", "2"]);
    }
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("the hosts to see each other", LIMIT, || {
        (0..3).all(|i| {
            let peers = lan.peers_of(i);
            (0..3).filter(|&j| j != i).all(|j| peers.contains(&ids[j]))
        })
    });
    let status = lan.cli(1, &["status", "--json"]);
    let key = serde_json::from_slice::<serde_json::Value>(&status.stdout).expect("status")["key"]
        .as_str()
        .expect("key")
        .to_string();
    for i in [0, 2] {
        let out = lan.cli(i, &["trust", "add", &key, "--name", "host1"]);
        assert!(out.status.success(), "trust: {}", text(&out.stderr));
    }
    for (reference, module) in [("markdown@1.0.0", markdown()), ("testkit@1.0.0", testkit())] {
        let out = lan.cli(0, &["publish", reference, &module]);
        assert!(out.status.success(), "publish: {}", text(&out.stderr));
    }
    lan.wait_for("host 1 to learn both modules", LIMIT, || {
        let listed = text(&lan.cli(1, &["modules", "--json"]).stdout);
        listed.contains("\"markdown\"") && listed.contains("\"testkit\"")
    });
    // Adverts (speeds, free slots) arrive within a second or two.
    std::thread::sleep(Duration::from_millis(1500));
    // Warm: a batch of the markdown module from host 1, on the JIT, puts
    // it (compiled) on every device; until a device has run it, the
    // coordinator counts it at its interpreter's speed for a module this
    // size, and short requests rightly wait for the warm device instead.
    let warm = lan.scratch.path().join("warm");
    let warm = warm.to_string_lossy();
    let out = lan.cli(
        1,
        &[
            "run",
            "markdown@1",
            "--engine",
            "jit",
            "--tasks",
            "18",
            "--out",
            &warm,
        ],
    );
    assert!(out.status.success(), "warm: {}", text(&out.stderr));
    println!(
        "warm-up: {}",
        text(&out.stderr).lines().last().unwrap_or("")
    );

    let host = lan.host(1);
    let addr = format!("{}:{PORT}", host.addr);
    let log = lan.scratch.path().join("serve.log");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &host.ns])
        .arg(corral())
        .arg("--data-dir")
        .arg(&host.data)
        .args(["serve", "--listen", &addr, "--route", "/md=markdown@1"])
        .args(["--route", "/tk/*=testkit@1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("corral serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the URL");
    assert!(
        line.starts_with("http://"),
        "corral serve did not start: {line:?}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (lan, Front { child, addr, log })
}

/// curl, in host `i`'s namespace, POSTing `body` to `url`: the response
/// body and the status code.
pub fn curl(lan: &Lan, i: usize, url: &str, body: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lan.host(i).ns])
        .args(["curl", "-sS", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(["--data-binary", body, url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Splits curl's output into the body and the status code `-w` added.
pub fn split(out: &std::process::Output) -> (String, String) {
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap_or((&all, ""));
    (body.to_string(), code.to_string())
}

/// One curl in host `i`'s namespace making every request of `bodies` at
/// once (`--parallel`), each POSTing its body to `url` and writing the
/// answer to `dir/N`: the status codes, in order.
pub fn curl_parallel(lan: &Lan, i: usize, url: &str, bodies: &[String], dir: &Path) -> Vec<String> {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &lan.host(i).ns])
        .args([
            "curl",
            "-sS",
            "--max-time",
            "60",
            "--parallel",
            "--parallel-immediate",
        ])
        .args(["--parallel-max", &bodies.len().to_string()]);
    for (n, body) in bodies.iter().enumerate() {
        if n > 0 {
            c.arg("--next");
        }
        c.args(["--data-binary", body, "-w", "%{http_code}\n", "-o"])
            .arg(dir.join(n.to_string()))
            .arg(url);
    }
    let out = c.output().expect("curl");
    assert!(out.status.success(), "curl: {}", text(&out.stderr));
    let codes: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(codes.len(), bodies.len(), "{codes:?}");
    codes
}

#[test]
fn concurrent_requests_run_on_several_devices_with_correct_answers() {
    if !netns_available() {
        return;
    }
    let n = 24;
    let (lan, front) = serving_lan(&[
        "--concurrency",
        "24",
        "--timeout",
        "20s",
        "--max-body",
        "64KiB",
    ]);
    let url = format!("http://{}/md", front.addr);
    // A first request, and the module is on host 1.
    let out = curl(&lan, 2, &url, "# warm\n").output().expect("curl");
    assert_eq!(
        split(&out),
        ("<h1>warm</h1>\n".into(), "200".into()),
        "{}",
        front.log()
    );

    // 24 documents at once from one client; each answer is its document's
    // HTML.
    let seen = front.requests();
    let started = std::time::Instant::now();
    let bodies: Vec<String> = (0..n)
        .map(|i| format!("# Doc {i}\n\nbody *{i}*\n"))
        .collect();
    let dir = lan.scratch.path().join("answers");
    std::fs::create_dir_all(&dir).expect("dir");
    let codes = curl_parallel(&lan, 2, &url, &bodies, &dir);
    println!(
        "measured: {n} concurrent requests answered in {:?}",
        started.elapsed()
    );
    for (i, code) in codes.iter().enumerate() {
        let body = std::fs::read_to_string(dir.join(i.to_string())).unwrap_or_default();
        assert_eq!(code, "200", "request {i}: {body}\n{}", front.log());
        assert_eq!(
            body,
            format!("<h1>Doc {i}</h1>\n<p>body <em>{i}</em></p>\n"),
            "request {i}"
        );
    }
    let markdown_devices = front.devices_after(seen);
    println!("markdown requests per device: {markdown_devices:?}");
    assert_eq!(
        markdown_devices.values().sum::<usize>(),
        n,
        "{}",
        front.log()
    );

    // Requests that hold their device a while (400 ms each): a device takes
    // at most its slots and one more at once, so 12 of them at once spread.
    let seen = front.requests();
    let tk = format!("http://{}/tk/?sleep-ms+400", front.addr);
    let bodies = vec![String::new(); 12];
    let codes = curl_parallel(&lan, 0, &tk, &bodies, &dir);
    assert!(
        codes.iter().all(|c| c == "200"),
        "{codes:?}\n{}",
        front.log()
    );
    let devices = front.devices_after(seen);
    println!("slow requests per device: {devices:?}");
    assert_eq!(devices.values().sum::<usize>(), 12, "{}", front.log());
    assert!(
        devices.len() >= 2,
        "the slow requests ran on one device only: {devices:?}\n{}",
        front.log()
    );
    // Hostile requests from another host: an oversize body, an unknown
    // route, a module that traps; each its status, the reason only in the
    // log, and the server answers after.
    let oversize = "#".repeat(65 * 1024);
    let unknown = format!("http://{}/nope", front.addr);
    let trap = format!("http://{}/tk/?trap", front.addr);
    for (hostile, body, status) in [
        (&url, oversize.as_str(), "413"),
        (&unknown, "x", "404"),
        (&trap, "", "500"),
    ] {
        let out = curl(&lan, 2, hostile, body).output().expect("curl");
        let (page, code) = split(&out);
        assert_eq!(code, status, "{hostile}: {page}\n{}", front.log());
        assert!(
            !page.contains("trap"),
            "the reason is not in the page: {page}"
        );
        let out = curl(&lan, 2, &url, "*still*").output().expect("curl");
        assert_eq!(split(&out).1, "200", "after {status}: {}", front.log());
    }
    assert!(
        front
            .log()
            .lines()
            .any(|l| l.contains("the task stopped") && l.contains("trap")),
        "{}",
        front.log()
    );
    // Every daemon and the server are still up.
    for i in 0..3 {
        assert!(lan.cli(i, &["status"]).status.success(), "host {i} is down");
    }
    let out = curl(&lan, 0, &url, "ok").output().expect("curl");
    assert_eq!(split(&out).1, "200");
}
