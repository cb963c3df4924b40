//! corral's scheduler, pure and deterministic: time and randomness are passed
//! in, decisions come out as data. Today it holds the peer view ([`view`]);
//! placement and the batch task state machine arrive with the batch work.

pub mod view;
