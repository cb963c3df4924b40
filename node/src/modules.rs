//! The module records this device knows (issue 22): named, signed module
//! versions, held in memory as two bounded catalogs with each record's
//! signed bytes (to store and to gossip again), loaded from and kept in the
//! store's module tree.
//!
//! Which records are kept, and why:
//!
//! - **Only records that verify** ([`verify_record`]): a bad signature, a
//!   bad name or version, a record from the future is refused with its
//!   reason, never kept.
//! - **Trusted publishers cannot be crowded out.** A record whose publisher
//!   this device trusts when it arrives (its trust list, and itself) goes
//!   into the main catalog (at most
//!   [`corral_protocol::module_record::MAX_CATALOG_RECORDS`]); any other mesh
//!   member's goes into a separate, smaller one
//!   ([`MAX_STRANGER_RECORDS`]). Strangers' records are kept so `corral
//!   modules` can show them and a key trusted later is usable at once, but
//!   however many a stranger signs, they fill only their own catalog.
//!   A record stays where it was put when trust changes later (resolution
//!   asks about trust at the time it runs, over both catalogs).
//! - **Versions are immutable per publisher** across both catalogs: the
//!   first module held for a publisher's `name@version` stays.
//! - The store holds exactly what the catalogs hold: a record is written
//!   when it is taken in and a stored one that no longer verifies or fits
//!   is removed when the store is loaded.

use std::collections::{BTreeMap, HashSet};

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::module_record::{
    Catalog, Insert, ModuleRecord, ModuleRef, Refusal, ResolveError, Resolved, resolve,
    verify_record,
};

use crate::store::{Records, Store};

/// Most records kept from publishers this device did not trust when they
/// arrived.
pub const MAX_STRANGER_RECORDS: usize = 512;

/// A record's place: name, version (as text) and publisher.
pub type RecordKey = (String, String, PeerKey);

/// What [`Known::take`] did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken {
    /// A record not held before: now it is (store it, spread it).
    New(Box<ModuleRecord>),
    /// It replaced the held record of the same module (a later edit of its
    /// description): store it, spread it.
    Replaced(Box<ModuleRecord>),
    /// Already held (or an older copy of what is held): nothing to do.
    Duplicate,
}

/// The module records this device knows. See the module docs for what is
/// kept.
#[derive(Debug, Default)]
pub struct Known {
    /// Records of publishers trusted when they arrived.
    trusted: Catalog,
    /// Records of anyone else in the mesh, at most [`MAX_STRANGER_RECORDS`].
    strangers: Catalog,
    /// The signed bytes of every record held, by its place.
    signed: BTreeMap<RecordKey, Vec<u8>>,
    /// The hashes of the signed bytes held: a copy heard again is known
    /// without checking its signature again.
    heard: HashSet<ContentHash>,
    /// Where the last announcement batch ended.
    cursor: Option<RecordKey>,
}

/// The place of `record`.
pub fn key_of(record: &ModuleRecord) -> RecordKey {
    (
        record.name.clone(),
        record.version.to_string(),
        record.publisher,
    )
}

/// The store key of a record's place: `name`, NUL, `version`, NUL, the
/// publisher's key in hex (so a scan by `name\0` finds every version).
pub fn store_key(key: &RecordKey) -> Vec<u8> {
    format!("{}\0{}\0{}", key.0, key.1, key.2).into_bytes()
}

impl Known {
    /// Nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.trusted.len() + self.strangers.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes in a signed record (its canonical bytes) heard or published at
    /// `now_ms`: verified first (unless these very bytes are held), then
    /// put in the catalog its publisher's trust decides. A refusal is
    /// boxed, as [`Insert::Refused`]'s is: it is far larger than the rest.
    pub fn take(
        &mut self,
        bytes: &[u8],
        now_ms: u64,
        trusted: &dyn Fn(&PeerKey) -> bool,
    ) -> Result<Taken, Box<Refusal>> {
        let digest = ContentHash::of(bytes);
        if self.heard.contains(&digest) {
            return Ok(Taken::Duplicate);
        }
        let record = verify_record(bytes, now_ms).map_err(|e| Box::new(Refusal::Invalid(e)))?;
        let key = key_of(&record);
        let held = |c: &Catalog| {
            c.get(&record.name, &record.version, &record.publisher)
                .is_some()
        };
        // A publisher's version stays in the catalog that holds it.
        let into_trusted = if held(&self.trusted) {
            true
        } else if held(&self.strangers) {
            false
        } else {
            trusted(&record.publisher)
        };
        if !into_trusted && !held(&self.strangers) && self.strangers.len() >= MAX_STRANGER_RECORDS {
            return Err(Box::new(Refusal::Full {
                limit: MAX_STRANGER_RECORDS,
            }));
        }
        let catalog = if into_trusted {
            &mut self.trusted
        } else {
            &mut self.strangers
        };
        let taken = match catalog.insert(record.clone()) {
            Insert::Inserted => Taken::New(Box::new(record)),
            Insert::Replaced => Taken::Replaced(Box::new(record)),
            Insert::Duplicate => return Ok(Taken::Duplicate),
            Insert::Refused(refusal) => return Err(refusal),
        };
        if let Some(old) = self.signed.insert(key, bytes.to_vec()) {
            self.heard.remove(&ContentHash::of(&old));
        }
        self.heard.insert(digest);
        Ok(taken)
    }

