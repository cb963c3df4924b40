//! One module per command; each resolves its arguments and returns the exit
//! code.

pub mod bench;
pub mod mesh;
pub mod peers;
pub mod run;
pub mod submit;
pub mod token;
pub mod trust;
pub mod up;

/// Exit code of a single task that trapped or hit a limit (DESIGN §9).
pub const EXIT_TRAP: u8 = 125;

/// An error in what the user asked for: exit code 2 and the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
