//! The catalog: the module records a node holds, bounded, in memory, with
//! each publisher's versions immutable.

use std::collections::BTreeMap;

use semver::Version;

use super::{Claim, ModuleRecord, ModuleRef, RecordError, ResolveError, Resolved, resolve};
use crate::ids::PeerKey;

/// Most records a catalog holds.
pub const MAX_CATALOG_RECORDS: usize = 4096;
/// Most versions of one name a catalog holds from one publisher.
pub const MAX_VERSIONS_PER_PUBLISHER: usize = 64;

/// What [`Catalog::insert`] did with a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// A record the catalog did not hold: now it does.
    Inserted,
    /// The catalog already held this record, or a later one of the same
    /// module (nothing changed).
    Duplicate,
    /// The record replaced an earlier one of the same publisher, name,
    /// version and module (a later `published_ms`: its description may
    /// differ).
    Replaced,
    /// The record was not taken (boxed: a refusal is far larger than the
    /// other outcomes, and rarer).
    Refused(Box<Refusal>),
}

/// Why a catalog did not take a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The record breaks the rules.
    #[error(transparent)]
    Invalid(#[from] RecordError),
    /// Its publisher already published this version as another module:
    /// versions are immutable, and the first one held stays.
    #[error(
        "{} already published {name}@{version} as {} ({} bytes), not {} ({} bytes); a version \
         is never re-published with another module: publish a new version",
        held.publisher.short(), held.module.short(), held.size, offered.module.short(),
        offered.size
    )]
    VersionTaken {
        /// The name.
        name: String,
        /// The version.
        version: Version,
        /// What the catalog holds.
        held: Claim,
        /// What was offered instead.
        offered: Claim,
    },
    /// The publisher has as many versions of this name as a catalog keeps.
    #[error(
        "{} already has {limit} versions of {name} in this catalog, the most it keeps",
        publisher.short()
    )]
    TooManyVersions {
        /// The name.
        name: String,
        /// The publisher.
        publisher: PeerKey,
        /// The bound.
        limit: usize,
    },
    /// The catalog holds as many records as it may.
    #[error("the module catalog is full ({limit} records)")]
    Full {
        /// The bound.
        limit: usize,
    },
}

impl Refusal {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Invalid(e) => e.code(),
            Refusal::VersionTaken { .. } => "version_taken",
            Refusal::TooManyVersions { .. } => "too_many_versions",
            Refusal::Full { .. } => "catalog_full",
        }
    }
}

