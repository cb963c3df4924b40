//! A signed manifest's envelope from arbitrary bytes: decode, then verify.
#![no_main]

use corral_protocol::codec::{MAX_MANIFEST_BYTES, from_canonical_bytes};
use corral_protocol::envelope::Signed;
use corral_protocol::manifest::JobManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = from_canonical_bytes::<Signed<JobManifest>>(data, MAX_MANIFEST_BYTES) {
        let _ = signed.verify(1_767_225_600_000);
    }
    if let Ok(manifest) = from_canonical_bytes::<JobManifest>(data, MAX_MANIFEST_BYTES) {
        let _ = manifest.validate();
        let _ = manifest.task_args(0);
    }
});
