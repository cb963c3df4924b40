//! `corral demo`: the bundled example with no set-up. A Mandelbrot picture is
//! rendered as a batch of tiles, then the tiles are stitched into one PNG by a
//! second job that receives the first job's OUT directory as a `--dir`.
//!
//! It starts a local mesh of three daemons on loopback (see
//! [`crate::demo_mesh`]; the "pi" runs the interpreter), submits both jobs to
//! the first one exactly as `corral run` does, and the scheduler spreads the
//! tiles over the three devices. The first device serves the live page
//! (its URL is printed); the mesh stays up until Enter (`--no-wait`: it
//! stops once the picture is written).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::blobs::BlobStore;
use crate::cli::DemoArgs;
use crate::cmd::submit;
use crate::config::DataDir;
use crate::job::module::PlanModule;
use crate::job::outdir::OutDir;
use crate::job::plan::{DirMount, JobPlan, Tasks};
use crate::job::report::{JobState, TaskRunState};
use crate::runtime::{Limits, WasmModule};

/// The example module, built from `examples/mandelbrot` (see examples/build.sh).
const MANDELBROT: &[u8] = include_bytes!("../../examples/wasm/mandelbrot.wasm");

/// Picture size and detail of the demo.
const WIDTH: u32 = 1024;
const HEIGHT: u32 = 768;
const MAX_ITER: u32 = 500;

/// Runs the demo.
pub fn run(data_dir: Option<PathBuf>, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // The data dir is not needed: the demo's mesh lives in a temporary
    // directory; resolving it still checks --data-dir is usable.
    let _ = DataDir::resolve(data_dir)?;
    let module = WasmModule::new(MANDELBROT.to_vec()).context("the bundled example is broken")?;
    let tasks = args.tasks.clamp(1, HEIGHT);
    let out = OutDir::create(&args.out)?;

    eprintln!(
        "corral demo: starting a local mesh of {} devices on loopback…",
        crate::demo_mesh::DEVICES.len()
    );
    let mesh = crate::demo_mesh::LocalMesh::start()?;
    let status = mesh.status()?;
    println!(
        "mesh {}: {} ({}) sees:",
        status["mesh"].as_str().unwrap_or("?"),
        status["name"].as_str().unwrap_or("?"),
        status["arch"].as_str().unwrap_or("?")
    );
    for peer in mesh.peers()?.as_array().into_iter().flatten() {
        println!("  {}", crate::cmd::mesh::peer_line(peer));
    }
    match mesh.page() {
        Some(addr) => println!("live page: http://{addr}/"),
        None => eprintln!("corral demo: the first device serves no live page (see its log)"),
    }
    let coordinator = mesh.dir(0);
    eprintln!(
        "corral demo: rendering a {WIDTH}x{HEIGHT} Mandelbrot picture as {tasks} tiles on the mesh"
    );
    let tiles_plan = JobPlan {
        module: PlanModule::read(module),
        module_name: "mandelbrot.wasm".into(),
        args: [
            "tile".to_string(),
            "{task}".into(),
            tasks.to_string(),
            WIDTH.to_string(),
            HEIGHT.to_string(),
            MAX_ITER.to_string(),
        ]
        .to_vec(),
        env: Vec::new(),
        tasks: Tasks::Count(tasks),
        dirs: Vec::new(),
        limits: Limits::default(),
        engine: args.engine,
        batch: true,
    };
    let blobs = BlobStore::open(&coordinator)?;
    let tiles_out = OutDir::create(&out.root().join("tiles"))?;
    let id = submit::submit(&coordinator, &tiles_plan, 1)?;
    let tiles = submit::follow(&coordinator, &id, true)?;
    submit::materialize(&blobs, &tiles, &tiles_out)?;
    if tiles.tasks_failed > 0 || tiles.state != JobState::Completed {
        anyhow::bail!(
            "{} of {} tiles failed; see {}",
            tiles.tasks_failed,
            tiles.tasks_total,
            tiles_out.root().join("job.json").display()
        );
    }

    let stitch_plan = JobPlan {
        args: [
            "stitch".to_string(),
            "/data".into(),
            tasks.to_string(),
            "/output/mandelbrot.png".into(),
        ]
        .to_vec(),
        tasks: Tasks::Count(1),
        dirs: vec![DirMount {
            host: tiles_out.root().to_path_buf(),
            guest: "/data".into(),
            writable: false,
        }],
        ..tiles_plan
    };
    let stitch_out = OutDir::create(&out.root().join("stitch"))?;
    let id = submit::submit(&coordinator, &stitch_plan, 1)?;
    let stitch = submit::follow(&coordinator, &id, true)?;
    submit::materialize(&blobs, &stitch, &stitch_out)?;
    let Some(task) = stitch
        .tasks
        .first()
        .filter(|t| t.state == TaskRunState::Done)
    else {
        anyhow::bail!(
            "stitching failed; see {}",
            stitch_out.root().join("job.json").display()
        );
    };
    let picture = out.root().join("mandelbrot.png");
    std::fs::copy(
        stitch_out.root().join("0/files/output/mandelbrot.png"),
        &picture,
    )
    .context("the stitch job did not write /output/mandelbrot.png")?;

    let total_ms: u64 = tiles.tasks.iter().map(|t| t.duration_ms).sum();
    println!("picture: {}", picture.display());
    for (device, engine, arch) in distinct(&tiles.tasks) {
        let count = tiles
            .tasks
            .iter()
            .filter(|t| t.peer == device && t.engine == engine)
            .count();
        println!("  {device} ({engine}, {arch}): {count} tiles");
    }
    println!(
        "  stitched on {} ({}); {} ms of task time, {:.2}s wall-clock",
        task.peer,
        task.engine,
        total_ms + task.duration_ms,
        started.elapsed().as_secs_f64()
    );
    if !args.no_wait {
        wait_for_enter(mesh.page(), &coordinator);
    }
    mesh.stop();
    Ok(ExitCode::SUCCESS)
}

/// Keeps the mesh (and its page) up until a line, or the end of stdin,
/// arrives: `corral demo < /dev/null` and a closed pipe do not hang.
fn wait_for_enter(page: Option<std::net::SocketAddr>, coordinator: &std::path::Path) {
    if let Some(addr) = page {
        eprintln!("corral demo: the mesh stays up; watch it at http://{addr}/");
    }
    eprintln!(
        "corral demo: submit more jobs from the page or with `corral --data-dir {} run …`; \
         press Enter to stop the mesh",
        coordinator.display()
    );
    let mut line = String::new();
    // An error reading stdin counts as Enter too: nothing to wait on.
    let _ = std::io::stdin().read_line(&mut line);
}

/// The distinct (device, engine, arch) that ran tasks, in order of appearance.
fn distinct(tasks: &[crate::job::report::TaskReport]) -> Vec<(String, String, String)> {
    let mut seen: Vec<(String, String, String)> = Vec::new();
    for t in tasks {
        let key = (t.peer.clone(), t.engine.clone(), t.arch.clone());
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen
}
