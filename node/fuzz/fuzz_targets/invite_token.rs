//! Invite tokens (node/src/cmd/token.rs) from arbitrary bytes, as `corral
//! join -` reads them: bounded read, then decode and verify at a fixed
//! time. It must refuse, never panic.
#![no_main]

use corral_node::cmd::token::{Invite, read_token};
use libfuzzer_sys::fuzz_target;

/// 2027-01-15, inside the validity of the seed corpus's tokens.
const NOW_MS: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    for one_line in [false, true] {
        if let Ok(text) = read_token(data, "stdin", one_line) {
            let _ = Invite::decode(&text, NOW_MS);
        }
    }
});
