//! The live page on a mesh of three real hosts, in a real browser (issue
//! 21): chromium, driven over WebDriver from inside host 0's namespace,
//! opens host 0's page, sees the three devices, submits the demo's tile
//! job (the Mandelbrot example, uploaded through the page), watches it
//! finish, downloads the results archive through the page, and the tiles
//! are checked byte for byte against a local `corral run --local` of the
//! same job. A screenshot mid-job goes to `target/tmp/dashboard-mesh.png`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Lan, corral, make_mesh, netns_available};
use crate::web::{Driver, Session, base64, untar};

const LIMIT: Duration = Duration::from_secs(60);
/// The job: the demo's tiles, more of them and in more detail than the
/// demo, so that the page is seen mid-job.
const TASKS: u32 = 24;
const TILE_ARGS: [&str; 5] = ["tile", "{task}", "24", "1024", "768"];
const MAX_ITER: &str = "3000";

/// Whether chromedriver is here; skips loudly, or fails under
/// `CORRAL_REQUIRE_BROWSER`.
fn browser_available() -> bool {
    let here = std::process::Command::new("chromedriver")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !here {
        assert!(
            std::env::var_os("CORRAL_REQUIRE_BROWSER").is_none(),
            "CORRAL_REQUIRE_BROWSER is set but chromedriver is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "\n!!! SKIPPING the three-host browser test: no chromedriver \
             (apt-get install chromium chromium-driver) !!!\n"
        );
    }
    here
}

/// Runs `f` on a thread moved into network namespace `ns` (what it starts,
/// chromedriver and chromium, lives there too).
fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

fn poll(what: &str, limit: Duration, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

fn page_text(page: &Session<'_>, ids: &[&str]) -> String {
    let js =
        format!("return {ids:?}.map((id) => document.getElementById(id).innerText).join('\\n')");
    page.script(&js).as_str().unwrap_or_default().to_string()
}

fn mandelbrot() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm/mandelbrot.wasm")
        .canonicalize()
        .expect("examples/wasm/mandelbrot.wasm")
}

#[test]
fn a_browser_on_one_host_runs_the_demo_job_on_three_and_gets_its_picture() {
    if !netns_available() || !browser_available() {
        return;
    }
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    // Host 0's page on its own loopback, where the browser runs.
    lan.up_with(0, &["--http", "127.0.0.1:7420"]);
    lan.up(1);
    lan.up(2);
    lan.wait_for("host 0 to see both others", LIMIT, || {
        lan.peers_of(0).len() == 2
    });
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-mesh.png");
    let ns = lan.host(0).ns.clone();
    let (id, archive) = in_namespace(&ns, || browse(&shot));

    // The tiles, byte for byte as a local run renders them.
    let entries = untar(&archive);
    let local = lan.scratch.path().join("local");
    let mut args = vec![
        "run".to_string(),
        "--local".into(),
        mandelbrot().display().to_string(),
        "--tasks".into(),
        TASKS.to_string(),
        "--out".into(),
        local.display().to_string(),
        "--".into(),
    ];
    args.extend(TILE_ARGS.iter().map(|a| a.to_string()));
    args.push(MAX_ITER.into());
    let out = std::process::Command::new(corral())
        .args(&args)
        .output()
        .expect("corral run --local");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for task in 0..TASKS {
        let name = format!("{task}/files/output/tile-{task}.ppm");
        let ours = entries
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no {name} in the archive"));
        let theirs = std::fs::read(local.join(&name)).expect("the local tile");
        assert!(ours.1.starts_with(b"P6"), "{name} is a picture");
        assert!(ours.1 == theirs, "{name} differs from the local run's");
    }
    let job: serde_json::Value = serde_json::from_slice(
        &entries
            .iter()
            .find(|(n, _)| n == "job.json")
            .expect("job.json")
            .1,
    )
    .expect("job.json is JSON");
    assert_eq!(job["id"], id.as_str());
    assert_eq!(job["tasks_done"], TASKS);
    let devices: Vec<&String> = job["devices"]
        .as_object()
        .map(|d| d.keys().collect())
        .unwrap_or_default();
    println!(
        "measured: the page's job ran on {devices:?}; screenshot {}",
        shot.display()
    );
}

/// In host 0's namespace: the page in chromium, from the devices to the
/// archive. Returns the job's id and the archive's bytes.
fn browse(shot: &Path) -> (String, Vec<u8>) {
    let driver = Driver::start().expect("chromedriver starts");
    let page = driver.session(1280, 1000);
    let opened = Instant::now();
    page.goto("http://127.0.0.1:7420/");
    let took = poll("the page to list the three devices", LIMIT, || {
        let text = page_text(&page, &["devices", "conn"]);
        text.contains("host0 (this device)")
            && text.contains("host1")
            && text.contains("host2")
            && text.contains("live")
    });
    println!(
        "measured: the page listed three devices {:?} after it was opened",
        took.max(opened.elapsed())
    );

    // Submit the job through the form: upload, arguments, task count.
    page.type_into("#f-module", &mandelbrot().display().to_string());
    let mut args = TILE_ARGS.join(" ");
    args.push(' ');
    args.push_str(MAX_ITER);
    page.type_into("#f-args", &args);
    page.script(&format!(
        "document.getElementById('f-tasks').value = '{TASKS}'; return null"
    ));
    page.click("#f-go");
    poll("the page to submit the job", LIMIT, || {
        page_text(&page, &["f-status"]).contains("submitted job")
    });
    let id = page
        .script("return selected")
        .as_str()
        .expect("the submitted job is selected")
        .to_string();
    // Mid-job: the job running, the timeline drawing runs.
    let mid = poll("the job to show running", LIMIT, || {
        let text = page_text(&page, &["jobs"]);
        text.contains(&id[..12]) && (text.contains("running") || text.contains("completed"))
    });
    let running = page_text(&page, &["jobs"]).contains("running");
    std::fs::write(shot, page.screenshot()).expect("write the screenshot");
    println!(
        "measured: screenshot {} {mid:?} after submitting ({})",
        shot.display(),
        if running {
            "mid-job"
        } else {
            "the job had already finished"
        }
    );
    poll(
        "the job to complete on the page",
        Duration::from_secs(300),
        || {
            let text = page_text(&page, &["jobs"]);
            text.contains("completed") && text.contains(&format!("{TASKS}/{TASKS}"))
        },
    );
    // The timeline drew every run.
    poll("the timeline to show the runs", LIMIT, || {
        let count = page_text(&page, &["tl-count"]);
        count
            .split(' ')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= TASKS)
    });
    // The download link of the finished job, fetched by the page.
    poll("the download link", LIMIT, || {
        page.script("return document.getElementById('download') !== null")
            .as_bool()
            .unwrap_or(false)
    });
    let encoded = page.script_async(
        "const done = arguments[arguments.length - 1];
         fetch(document.getElementById('download').href, { credentials: 'same-origin' })
           .then((r) => r.ok ? r.arrayBuffer() : Promise.reject('HTTP ' + r.status))
           .then((b) => {
             const u = new Uint8Array(b); let s = '';
             for (let i = 0; i < u.length; i += 0x8000) s += String.fromCharCode.apply(null, u.subarray(i, i + 0x8000));
             done(btoa(s));
           })
           .catch((e) => done('ERROR ' + e));",
    );
    let encoded = encoded.as_str().expect("the archive").to_string();
    assert!(!encoded.starts_with("ERROR"), "{encoded}");
    (id, base64(&encoded))
}
