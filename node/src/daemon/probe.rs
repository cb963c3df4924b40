//! The device probe, off the event loop: a thread of its own reads the
//! host's load, free memory and power (`/proc`, `/sys`) and the share of a
//! core the running tasks get (`/proc/self/task/*/stat`) once a second, and
//! sends each reading to the loop. On a Pi's SD card a slow read then
//! delays nothing but the next reading.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::capacity::{HostSample, LoadSource, SystemLoad};
use crate::dispatch::worker::WorkerCtx;

/// How often the device is read.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// One reading of the device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Reading {
    /// The host's own load and power.
    pub(super) host: HostSample,
    /// Free memory, MiB.
    pub(super) free_memory_mib: u32,
    /// A slot's share of a core as tasks run here show it, if they do.
    pub(super) run_share: Option<f64>,
}

impl Default for Reading {
    fn default() -> Self {
        Self {
            host: HostSample {
                load_pct: 0.0,
                on_battery: false,
            },
            free_memory_mib: 0,
            run_share: None,
        }
    }
}

/// Starts the probe thread; it ends when the loop's receiver is dropped.
pub(super) fn spawn(
    mut load: SystemLoad,
    ctx: Arc<WorkerCtx>,
    readings: mpsc::Sender<Reading>,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("corral-probe".into())
        .spawn(move || {
            loop {
                let reading = Reading {
                    host: load.sample(),
                    free_memory_mib: load.free_memory_mib(),
                    run_share: ctx.sample_share(),
                };
                if readings.blocking_send(reading).is_err() {
                    return;
                }
                std::thread::sleep(PROBE_INTERVAL);
            }
        })?;
    Ok(())
}
