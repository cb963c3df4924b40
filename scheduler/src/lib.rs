//! corral's scheduler, pure and deterministic: time and randomness are passed
//! in, decisions come out as data. It holds the peer view ([`view`]) and the batch task
//! state machine with placement ([`batch`]).

pub mod ahead;
pub mod batch;
pub mod view;
