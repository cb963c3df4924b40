//! An error in what the user asked for (a flag, a path, a module): the
//! command line prints it and exits 2, so it is never mistaken for a task's
//! own exit code. Low in the house: the job planner and the commands both
//! raise it.

/// An error in what the user asked for: exit code 2 and the message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
