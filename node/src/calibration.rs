//! Each engine's calibrated speed on this device (`corral bench`), kept in
//! the store so `corral up` calibrates once, not at every start.

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::receipt::EngineKind;

use crate::store::Store;

fn key(engine: EngineKind) -> String {
    format!("speed.{}", engine.name())
}

/// Records `engine`'s calibrated speed.
pub fn record(store: &Store, engine: EngineKind, ops_per_s: u64) -> anyhow::Result<()> {
    store.set(&key(engine), &ops_per_s.to_string())
}

/// The engines of this build with their cached calibration, fastest first;
/// `None` if some engine has not been calibrated on this device yet.
pub fn cached(store: &Store) -> anyhow::Result<Option<Vec<EngineSpeed>>> {
    let mut speeds = Vec::new();
    for engine in crate::runtime::build_engines() {
        match store.get(&key(engine))?.and_then(|v| v.parse::<u64>().ok()) {
            Some(ops_per_s) => speeds.push(EngineSpeed { engine, ops_per_s }),
            None => return Ok(None),
        }
    }
    speeds.sort_by_key(|s| std::cmp::Reverse(s.ops_per_s));
    Ok(Some(speeds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_are_cached_only_once_every_engine_has_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        assert_eq!(cached(&store).expect("read"), None);
        let engines = crate::runtime::build_engines();
        for (i, engine) in engines.iter().enumerate() {
            record(&store, *engine, 1_000 * (i as u64 + 1)).expect("record");
        }
        let speeds = cached(&store).expect("read").expect("all calibrated");
        assert_eq!(speeds.len(), engines.len());
        assert!(speeds.windows(2).all(|w| w[0].ops_per_s >= w[1].ops_per_s));
    }
}
