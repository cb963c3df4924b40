//! Control-socket request lines (node/src/control/wire.rs) from arbitrary
//! bytes, parsed as the daemon does; and response lines, as the CLI does.
//! It must refuse, never panic.
#![no_main]

use corral_node::control::wire::{Response, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_request(line);
    let _ = serde_json::from_str::<Response>(line);
});
