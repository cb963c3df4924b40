//! The wire's hot paths: decoding and encoding an offer and a result, and
//! checking their signatures. The messages are the committed golden
//! fixtures (a real signed manifest and a real signed receipt).

#![allow(missing_docs)]

use std::hint::black_box;

use corral_protocol::codec;
use corral_protocol::envelope::Signed;
use corral_protocol::messages::TaskRequest;
use criterion::{Criterion, criterion_group, criterion_main};

/// When the fixtures were signed (`tests/golden.rs`), plus a millisecond.
const NOW_MS: u64 = 1_767_225_600_001;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn wire(c: &mut Criterion) {
    let offer = fixture("task_offer.bin");
    let result = fixture("task_result.bin");
    c.bench_function("decode offer", |b| {
        b.iter(|| codec::decode::<TaskRequest>(black_box(&offer)).expect("decodes"))
    });
    let decoded: TaskRequest = codec::decode(&offer).expect("decodes");
    c.bench_function("encode offer", |b| {
        b.iter(|| codec::encode(black_box(&decoded)))
    });
    let TaskRequest::Offer { manifest, .. } = decoded else {
        panic!("the offer fixture is not an offer")
    };
    c.bench_function("verify manifest signature", |b| {
        b.iter(|| black_box(&manifest).verify(NOW_MS).expect("verifies"))
    });
    let TaskRequest::Result(receipt) = codec::decode(&result).expect("decodes") else {
        panic!("the result fixture is not a result")
    };
    c.bench_function("decode result", |b| {
        b.iter(|| codec::decode::<TaskRequest>(black_box(&result)).expect("decodes"))
    });
    c.bench_function("verify receipt signature", |b| {
        b.iter(|| black_box(&receipt).verify(NOW_MS).expect("verifies"))
    });
    // A worker's receipts arrive in batches when its tasks end close together.
    let eight = vec![receipt.clone(); 8];
    let worker = *receipt.signer();
    c.bench_function("verify 8 receipt signatures together (per batch)", |b| {
        b.iter(|| Signed::verify_all_from(black_box(&eight), &worker, NOW_MS))
    });
}

criterion_group!(benches, wire);
criterion_main!(benches);
