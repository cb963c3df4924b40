//! `corral serve`'s figures (issue 22's closing note): request latency
//! p50/p99 at a fixed concurrency with the markdown module warm on the
//! three devices, the most requests per second sustained (every answer a
//! 200) over a few concurrencies, and, for comparison, the same module run
//! once per request with `corral run --local` (a process per document).
//! The client is curl in host 2's namespace; its `time_total` is each
//! request's latency. `CORRAL_SERVE_LOG_COPY=FILE` keeps the server's log
//! there (with `RUST_LOG=corral_node::serve=debug`, where each request's
//! time went: submitting, running, reading the answer).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{figure, netns_available, percentile, quick};
use crate::harness::{Lan, corral};
use crate::serve::{Front, serving_lan};

const DOC: &str =
    "# Bench\n\nSome *Markdown* with a [link](https://example.org) and a list:\n\n- one\n- two\n";

/// `requests` POSTs of [`DOC`] from host 2, `parallel` at a time, by one
/// curl: each request's status and seconds, and the wall time of all.
fn burst(
    lan: &Lan,
    front: &Front,
    parallel: usize,
    requests: usize,
) -> (Vec<(u16, f64)>, Duration) {
    let url = format!("http://{}/md", front.addr);
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &lan.host(2).ns])
        .args(["curl", "-sS", "--parallel", "--parallel-immediate"])
        .args(["--parallel-max", &parallel.to_string()])
        .args(["--data-binary", DOC])
        .args(["-w", "\nRESULT %{http_code} %{time_total}\n"])
        .args(std::iter::repeat_n(url.as_str(), requests))
        .stderr(Stdio::inherit())
        .output()
        .expect("curl");
    let wall = started.elapsed();
    let results: Vec<(u16, f64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .filter_map(|l| {
            let (code, secs) = l.split_once(' ')?;
            Some((code.parse().ok()?, secs.parse().ok()?))
        })
        .collect();
    assert_eq!(results.len(), requests, "curl reported every request");
    (results, wall)
}

#[test]
#[ignore = "a benchmark: run by corral-bench"]
fn bench_serve() {
    if !netns_available() {
        return;
    }
    let (lan, front) = serving_lan(&["--concurrency", "64", "--timeout", "20s"]);
    // `serving_lan` warmed the module on every device (a JIT batch); one
    // burst more, and the devices that answered are the warm ones.
    burst(&lan, &front, 12, 24);
    println!("warm on: {:?}", front.devices());

    // Latency at a fixed concurrency: as many requests in flight as the
    // mesh has slots (3 devices × 2).
    let requests = if quick() { 60 } else { 300 };
    let (results, _) = burst(&lan, &front, 6, requests);
    let mut ms: Vec<f64> = results
        .iter()
        .inspect(|(code, _)| assert_eq!(*code, 200, "{}", front.log()))
        .map(|(_, s)| s * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    figure("serve_c6_p50_ms", percentile(&ms, 0.5), "ms");
    figure("serve_c6_p99_ms", percentile(&ms, 0.99), "ms");

    // Throughput: the most requests per second with every answer a 200.
    let mut best = 0.0f64;
    for parallel in [6, 12, 24, 48] {
        let (results, wall) = burst(&lan, &front, parallel, requests);
        let ok = results.iter().filter(|(c, _)| *c == 200).count();
        let rps = ok as f64 / wall.as_secs_f64();
        println!("concurrency {parallel}: {ok}/{requests} ok, {rps:.1} requests/s");
        if ok == requests {
            best = best.max(rps);
        }
    }
    figure("serve_max_rps", best, "req/s");
    if let Some(path) = std::env::var_os("CORRAL_SERVE_LOG_COPY") {
        let _ = std::fs::write(path, front.log());
    }
    println!("requests per device: {:?}", front.devices());

    // The same document through `corral run --local`, a process each.
    let module =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm/markdown.wasm");
    let runs = if quick() { 10 } else { 40 };
    let mut local: Vec<f64> = (0..=runs)
        .map(|_| {
            let started = Instant::now();
            let mut child = Command::new(corral())
                .arg("--data-dir")
                .arg(&lan.host(1).data)
                .args(["run", "--local"])
                .arg(&module)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("corral run");
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().expect("stdin");
                stdin.write_all(DOC.as_bytes()).expect("write");
            }
            assert!(child.wait().expect("ends").success());
            started.elapsed().as_secs_f64() * 1000.0
        })
        .skip(1) // the first compiles the module into the cache
        .collect();
    local.sort_by(f64::total_cmp);
    figure("run_local_p50_ms", percentile(&local, 0.5), "ms");
}
