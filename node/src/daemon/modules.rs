//! Modules by name in the daemon (issue 22): the records this device knows
//! ([`Known`]) taken in from the `corral/modules/1` gossip topic (one signed
//! record per message, checked before it is kept or forwarded), announced
//! again now and then so devices that joined later learn them, and the
//! control requests that publish, list and resolve them — fetching a
//! resolved module's blob from its publishers or any peer that has it.
//! The store is written off the loop.

use std::time::{Duration, Instant};

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::module_record::{
    MAX_SIGNED_RECORD_BYTES, ModuleRecord, ModuleRef, Refusal, verify_record,
};
use libp2p::gossipsub;
use serde_json::json;
use tokio::sync::oneshot;

use super::module_book::trusted_by;
use super::node::Node;
use crate::clock::now_ms;
use crate::control::server::Answer;
use crate::control::{ControlError, Request};
use crate::modules::{Taken, entry, keep};

/// How often a batch of the records held is announced again.
pub(super) const ANNOUNCE_EVERY: Duration = Duration::from_secs(30);
/// How often the announcer looks whether a batch is due (sooner than
/// [`ANNOUNCE_EVERY`] when a peer has joined).
pub(super) const ANNOUNCE_TICK: Duration = Duration::from_secs(3);
/// Records per announcement batch (one gossip message each).
const ANNOUNCE_BATCH: usize = 16;
/// Devices asked for a module's blob, publishers first.
const MAX_FETCH_SOURCES: usize = 8;
/// Longest a fetch for a control request may take (the CLI waits 30 s for
/// an answer).
const FETCH_DEADLINE: Duration = Duration::from_secs(25);

