//! One module per command; each resolves its arguments and returns the exit
//! code.

pub mod bench;
pub mod dashboard;
pub mod jobs;
pub mod mesh;
pub mod modules;
pub mod peers;
pub mod run;
pub mod serve;
mod ship;
pub mod submit;
pub mod token;
pub mod trust;
pub mod up;

/// Exit code of a single task that trapped or hit a limit (DESIGN §9).
pub const EXIT_TRAP: u8 = 125;

pub use crate::usage::UsageError;
