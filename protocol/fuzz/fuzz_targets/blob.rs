//! Blob requests and responses from arbitrary bytes.
#![no_main]

use corral_protocol::codec::decode;
use corral_protocol::messages::{BlobRequest, BlobResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = decode::<BlobRequest>(data) {
        let _ = request.is_valid();
    }
    let _ = decode::<BlobResponse>(data);
});