/// The module records a node holds: at most [`MAX_CATALOG_RECORDS`], at
/// most [`MAX_VERSIONS_PER_PUBLISHER`] versions of a name per publisher, one
/// record per publisher, name and version.
///
/// Pure and in memory: the node verifies records ([`super::verify_record`])
/// before inserting them, and stores and gossips them itself. A full
/// catalog refuses new records rather than forgetting old ones, so a flood
/// cannot push out what it holds; which publishers' records a node takes
/// in at all (its mesh, its trusted keys) is the node's choice.
///
/// Versions are immutable: the first module a catalog holds for a
/// publisher's `name@version` stays, and another is refused
/// ([`Refusal::VersionTaken`]). Two nodes that heard a publisher's two
/// versions in different orders may keep different ones; a publisher that
/// signs two modules under one version has broken its word either way.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// By name, then version and publisher.
    by_name: BTreeMap<String, BTreeMap<(Version, PeerKey), ModuleRecord>>,
    len: usize,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes `record` in, if it is valid and within the bounds (see
    /// [`Insert`] and the type's docs).
    pub fn insert(&mut self, record: ModuleRecord) -> Insert {
        if let Err(e) = record.validate() {
            return Insert::Refused(Box::new(Refusal::Invalid(e)));
        }
        let total = self.len;
        let versions = self.by_name.entry(record.name.clone()).or_default();
        let key = (record.version.clone(), record.publisher);
        if let Some(held) = versions.get_mut(&key) {
            if !held.same_module(&record) {
                return Insert::Refused(Box::new(Refusal::VersionTaken {
                    name: record.name.clone(),
                    version: record.version.clone(),
                    held: Claim::of(held),
                    offered: Claim::of(&record),
                }));
            }
            // Of two records of one module, the later stands (an edited
            // description); on a tie, the one held.
            if record.published_ms > held.published_ms {
                *held = record;
                return Insert::Replaced;
            }
            return Insert::Duplicate;
        }
        let refusal = if versions
            .keys()
            .filter(|(_, p)| *p == record.publisher)
            .count()
            >= MAX_VERSIONS_PER_PUBLISHER
        {
            Some(Refusal::TooManyVersions {
                name: record.name.clone(),
                publisher: record.publisher,
                limit: MAX_VERSIONS_PER_PUBLISHER,
            })
        } else if total >= MAX_CATALOG_RECORDS {
            Some(Refusal::Full {
                limit: MAX_CATALOG_RECORDS,
            })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if versions.is_empty() {
                self.by_name.remove(&record.name);
            }
            return Insert::Refused(Box::new(refusal));
        }
        versions.insert(key, record);
        self.len += 1;
        Insert::Inserted
    }

    /// The record of `publisher`'s `name@version`, if held.
    pub fn get(&self, name: &str, version: &Version, publisher: &PeerKey) -> Option<&ModuleRecord> {
        self.by_name.get(name)?.get(&(version.clone(), *publisher))
    }

    /// Every record, by name, then version (ascending, semver order), then
    /// publisher.
    pub fn list(&self) -> impl Iterator<Item = &ModuleRecord> + '_ {
        self.by_name.values().flat_map(BTreeMap::values)
    }

    /// The records of `name`, by version then publisher.
    pub fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a ModuleRecord> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flat_map(BTreeMap::values)
    }

    /// [`resolve`] over the records held.
    pub fn resolve(
        &self,
        trusted: impl Fn(&PeerKey) -> bool,
        want: &ModuleRef,
    ) -> Result<Resolved, ResolveError> {
        resolve(self.named(&want.name), trusted, want)
    }

    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::ContentHash;
    use crate::module_record::tests::{PUBLISHED, record};

    fn pk(n: u8) -> PeerKey {
        PeerKey::from_bytes([n; 32])
    }

    fn refusal(outcome: Insert) -> Refusal {
        match outcome {
            Insert::Refused(refusal) => *refusal,
            other => panic!("taken: {other:?}"),
        }
    }

    #[test]
    fn records_are_listed_by_name_then_semver_order() {
        let mut catalog = Catalog::new();
        assert!(catalog.is_empty());
        for (name, version, publisher) in [
            ("zeta", "1.0.0", 1),
            ("alpha", "1.10.0", 1),
            ("alpha", "1.2.0", 2),
            ("alpha", "1.2.0", 1),
            ("alpha", "1.2.0-rc.1", 1),
            ("beta", "0.1.0", 3),
        ] {
            let r = record(name, version, pk(publisher), "m");
            assert_eq!(catalog.insert(r), Insert::Inserted);
        }
        let listed: Vec<String> = catalog
            .list()
            .map(|r| format!("{}@{} {}", r.name, r.version, r.publisher.as_bytes()[0]))
            .collect();
        assert_eq!(
            listed,
            [
                "alpha@1.2.0-rc.1 1",
                "alpha@1.2.0 1",
                "alpha@1.2.0 2",
                "alpha@1.10.0 1",
                "beta@0.1.0 3",
                "zeta@1.0.0 1",
            ]
        );
        assert_eq!(catalog.len(), 6);
        assert_eq!(catalog.named("alpha").count(), 4);
        assert_eq!(catalog.named("nothing").count(), 0);
        let v = crate::module_record::parse_version("1.2.0").expect("v");
        assert_eq!(
            catalog.get("alpha", &v, &pk(2)),
            Some(&record("alpha", "1.2.0", pk(2), "m"))
        );
        assert_eq!(catalog.get("alpha", &v, &pk(3)), None);
    }

    #[test]
    fn a_published_version_is_immutable_first_one_wins() {
        let mut catalog = Catalog::new();
        let first = record("render", "1.0.0", pk(1), "first");
        assert_eq!(catalog.insert(first.clone()), Insert::Inserted);
        let second = record("render", "1.0.0", pk(1), "second");
        let refused = refusal(catalog.insert(second.clone()));
        assert_eq!(refused.code(), "version_taken");
        assert_eq!(
            refused,
            Refusal::VersionTaken {
                name: "render".into(),
                version: first.version.clone(),
                held: Claim::of(&first),
                offered: Claim::of(&second),
            }
        );
        assert!(
            refused.to_string().contains("publish a new version"),
            "{refused}"
        );
        // Even when the second claims to be later.
        let mut later = second.clone();
        later.published_ms += 1;
        assert_eq!(refusal(catalog.insert(later)).code(), "version_taken");
        let mut resized = first.clone();
        resized.size += 1;
        assert_eq!(refusal(catalog.insert(resized)).code(), "version_taken");
        assert_eq!(catalog.list().collect::<Vec<_>>(), vec![&first]);
        // Another publisher may publish its own render@1.0.0: resolution
        // decides what that means for whoever trusts both.
        assert_eq!(
            catalog.insert(record("render", "1.0.0", pk(2), "second")),
            Insert::Inserted
        );
        let want = ModuleRef::parse("render").expect("ref");
        assert_eq!(
            catalog.resolve(|_| true, &want).expect_err("both").code(),
            "conflict"
        );
        assert_eq!(
            catalog.resolve(|k| *k == pk(1), &want).map(|r| r.record),
            Ok(first)
        );
    }

    #[test]
    fn copies_are_duplicates_and_a_later_edit_replaces() {
        let mut catalog = Catalog::new();
        let r = record("render", "1.0.0", pk(1), "m");
        assert_eq!(catalog.insert(r.clone()), Insert::Inserted);
        assert_eq!(catalog.insert(r.clone()), Insert::Duplicate);
        let mut edited = r.clone();
        edited.description = "better words".into();
        edited.published_ms = PUBLISHED + 10;
        assert_eq!(catalog.insert(edited.clone()), Insert::Replaced);
        // The older text again, or another at the same time: no change.
        assert_eq!(catalog.insert(r.clone()), Insert::Duplicate);
        let mut tie = edited.clone();
        tie.description = "other words".into();
        assert_eq!(catalog.insert(tie), Insert::Duplicate);
        assert_eq!(catalog.list().collect::<Vec<_>>(), vec![&edited]);
        assert_eq!(catalog.len(), 1);
    }

    #[test]
    fn invalid_records_are_refused_by_name() {
        let mut catalog = Catalog::new();
        let mut r = record("render", "1.0.0", pk(1), "m");
        r.name = "Render".into();
        assert_eq!(refusal(catalog.insert(r)).code(), "bad_name");
        let mut r = record("render", "1.0.0", pk(1), "m");
        r.version.build = semver::BuildMetadata::new("b").expect("b");
        assert_eq!(refusal(catalog.insert(r)).code(), "bad_version");
        assert!(catalog.is_empty());
    }

    #[test]
    fn versions_per_publisher_and_records_in_all_are_bounded() {
        let mut catalog = Catalog::new();
        let version = |n: usize| format!("1.0.{n}");
        for n in 0..MAX_VERSIONS_PER_PUBLISHER {
            let r = record("render", &version(n), pk(1), "m");
            assert_eq!(catalog.insert(r), Insert::Inserted);
        }
        let more = record("render", &version(MAX_VERSIONS_PER_PUBLISHER), pk(1), "m");
        let refused = refusal(catalog.insert(more.clone()));
        assert_eq!(refused.code(), "too_many_versions");
        assert!(
            refused.to_string().contains("64 versions of render"),
            "{refused}"
        );
        // Its held versions still take copies; other publishers and other
        // names are counted apart.
        let held = record("render", &version(0), pk(1), "m");
        assert_eq!(catalog.insert(held), Insert::Duplicate);
        let mut by_two = more.clone();
        by_two.publisher = pk(2);
        assert_eq!(catalog.insert(by_two), Insert::Inserted);
        let mut other_name = more;
        other_name.name = "other".into();
        assert_eq!(catalog.insert(other_name), Insert::Inserted);

        // Fill it: 4096 records in all.
        let mut n = catalog.len();
        'fill: for publisher in 10..=u8::MAX {
            for v in 0..MAX_VERSIONS_PER_PUBLISHER {
                if n == MAX_CATALOG_RECORDS {
                    break 'fill;
                }
                let r = record("fill", &version(v), pk(publisher), "m");
                assert_eq!(catalog.insert(r), Insert::Inserted);
                n += 1;
            }
        }
        assert_eq!(catalog.len(), MAX_CATALOG_RECORDS);
        let refused = refusal(catalog.insert(record("new", "1.0.0", pk(1), "m")));
        assert_eq!(
            refused,
            Refusal::Full {
                limit: MAX_CATALOG_RECORDS
            }
        );
        assert_eq!(refused.code(), "catalog_full");
        assert_eq!(catalog.named("new").count(), 0);
        // A full catalog still recognises what it holds and takes edits.
        let mut edited = record("render", &version(3), pk(1), "m");
        assert_eq!(catalog.insert(edited.clone()), Insert::Duplicate);
        edited.published_ms += 1;
        assert_eq!(catalog.insert(edited), Insert::Replaced);
        let mut odd = record("render", &version(3), pk(1), "m");
        odd.module = ContentHash::of(b"odd");
        assert_eq!(refusal(catalog.insert(odd)).code(), "version_taken");
        assert_eq!(catalog.len(), MAX_CATALOG_RECORDS);
        assert_eq!(catalog.list().count(), MAX_CATALOG_RECORDS);
    }
}
