//! corral's scheduler: the peer view, placement and the batch task state
//! machine, pure and deterministic (time and randomness are passed in).
//!
//! The crate exists so that the layout of DESIGN §2 holds from the start and
//! `protocol` stays its only corral dependency; its contents arrive with the
//! mesh (peer view) and batch (placement, task states) work. Nothing here is
//! used yet.
