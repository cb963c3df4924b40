//! Multi-host tests on real network stacks (DESIGN §10): each host is a Linux
//! network namespace joined to the others by a veth pair into a bridge that
//! lives in its own namespace, with a multicast route so mDNS crosses the
//! bridge. One `corral up` runs in each. Needs root; without it the tests
//! skip loudly, and under `CORRAL_REQUIRE_NETNS=1` (CI) a skip is a failure.
//!
//! Timings are printed; assertions use generous sanity bounds, not targets.

#![allow(missing_docs, unreachable_pub, clippy::new_without_default)]

mod bench;
mod dashboard;
mod harness;
mod membership;
mod membership_spoof;
mod mixed;
mod modules;
mod nat;
mod nat_limits;
mod offload;
mod rogue;
mod serve;
#[path = "../common/web.rs"]
mod web;
