//! The capacity advert a node gossips on `corral/capacity/1` (DESIGN §5):
//! what it can run and how much of it is free. Small: well under 1 KiB.

use serde::{Deserialize, Serialize};

use crate::codec::WireMessage;
use crate::ids::PeerKey;
use crate::receipt::EngineKind;

/// Longest device name.
pub const MAX_NAME_BYTES: usize = 64;

/// Whether the device's owner lets it take work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OwnerState {
    /// The owner is away: tasks are welcome.
    Idle,
    /// The owner is using the device: no new tasks.
    Busy,
    /// The device is leaving: finishing or handing back its tasks.
    Draining,
}

impl OwnerState {
    /// The stable name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            OwnerState::Idle => "idle",
            OwnerState::Busy => "busy",
            OwnerState::Draining => "draining",
        }
    }
}

/// Calibrated speed of one engine: operations per second of the built-in
/// calibration module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSpeed {
    /// The engine.
    pub engine: EngineKind,
    /// Calibration operations per second.
    pub ops_per_s: u64,
}

/// One node's capacity, as it advertises it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityAdvert {
    /// The node.
    pub peer: PeerKey,
    /// Its name.
    pub name: String,
    /// Increases with every advert; older ones are ignored.
    pub seq: u64,
    /// CPU architecture (`x86_64`, `aarch64`, `arm`, …).
    pub arch: String,
    /// Operating system.
    pub os: String,
    /// Engines available, fastest first, with their calibrated speeds.
    pub engines: Vec<EngineSpeed>,
    /// Task slots in all.
    pub slots_total: u16,
    /// Task slots free now.
    pub slots_free: u16,
    /// Logical cores.
    pub cores: u16,
    /// Host load without corral, in percent of all cores.
    pub host_load_pct: u8,
    /// Free memory, MiB.
    pub free_memory_mib: u32,
    /// Running on battery.
    pub on_battery: bool,
    /// Owner state.
    pub state: OwnerState,
    /// Tasks running.
    pub running: u16,
    /// Tasks queued.
    pub queued: u16,
    /// corral version.
    pub version: String,
}

/// An advert out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid capacity advert: {0}")]
pub struct AdvertError(pub String);

impl CapacityAdvert {
    /// Checks bounds and consistency.
    pub fn validate(&self) -> Result<(), AdvertError> {
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_BYTES
            || self.name.chars().any(char::is_control)
        {
            return Err(AdvertError(format!(
                "name {:?} is empty, too long or has control characters",
                self.name
            )));
        }
        let short = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        };
        if !short(&self.arch) || !short(&self.os) || !short(&self.version) {
            return Err(AdvertError(
                "arch, os or version is not a short plain name".into(),
            ));
        }
        if self.engines.is_empty() || self.engines.len() > 4 {
            return Err(AdvertError(format!("{} engines", self.engines.len())));
        }
        if self.slots_free > self.slots_total || self.slots_total > 1024 {
            return Err(AdvertError(format!(
                "{} of {} slots free",
                self.slots_free, self.slots_total
            )));
        }
        if self.host_load_pct > 100 {
            return Err(AdvertError(format!("host load {}%", self.host_load_pct)));
        }
        Ok(())
    }
}

impl WireMessage for CapacityAdvert {
    const KIND: u8 = 5;
    const MAX_BYTES: usize = 1024;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec;

    pub(crate) fn sample() -> CapacityAdvert {
        CapacityAdvert {
            peer: PeerKey::from_bytes([3; 32]),
            name: "pi-2".into(),
            seq: 42,
            arch: "arm".into(),
            os: "linux".into(),
            engines: vec![EngineSpeed {
                engine: EngineKind::Interp,
                ops_per_s: 1_200_000,
            }],
            slots_total: 4,
            slots_free: 3,
            cores: 4,
            host_load_pct: 7,
            free_memory_mib: 612,
            on_battery: false,
            state: OwnerState::Idle,
            running: 1,
            queued: 0,
            version: "0.1.0".into(),
        }
    }

    #[test]
    fn adverts_are_small_and_round_trip() {
        let advert = sample();
        assert_eq!(advert.validate(), Ok(()));
        let frame = codec::encode(&advert);
        assert!(frame.len() < 200, "{} bytes", frame.len());
        assert_eq!(codec::decode::<CapacityAdvert>(&frame), Ok(advert));
    }

    /// The seed of the `capacity_advert` fuzz target (protocol/fuzz/corpus);
    /// run by hand after a change to the advert:
    /// `cargo test -p corral-protocol --lib -- --ignored advert_fuzz_seed`.
    #[test]
    #[ignore = "writes a file; run by hand to refresh the fuzz seed"]
    fn advert_fuzz_seed() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/capacity_advert");
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join("sample"), codec::encode(&sample())).expect("seed");
    }

    #[test]
    fn bounds_are_checked() {
        let mut a = sample();
        a.slots_free = 5;
        assert!(a.validate().is_err());
        let mut a = sample();
        a.name = "x".repeat(65);
        assert!(a.validate().is_err());
        let mut a = sample();
        a.engines.clear();
        assert!(a.validate().is_err());
        let mut a = sample();
        a.arch = "arm v7".into();
        assert!(a.validate().is_err());
    }
}
