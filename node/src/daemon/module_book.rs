//! The daemon's state for modules by name (issue 22): the records held,
//! their gossip topic and the bounds on fetches; what the daemon does with
//! them is in the next file, `modules.rs`.

use std::sync::Arc;
use std::time::Instant;

use corral_protocol::ids::PeerKey;
use libp2p::gossipsub::IdentTopic;
use tokio::sync::Semaphore;

use crate::clock::now_ms;
use crate::modules::Known;
use crate::store::Store;

/// Module fetches under way at once.
pub(super) const MAX_MODULE_FETCHES: usize = 4;

/// The daemon's side of modules by name.
pub(super) struct ModuleBook {
    /// The records held.
    pub(super) known: Known,
    /// `corral/modules/1`.
    pub(super) topic: IdentTopic,
    /// Bounds the module fetches under way.
    pub(super) fetching: Arc<Semaphore>,
    /// When the last batch went out.
    pub(super) announced: Option<Instant>,
    /// Peers in the view at the last batch: more means someone joined.
    pub(super) peers_then: usize,
}

impl ModuleBook {
    /// Loads the records kept in `store` (checked again, now) for the node
    /// `me`, gossiped on `topic`.
    pub(super) fn load(store: &Store, me: PeerKey, topic: IdentTopic) -> Self {
        let known = Known::load(store, now_ms(), &trusted_by(store, me));
        if !known.is_empty() {
            tracing::info!(records = known.len(), "module records loaded");
        }
        Self {
            known,
            topic,
            fetching: Arc::new(Semaphore::new(MAX_MODULE_FETCHES)),
            announced: None,
            peers_then: 0,
        }
    }
}

/// Whether `key` counts as a trusted publisher here: this node, or a key of
/// its trust list.
pub(super) fn trusted_by(store: &Store, me: PeerKey) -> impl Fn(&PeerKey) -> bool + '_ {
    move |k: &PeerKey| *k == me || store.is_trusted(k).unwrap_or(false)
}
