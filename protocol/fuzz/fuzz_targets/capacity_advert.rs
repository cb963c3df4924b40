//! Capacity adverts (the gossiped frame) from arbitrary bytes: decode, then
//! the bounds check every receiver runs. It must refuse, never panic.
#![no_main]

use corral_protocol::capacity::CapacityAdvert;
use corral_protocol::codec::decode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(advert) = decode::<CapacityAdvert>(data) {
        let _ = advert.validate();
    }
});
