//! The node's state in sled (the only file that knows sled): its name, the
//! job submitters it trusts, the peers it has seen (to redial after a
//! restart), its jobs and results, and the signed module records it knows. sled holds an exclusive lock on its files, so a second daemon on
//! the same data dir fails here with a clear message instead of corrupting it.

use std::path::Path;

use anyhow::Context;
use corral_protocol::codec;
use corral_protocol::ids::PeerKey;
use serde::{Deserialize, Serialize};

/// The store handle (cheap to clone).
#[derive(Clone)]
pub struct Store {
    config: sled::Tree,
    trust: sled::Tree,
    peers: sled::Tree,
    jobs: sled::Tree,
    tasks: sled::Tree,
    outbox: sled::Tree,
    modules: sled::Tree,
    db: sled::Db,
}

/// The record trees: jobs this node coordinates, their tasks, and the signed
/// results this node (as a worker) has not had acknowledged yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Job records, by job id.
    Jobs,
    /// Task records, by job id and big-endian index.
    Tasks,
    /// Unacknowledged receipts, by job id, index and attempt.
    Outbox,
    /// Signed module records (their canonical bytes), by name, version and
    /// publisher; bounded by the module catalogs the node keeps in memory
    /// (the `modules` room writes only what they hold).
    Modules,
}

/// A trusted job submitter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustEntry {
    /// The submitter's key (hex).
    pub key: String,
    /// A name for people.
    pub name: String,
    /// When it was added, unix ms.
    pub added_ms: u64,
}

/// A peer seen before, with the addresses it was reached at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownPeer {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its name.
    pub name: String,
    /// Multiaddrs it was reached at (at most a few).
    pub addresses: Vec<String>,
    /// Last seen, unix ms.
    pub last_seen_ms: u64,
}

/// How long to wait for another handle's lock to go away.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Most known peers kept.
const MAX_KNOWN_PEERS: usize = 1024;

impl Store {
    /// Opens (or creates) the store in `data_dir/store`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("store");
        // sled releases its file lock when its background flusher lets go of
        // the database, a moment after the last handle is dropped (or the
        // process that held it exits); a lock that outlasts this wait is held.
        let started = std::time::Instant::now();
        let db = loop {
            match sled::Config::new()
                .path(&path)
                .cache_capacity(4 * 1024 * 1024)
                .open()
            {
                Ok(db) => break db,
                Err(sled::Error::Io(io)) if io.to_string().contains("lock") => {
                    if started.elapsed() > LOCK_WAIT {
                        anyhow::bail!(
                            "{} is in use by another corral process (a daemon already runs on \
                             this data dir; stop it with `corral leave`, or pass another --data-dir)",
                            data_dir.display()
                        );
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(other) => anyhow::bail!("cannot open the store at {}: {other}", path.display()),
            }
        };
        Ok(Self {
            config: db.open_tree("config").context("store: config")?,
            trust: db.open_tree("trust").context("store: trust")?,
            peers: db.open_tree("peers").context("store: peers")?,
            jobs: db.open_tree("jobs").context("store: jobs")?,
            tasks: db.open_tree("tasks").context("store: tasks")?,
            outbox: db.open_tree("outbox").context("store: outbox")?,
            modules: db.open_tree("modules").context("store: modules")?,
            db,
        })
    }

    /// A config value.
    pub fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .config
            .get(key)
            .context("store read")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Sets a config value (durably).
    pub fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.config
            .insert(key, value.as_bytes())
            .context("store write")?;
        self.flush()
    }

    /// Adds a trusted submitter (replacing its entry).
    pub fn trust_add(&self, key: &PeerKey, name: &str, now_ms: u64) -> anyhow::Result<()> {
        let entry = TrustEntry {
            key: key.to_string(),
            name: name.to_string(),
            added_ms: now_ms,
        };
        self.trust
            .insert(key.as_bytes(), serde_json::to_vec(&entry)?)
            .context("store write")?;
        self.flush()
    }

    /// Removes a trusted submitter; whether it was there.
    pub fn trust_remove(&self, key: &PeerKey) -> anyhow::Result<bool> {
        let removed = self
            .trust
            .remove(key.as_bytes())
            .context("store write")?
            .is_some();
        self.flush()?;
        Ok(removed)
    }

    /// Whether `key` may submit jobs here.
    pub fn is_trusted(&self, key: &PeerKey) -> anyhow::Result<bool> {
        self.trust
            .contains_key(key.as_bytes())
            .context("store read")
    }

    /// All trusted submitters.
    pub fn trust_list(&self) -> anyhow::Result<Vec<TrustEntry>> {
        self.trust
            .iter()
            .values()
            .map(|v| {
                let v = v.context("store read")?;
                serde_json::from_slice(&v).context("a trust entry in the store is corrupt")
            })
            .collect()
    }

    /// Records a peer seen now.
    pub fn remember_peer(&self, key: &str, peer: &KnownPeer) -> anyhow::Result<()> {
        if self.peers.len() >= MAX_KNOWN_PEERS && !self.peers.contains_key(key)? {
            // Forget the stalest one to make room.
            let stalest = self
                .known_peers()?
                .into_iter()
                .min_by_key(|(_, p)| p.last_seen_ms)
                .map(|(k, _)| k);
            if let Some(k) = stalest {
                self.peers.remove(k)?;
            }
        }
        self.peers
            .insert(key, serde_json::to_vec(peer)?)
            .context("store write")?;
        Ok(())
    }

    /// Peers seen before (corrupt entries are skipped).
    pub fn known_peers(&self) -> anyhow::Result<Vec<(String, KnownPeer)>> {
        let mut out = Vec::new();
        for item in self.peers.iter() {
            let (k, v) = item.context("store read")?;
            if let Ok(peer) = serde_json::from_slice(&v) {
                out.push((String::from_utf8_lossy(&k).into_owned(), peer));
            }
        }
        Ok(out)
    }

