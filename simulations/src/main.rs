//! corral-sim: a discrete-event simulator that will drive the real
//! `corral-scheduler` with thousands of simulated devices. It is built once
//! the scheduler's placement API exists; until then it says so and fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "corral-sim: the simulator is not built yet (it needs the scheduler's placement API)"
    );
    ExitCode::FAILURE
}
