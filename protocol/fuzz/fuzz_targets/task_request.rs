//! Task requests (offers, cancels, results, hand-backs, batches, live output, heartbeats) from arbitrary bytes: decoding
//! and verifying must never panic.
#![no_main]

use corral_protocol::codec::decode;
use corral_protocol::messages::TaskRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode::<TaskRequest>(data) {
        Ok(TaskRequest::Offer { manifest, .. }) => {
            let _ = manifest.verify(1_767_225_600_000);
        }
        Ok(TaskRequest::Offers { manifest, .. }) => {
            let _ = manifest.verify(1_767_225_600_000);
        }
        Ok(TaskRequest::Result(receipt)) => {
            let _ = receipt.verify(0);
        }
        Ok(TaskRequest::Results(receipts)) => {
            for receipt in receipts {
                let _ = receipt.verify(0);
            }
        }
        Ok(TaskRequest::SignedResults(batch)) => {
            let signer = *batch.signer();
            let _ = batch.open_receipts_from(&signer, 0);
        }
        Ok(
            TaskRequest::Cancel { .. }
            | TaskRequest::HandBack { .. }
            | TaskRequest::Output { .. }
            | TaskRequest::Alive { .. },
        )
        | Err(_) => {}
    }
});
