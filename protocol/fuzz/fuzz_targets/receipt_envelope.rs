//! A signed receipt's envelope from arbitrary bytes: decode, then verify.
#![no_main]

use corral_protocol::codec::{MAX_RECEIPT_BYTES, from_canonical_bytes};
use corral_protocol::envelope::Signed;
use corral_protocol::receipt::TaskReceipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = from_canonical_bytes::<Signed<TaskReceipt>>(data, MAX_RECEIPT_BYTES) {
        let _ = signed.verify(0);
    }
    if let Ok(receipt) = from_canonical_bytes::<TaskReceipt>(data, MAX_RECEIPT_BYTES) {
        let _ = receipt.validate();
    }
});
