//! Placement decisions: filling an idle mesh, and the steady state where
//! each result pulls the next task, at home and at fleet sizes.

#![allow(missing_docs)]

use std::hint::black_box;

use corral_protocol::ids::PeerKey;
use corral_scheduler::batch::{Batch, BatchConfig, Decision, Worker};
use std::collections::VecDeque;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};

fn workers(n: u32) -> Vec<Worker> {
    (0..n)
        .map(|i| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            // A mix of desktops, laptops and Pis.
            let (speed, slots) = [(100, 8), (70, 4), (25, 4), (6, 2)][i as usize % 4];
            Worker {
                peer: PeerKey::from_bytes(key),
                slots_free: slots,
                slots_total: slots,
                held_elsewhere: 0,
                speed,
                class: String::new(),
                cached: false,
                transfer_ms: 0,
                ahead: 1,
            }
        })
        .collect()
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("fill an idle mesh");
    for n in [8u32, 100, 1000] {
        let w = workers(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &w, |b, w| {
            b.iter_batched(
                || Batch::new(50_000, BatchConfig::default()),
                // The batch is returned so that dropping it is not timed.
                |mut batch| {
                    let placed = batch.schedule(w, 0).len();
                    (batch, black_box(placed))
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("one result pulls the next");
    for n in [8u32, 100, 1000] {
        let w = workers(n);
        let mut steady = Steady::new(&w);
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| steady.step(&w))
        });
    }
    group.finish();
}

/// A large batch in its steady state: every step finishes the oldest
/// running task and places what that frees. A new batch replaces a
/// finished one (criterion runs as many steps as it likes).
struct Steady {
    batch: Batch,
    running: VecDeque<(u32, PeerKey)>,
    now: u64,
}

impl Steady {
    fn new(w: &[Worker]) -> Self {
        let mut batch = Batch::new(1_000_000, BatchConfig::default());
        let running = offers(batch.schedule(w, 0));
        Self {
            batch,
            running,
            now: 0,
        }
    }

    fn step(&mut self, w: &[Worker]) {
        let Some((index, peer)) = self.running.pop_front() else {
            *self = Self::new(w);
            return;
        };
        self.batch.on_done(index, &peer);
        self.now += 1;
        let placed = offers(self.batch.schedule(w, self.now));
        self.running.extend(placed);
    }
}

fn offers(decisions: Vec<Decision>) -> VecDeque<(u32, PeerKey)> {
    decisions
        .into_iter()
        .filter_map(|d| match d {
            Decision::Offer { index, peer, .. } => Some((index, peer)),
            _ => None,
        })
        .collect()
}

criterion_group!(benches, placement);
criterion_main!(benches);
