//! One module per command; each resolves its arguments and returns the exit
//! code.

pub mod bench;
pub mod mesh;
pub mod run;
pub mod submit;

/// An error in what the user asked for: exit code 2 and the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
