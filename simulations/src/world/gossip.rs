//! Capacity gossip: adverts sent slot by slot, lost by a hash of the advert
//! (the same loss on every policy's run), delayed, and delivered into the
//! coordinator's view; the bytes an advert costs on the wire.

use super::World;
use super::clock::micros;
use super::state::Event;
use crate::policy::Policy;

/// A uniform number in [0, 1) from a hash of its inputs (splitmix64): the
/// same advert is lost on every policy's run.
pub(super) fn hashed_unit(seed: u64, a: u64, b: u64) -> f64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The bytes of one capacity advert on the wire: the real encoded advert
/// plus gossipsub's framing (signature, source, sequence number, topic) and
/// the stream's Noise and yamux headers, estimated at 150 bytes.
pub fn advert_wire_bytes() -> u64 {
    use corral_protocol::capacity::{CapacityAdvert, EngineSpeed, OwnerState};
    use corral_protocol::receipt::EngineKind;
    let advert = CapacityAdvert {
        peer: corral_protocol::ids::PeerKey::from_bytes([7; 32]),
        name: "pi-4-0042".into(),
        seq: 123_456,
        arch: "aarch64".into(),
        os: "linux".into(),
        engines: vec![
            EngineSpeed {
                engine: EngineKind::Jit,
                ops_per_s: 25_000_000,
            },
            EngineSpeed {
                engine: EngineKind::Interp,
                ops_per_s: 5_000_000,
            },
        ],
        slots_total: 4,
        slots_free: 2,
        cores: 4,
        host_load_pct: 12,
        free_memory_mib: 2900,
        on_battery: false,
        state: OwnerState::Idle,
        running: 2,
        queued: 0,
        version: "0.1.0".into(),
    };
    corral_protocol::codec::encode(&advert).len() as u64 + 150
}

/// Adverts go out in this many slots per gossip interval (devices spread
/// over them by index), so views go stale by up to one interval, unevenly.
pub(super) const GOSSIP_SLOTS: u32 = 10;

/// Bytes of a load probe and its answer (power-of-two choices).
pub(super) const PROBE_BYTES: u64 = 2 * 96;

impl World<'_> {
    /// Puts `d` in or out of the eligible set per the view; a change asks
    /// for a placement round.
    pub(super) fn set_eligible(&mut self, d: u32) {
        let s = &self.seen[d as usize];
        let changed = if s.known && s.idle {
            self.eligible.insert(d)
        } else {
            self.eligible.remove(&d)
        };
        if changed {
            self.changed.push(d);
            self.request_tick();
        }
    }

    /// An advert of `device` (sent with `idle` and `load`) reaches the view.
    pub(super) fn deliver(
        &mut self,
        device: u32,
        epoch: u32,
        idle: bool,
        load: u32,
        policy: &mut dyn Policy,
    ) {
        if self.devices[device as usize].epoch != epoch {
            return;
        }
        let join = !self.seen[device as usize].known;
        let seen = &mut self.seen[device as usize];
        seen.known = true;
        seen.idle = idle;
        seen.load = load;
        self.set_eligible(device);
        policy.on_advert(device, join);
    }

    /// Every present device of gossip slot `slot` sends its advert; the
    /// ones not lost arrive together after the gossip delay.
    pub(super) fn on_gossip(&mut self, slot: u32) {
        let next = self.now + micros(self.scenario.gossip.interval_s);
        self.push(next, Event::Gossip(slot));
        let mut sent = Vec::new();
        for i in 0..self.slots_of[slot as usize].len() {
            let d = self.slots_of[slot as usize][i];
            let dev = &mut self.devices[d as usize];
            if !dev.present {
                continue;
            }
            dev.adverts += 1;
            self.adverts_sent += 1;
            if hashed_unit(self.seed, u64::from(d), dev.adverts) >= self.scenario.gossip.loss {
                sent.push((d, dev.epoch, !dev.owner_busy, self.truth_load[d as usize]));
            }
        }
        let id = self.next_batch;
        self.next_batch += 1;
        self.in_flight.insert(id, sent);
        let at = self.now + micros(self.scenario.gossip.delay_ms / 1000.0);
        self.push(at, Event::GossipArrives(id));
    }

    /// A round of adverts reaches the view.
    pub(super) fn on_gossip_arrives(&mut self, id: u64, policy: &mut dyn Policy) {
        for (d, epoch, idle, load) in self.in_flight.remove(&id).unwrap_or_default() {
            self.deliver(d, epoch, idle, load, policy);
        }
    }

    /// A returning device's first advert (if it is still in that life).
    pub(super) fn on_rejoin(&mut self, d: u32, epoch: u32, policy: &mut dyn Policy) {
        let dev = &self.devices[d as usize];
        if dev.present && dev.epoch == epoch {
            let (idle, load) = (!dev.owner_busy, self.truth_load[d as usize]);
            self.deliver(d, epoch, idle, load, policy);
        }
    }
}
