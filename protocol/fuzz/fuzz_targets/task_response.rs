//! Task responses from arbitrary bytes.
#![no_main]

use corral_protocol::codec::decode;
use corral_protocol::messages::TaskResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<TaskResponse>(data);
});