impl Node {
    /// A gossiped module record: kept and forwarded if it verifies and is
    /// new; a record that breaks the rules is refused and logged (and its
    /// relayer marked by gossipsub), one already held or that does not fit
    /// is ignored.
    pub(super) fn take_module_record(
        &mut self,
        message: gossipsub::Message,
    ) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let Some(source) = message.source else {
            return Reject;
        };
        if message.data.len() > MAX_SIGNED_RECORD_BYTES {
            tracing::warn!(%source, len = message.data.len(), code = "too_large", "an oversize module record was refused");
            return Reject;
        }
        let trusted = trusted_by(&self.store, self.me);
        match self.modules.known.take(&message.data, now_ms(), &trusted) {
            Ok(Taken::New(record)) | Ok(Taken::Replaced(record)) => {
                tracing::info!(
                    module = %format!("{}@{}", record.name, record.version),
                    publisher = %record.publisher.short(),
                    "module record learned"
                );
                self.keep_off_loop(*record, message.data, None);
                Accept
            }
            Ok(Taken::Duplicate) => Ignore,
            Err(refusal) if matches!(*refusal, Refusal::Invalid(_)) => {
                tracing::warn!(%source, code = refusal.code(), "a gossiped module record was refused: {refusal}");
                Reject
            }
            Err(refusal) => {
                tracing::info!(%source, code = refusal.code(), "a gossiped module record was not kept: {refusal}");
                Ignore
            }
        }
    }

    /// Writes a record to the store on a blocking thread; with `done`, the
    /// store is flushed and `done` answered with `answer` (or the failure).
    fn keep_off_loop(
        &self,
        record: ModuleRecord,
        bytes: Vec<u8>,
        done: Option<(oneshot::Sender<Answer>, serde_json::Value)>,
    ) {
        let store = self.store.clone();
        let flush = done.is_some();
        tokio::task::spawn_blocking(move || {
            let kept = keep(&store, &record, &bytes)
                .and_then(|()| if flush { store.flush() } else { Ok(()) });
            if let Err(e) = &kept {
                tracing::warn!("cannot store the module record: {e:#}");
            }
            if let Some((reply, answer)) = done {
                let _ = reply.send(kept.map(|()| answer).map_err(|e| {
                    ControlError::internal(format!("the module record could not be stored: {e:#}"))
                }));
            }
        });
    }

    /// Gossips one signed record.
    fn gossip_record(&mut self, bytes: Vec<u8>) {
        let topic = self.modules.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!("module record not gossiped: {e}"),
        }
    }

    /// Every [`ANNOUNCE_TICK`]: a batch of the records held goes out again
    /// every [`ANNOUNCE_EVERY`], or at once when a peer has joined.
    pub(super) fn announce_modules(&mut self) {
        let peers = self.view.len();
        let joined = peers > self.modules.peers_then;
        self.modules.peers_then = peers;
        let due = self
            .modules
            .announced
            .is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY);
        if peers == 0 || !(due || joined) {
            return;
        }
        self.modules.announced = Some(Instant::now());
        for bytes in self.modules.known.next_batch(ANNOUNCE_BATCH) {
            self.gossip_record(bytes);
        }
    }

    /// The blobs this node keeps for the modules it published.
    pub(super) fn published_modules(&self) -> Vec<ContentHash> {
        self.modules.known.published_by(&self.me)
    }

    /// Answers a module control request ([`Request::is_module_request`]).
    pub(super) fn module_request(&mut self, request: Request, reply: oneshot::Sender<Answer>) {
        match request {
            Request::ModulePublish { record } => self.publish_module(&record, reply),
            Request::Modules => self.list_modules(reply),
            Request::ModuleResolve { reference, fetch } => {
                self.resolve_module(&reference, fetch, reply)
            }
            _ => {
                let _ = reply.send(Err(ControlError::internal(
                    "not a module request".to_string(),
                )));
            }
        }
    }

    /// `corral publish` with the daemon running: the record (signed by this
    /// node) is taken in, gossiped, and stored before the answer.
    fn publish_module(&mut self, hex_record: &str, reply: oneshot::Sender<Answer>) {
        let now = now_ms();
        let checked = hex::decode(hex_record)
            .map_err(|e| ControlError::bad_request(format!("the record is not hex: {e}")))
            .and_then(|bytes| {
                let record = verify_record(&bytes, now)
                    .map_err(|e| ControlError::bad_request(format!("{e}")))?;
                Ok((record, bytes))
            })
            .and_then(|(record, bytes)| {
                if record.publisher != self.me {
                    return Err(ControlError::refused(format!(
                        "the record is signed by {}, not by this node",
                        record.publisher.short()
                    )));
                }
                Ok((record, bytes))
            });
        let (record, bytes) = match checked {
            Ok(checked) => checked,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let taken = {
            let trusted = trusted_by(&self.store, self.me);
            self.modules.known.take(&bytes, now, &trusted)
        };
        let answer = entry(&record, true, true);
        match taken {
            Err(refusal) => {
                let _ = reply.send(Err(ControlError::refused(refusal.to_string())));
            }
            Ok(_) => {
                tracing::info!(
                    module = %format!("{}@{}", record.name, record.version),
                    hash = %record.module.short(),
                    "module published"
                );
                self.gossip_record(bytes.clone());
                self.keep_off_loop(record, bytes, Some((reply, answer)));
            }
        }
    }

    /// `corral modules`: every record held, with whether its publisher is
    /// trusted and its blob here (looked up off the loop).
    fn list_modules(&self, reply: oneshot::Sender<Answer>) {
        let records: Vec<ModuleRecord> = self.modules.known.list().into_iter().cloned().collect();
        let (store, blobs, me) = (self.store.clone(), self.blobs.clone(), self.me);
        tokio::task::spawn_blocking(move || {
            let trusted = trusted_by(&store, me);
            let list: Vec<serde_json::Value> = records
                .iter()
                .map(|r| entry(r, trusted(&r.publisher), blobs.has(&r.module)))
                .collect();
            let _ = reply.send(Ok(json!(list)));
        });
    }

    /// `corral run NAME…`: the reference resolved among the records held
    /// with this node's trust list; a resolution that fails is answered
    /// with its code and reason (`{"refused": {code, message}}`), one that
    /// holds as `{"resolved": entry, "publishers": […]}` — with `fetch`,
    /// once the module's blob is here.
    fn resolve_module(&mut self, reference: &str, fetch: bool, reply: oneshot::Sender<Answer>) {
        let refused = |code: &str, message: String| -> Answer {
            Ok(json!({ "refused": { "code": code, "message": message } }))
        };
        let want = match ModuleRef::parse(reference) {
            Ok(want) => want,
            Err(e) => {
                let _ = reply.send(refused(e.code(), e.to_string()));
                return;
            }
        };
        let trusted = trusted_by(&self.store, self.me);
        let resolved = match self.modules.known.resolve(&trusted, &want) {
            Ok(resolved) => resolved,
            Err(e) => {
                let _ = reply.send(refused(e.code(), e.to_string()));
                return;
            }
        };
        let record = resolved.record;
        let publishers: Vec<String> = resolved
            .publishers
            .iter()
            .map(ToString::to_string)
            .collect();
        // Publishers first, then every other connected device.
        let mut sources: Vec<PeerKey> = resolved.publishers.clone();
        sources.extend(
            self.view
                .peers()
                .filter(|(_, e)| e.connections > 0)
                .map(|(k, _)| *k),
        );
        let mut seen = std::collections::HashSet::new();
        sources.retain(|k| seen.insert(*k));
        sources.truncate(MAX_FETCH_SOURCES);
        let (net, blobs, locks) = (self.net.clone(), self.blobs.clone(), self.locks.clone());
        if !fetch {
            tokio::task::spawn_blocking(move || {
                let local = blobs.has(&record.module);
                let _ = reply.send(Ok(
                    json!({ "resolved": entry(&record, true, local), "publishers": publishers }),
                ));
            });
            return;
        }
        let Ok(permit) = self.modules.fetching.clone().try_acquire_owned() else {
            let _ = reply.send(Err(ControlError::unavailable(
                "too many modules are being fetched at once; try again in a moment",
            )));
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let fetched = tokio::time::timeout(FETCH_DEADLINE, async {
                let mut why = Vec::new();
                for peer in sources {
                    match crate::dispatch::fetch_blob(
                        &net,
                        &blobs,
                        &locks,
                        peer,
                        (record.module, record.size),
                        crate::dispatch::Keep::Synced,
                    )
                    .await
                    {
                        Ok(_) => return Ok(()),
                        Err(e) => why.push(format!("{}: {e:#}", peer.short())),
                    }
                }
                Err(if why.is_empty() {
                    "no device to fetch it from is connected".to_string()
                } else {
                    why.join("; ")
                })
            })
            .await
            .unwrap_or_else(|_| Err(format!("not fetched within {FETCH_DEADLINE:?}")));
            let answer = match fetched {
                Ok(()) => Ok(json!({
                    "resolved": entry(&record, true, true),
                    "publishers": publishers,
                })),
                Err(why) => Err(ControlError::unavailable(format!(
                    "{}@{} ({}) is not on this device and could not be fetched: {why}",
                    record.name,
                    record.version,
                    record.module.short()
                ))),
            };
            let _ = reply.send(answer);
        });
    }
}