    /// Every record held, by name, version (semver order) and publisher.
    pub fn list(&self) -> Vec<&ModuleRecord> {
        let mut all: Vec<&ModuleRecord> =
            self.trusted.list().chain(self.strangers.list()).collect();
        all.sort_by(|a, b| {
            (&a.name, &a.version, &a.publisher).cmp(&(&b.name, &b.version, &b.publisher))
        });
        all
    }

    /// The module `want` means, counting only the publishers `trusted`
    /// accepts now (see [`resolve`]).
    pub fn resolve(
        &self,
        trusted: &dyn Fn(&PeerKey) -> bool,
        want: &ModuleRef,
    ) -> Result<Resolved, ResolveError> {
        resolve(
            self.trusted
                .named(&want.name)
                .chain(self.strangers.named(&want.name)),
            trusted,
            want,
        )
    }

    /// The signed bytes of the record at `key`.
    pub fn signed(&self, key: &RecordKey) -> Option<&[u8]> {
        self.signed.get(key).map(Vec::as_slice)
    }

    /// Up to `most` records' signed bytes to announce, going round all the
    /// records held from one call to the next.
    pub fn next_batch(&mut self, most: usize) -> Vec<Vec<u8>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = match &self.cursor {
            Some(key) => (Excluded(key.clone()), Unbounded),
            None => (Unbounded, Unbounded),
        };
        let mut batch: Vec<(RecordKey, Vec<u8>)> = self
            .signed
            .range(start)
            .take(most)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if batch.len() < most {
            // Round again from the start, up to where this batch began.
            let more = most - batch.len();
            let wrapped = self
                .signed
                .iter()
                .take_while(|(k, _)| batch.first().is_none_or(|(first, _)| *k < first))
                .take(more)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>();
            batch.extend(wrapped);
        }
        self.cursor = batch.last().map(|(k, _)| k.clone());
        batch.into_iter().map(|(_, v)| v).collect()
    }

    /// The modules `publisher` published (the blobs a publisher keeps).
    pub fn published_by(&self, publisher: &PeerKey) -> Vec<ContentHash> {
        self.trusted
            .list()
            .chain(self.strangers.list())
            .filter(|r| &r.publisher == publisher)
            .map(|r| r.module)
            .collect()
    }

    /// Loads the records kept in `store`, checked again at `now_ms`; a
    /// stored record that no longer verifies or fits is removed from the
    /// store with a warning.
    pub fn load(store: &Store, now_ms: u64, trusted: &dyn Fn(&PeerKey) -> bool) -> Self {
        let mut known = Self::new();
        for (key, bytes) in store.scan_raw(Records::Modules, b"") {
            if let Err(refusal) = known.take(&bytes, now_ms, trusted) {
                tracing::warn!(
                    code = refusal.code(),
                    "a stored module record is dropped: {refusal}"
                );
                if let Err(e) = store.remove_record(Records::Modules, &key) {
                    tracing::warn!("{e:#}");
                }
            }
        }
        known
    }
}

/// Writes a record taken in to the store (not flushed: see
/// [`Store::flush`]).
pub fn keep(store: &Store, record: &ModuleRecord, bytes: &[u8]) -> anyhow::Result<()> {
    store.put_raw(Records::Modules, &store_key(&key_of(record)), bytes)
}

/// One record as `corral modules --json` lists it (fields may be added,
/// never renamed): `name`, `version`, `module` (its sha256, hex), `size`
/// (bytes), `description`, `publisher` (its key, hex), `trusted` (whether
/// this device trusts the publisher now), `published_ms` (the publisher's
/// clock) and `local` (whether the module's blob is on this device).
pub fn entry(record: &ModuleRecord, trusted: bool, local: bool) -> serde_json::Value {
    serde_json::json!({
        "name": record.name,
        "version": record.version.to_string(),
        "module": record.module.to_hex(),
        "size": record.size,
        "description": record.description,
        "publisher": record.publisher.to_string(),
        "trusted": trusted,
        "published_ms": record.published_ms,
        "local": local,
    })
}

#[cfg(test)]
mod tests;