    fn records(&self, which: Records) -> &sled::Tree {
        match which {
            Records::Jobs => &self.jobs,
            Records::Tasks => &self.tasks,
            Records::Outbox => &self.outbox,
            Records::Modules => &self.modules,
        }
    }

    /// Stores a record under `key` (postcard after [`BINARY_RECORD`]).
    pub fn put_record<T: Serialize>(
        &self,
        which: Records,
        key: &[u8],
        value: &T,
    ) -> anyhow::Result<()> {
        let bytes =
            postcard::to_extend(value, vec![BINARY_RECORD]).context("store: encode record")?;
        self.records(which)
            .insert(key, bytes)
            .context("store write")?;
        Ok(())
    }

    /// Stores raw bytes under `key`.
    pub fn put_raw(&self, which: Records, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        self.records(which)
            .insert(key, value)
            .context("store write")?;
        Ok(())
    }

    /// Removes a record.
    pub fn remove_record(&self, which: Records, key: &[u8]) -> anyhow::Result<()> {
        self.records(which).remove(key).context("store write")?;
        Ok(())
    }

    /// Every record whose key starts with `prefix`, raw. A record that
    /// cannot be read is skipped with a warning, never fatal.
    pub fn scan_raw(&self, which: Records, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.records(which)
            .scan_prefix(prefix)
            .filter_map(|item| match item {
                Ok((k, v)) => Some((k.to_vec(), v.to_vec())),
                Err(e) => {
                    tracing::warn!("store: unreadable record skipped: {e}");
                    None
                }
            })
            .collect()
    }

    /// Every record whose key starts with `prefix`, decoded; records that do
    /// not decode are skipped with a warning.
    pub fn scan_records<T: serde::de::DeserializeOwned>(
        &self,
        which: Records,
        prefix: &[u8],
    ) -> Vec<(Vec<u8>, T)> {
        self.scan_raw(which, prefix)
            .into_iter()
            .filter_map(|(k, v)| match decode_record(&v) {
                Ok(value) => Some((k, value)),
                Err(e) => {
                    tracing::warn!("store: a {which:?} record does not decode and is skipped: {e}");
                    None
                }
            })
            .collect()
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.db.flush().context("store flush")?;
        Ok(())
    }

    /// Flushes on a blocking thread when called inside a tokio runtime (an
    /// event loop must not wait for the disk), at once otherwise.
    pub fn flush_soon(&self) {
        let flush = {
            let store = self.clone();
            move || {
                if let Err(e) = store.flush() {
                    tracing::warn!("{e:#}");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(flush);
            }
            Err(_) => flush(),
        }
    }
}

/// The first byte of a record in postcard. A record without it is JSON,
/// as every record was until postcard took over (a tenth of a busy
/// coordinator's CPU went to writing its task records as JSON); those are
/// still read. No JSON text starts with a zero byte.
const BINARY_RECORD: u8 = 0;

/// A record as [`Store::put_record`] wrote it, or as JSON.
fn decode_record<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    match bytes.split_first() {
        // This node's own store: no bound beyond what sled holds.
        Some((&BINARY_RECORD, body)) => Ok(codec::from_canonical_bytes(body, usize::MAX)?),
        _ => Ok(serde_json::from_slice(bytes)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_survives_reopening_and_a_second_opener_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = PeerKey::from_bytes([4; 32]);
        {
            let store = Store::open(dir.path()).expect("open");
            store.trust_add(&key, "laptop", 1).expect("add");
            store.set("name", "pi-1").expect("set");
            let err = Store::open(dir.path()).err().expect("locked");
            assert!(
                err.to_string().contains("in use by another corral process"),
                "{err}"
            );
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert!(store.is_trusted(&key).expect("read"));
        assert_eq!(store.get("name").expect("get").as_deref(), Some("pi-1"));
        assert_eq!(store.trust_list().expect("list")[0].name, "laptop");
        assert!(store.trust_remove(&key).expect("remove"));
        assert!(!store.is_trusted(&key).expect("read"));
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        name: String,
        hash: [u8; 32],
        runs: Vec<Option<u64>>,
    }

    #[test]
    fn records_read_back_in_postcard_and_as_json_and_bad_ones_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let sample = Sample {
            name: "task".into(),
            hash: [9; 32],
            runs: vec![Some(3), None],
        };
        store
            .put_record(Records::Tasks, b"a", &sample)
            .expect("put");
        let raw = store.scan_raw(Records::Tasks, b"a");
        assert_eq!(raw[0].1[0], BINARY_RECORD, "written in postcard");
        let json = serde_json::to_vec(&sample).expect("json");
        assert!(raw[0].1.len() * 2 < json.len(), "postcard is the smaller");
        // A record an earlier version wrote as JSON.
        store.put_raw(Records::Tasks, b"b", &json).expect("put");
        // Cut short, a byte too many, and garbage: skipped, not fatal.
        let mut long = raw[0].1.clone();
        long.push(0);
        store
            .put_raw(Records::Tasks, b"c", &raw[0].1[..10])
            .expect("put");
        store.put_raw(Records::Tasks, b"d", &long).expect("put");
        store
            .put_raw(Records::Tasks, b"e", b"\xff\xfe")
            .expect("put");
        let read = store.scan_records::<Sample>(Records::Tasks, b"");
        let keys: Vec<&[u8]> = read.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"a", b"b"]);
        assert!(read.iter().all(|(_, s)| *s == sample));
        assert!(decode_record::<Sample>(&long).is_err());
    }
}
