//! The daemon's answers to the control socket (DESIGN §9's query and
//! action commands): each request is answered from the node's state, with a
//! coded error when it cannot be.

use corral_protocol::ids::{JobId, PeerKey};
use serde_json::json;
use tokio::sync::oneshot;

use super::node::Node;
use crate::clock::now_ms;
use crate::control::server::Answer;
use crate::control::wire::MAX_LACKING_ASK;
use crate::control::{ControlError, Request};
use crate::job::timeline::RunState;

impl Node {
    /// Answers a control request (all but `Watch`, see [`Node::watch`]):
    /// now, or from a blocking thread when the answer reads the store.
    pub(super) fn control(&mut self, request: Request, reply: oneshot::Sender<Answer>) {
        if request.is_module_request() {
            self.module_request(request, reply);
            return;
        }
        match self.answer(request) {
            Answered::Now(answer) => {
                let _ = reply.send(answer);
            }
            Answered::OffLoop(answer) => {
                tokio::task::spawn_blocking(move || {
                    let _ = reply.send(answer());
                });
            }
        }
    }

    fn answer(&mut self, request: Request) -> Answered {
        match request {
            // These scan the store: off the loop.
            Request::Jobs => {
                let listing = self.coord.listing();
                Answered::OffLoop(Box::new(move || Ok(json!(listing.collect()))))
            }
            Request::Job { id } => match id.parse::<JobId>() {
                Ok(id) if !self.coord.holds(&id) => {
                    let archive = self.coord.archive();
                    let now = now_ms();
                    Answered::OffLoop(Box::new(move || {
                        archive
                            .report(&id, now)
                            .map(|r| json!(r))
                            .ok_or_else(|| no_job(&id))
                    }))
                }
                parsed => Answered::Now(parsed.map_err(bad_request).and_then(|id| {
                    self.coord
                        .report(&id, &|p| self.name_of(p))
                        .map(|r| json!(r))
                        .ok_or_else(|| no_job(&id))
                })),
            },
            // The job's id goes out only once its record is durable: the
            // store is flushed off the loop first.
            Request::Submit { spec } => match self.coord.submit(*spec, now_ms()) {
                Ok(job) => {
                    tracing::info!(%job, "job submitted");
                    self.dirty = true;
                    let store = self.store.clone();
                    Answered::OffLoop(Box::new(move || {
                        store.flush().map_err(|e| {
                            ControlError::internal(format!(
                                "job {job} could not be made durable ({e:#}): it runs, but a \
                                 restart of this daemon would lose it"
                            ))
                        })?;
                        Ok(json!({ "job": job.to_string() }))
                    }))
                }
                Err(e) => Answered::Now(Err(e)),
            },
            // A blob not checked yet is read whole: off the loop.
            Request::Lacking { blobs } if blobs.len() > MAX_LACKING_ASK => {
                Answered::Now(Err(ControlError::bad_request(format!(
                    "{} blobs asked about at once; at most {MAX_LACKING_ASK}",
                    blobs.len()
                ))))
            }
            Request::Lacking { blobs } => {
                let store = self.blobs.clone();
                Answered::OffLoop(Box::new(move || {
                    store
                        .lacking(&blobs)
                        .map(|lacking| json!({ "lacking": lacking }))
                        .map_err(internal)
                }))
            }
            request => Answered::Now(self.answer_now(request)),
        }
    }

    /// The answers that need nothing but the node's state in memory.
    fn answer_now(&mut self, request: Request) -> Answer {
        match request {
            // Answered by `answer` (off the loop, or from a job in memory),
            // `watch` and `module_request`.
            Request::Jobs
            | Request::Job { .. }
            | Request::Submit { .. }
            | Request::Lacking { .. }
            | Request::Watch { .. }
            | Request::ModulePublish { .. }
            | Request::Modules
            | Request::ModuleResolve { .. } => Err(ControlError::internal(
                "this request is not answered here".to_string(),
            )),
            Request::Status => Ok(self.status()),
            Request::Peers => Ok(self.peers()),
            Request::Leave => Ok(json!({"leaving": true})),
            Request::TrustAdd { key, name } => {
                let key: PeerKey = key.parse().map_err(bad_request)?;
                self.store
                    .trust_add(&key, &name, now_ms())
                    .map_err(internal)?;
                Ok(json!({"trusted": key.to_string(), "name": name}))
            }
            Request::TrustRemove { key } => {
                let key: PeerKey = key.parse().map_err(bad_request)?;
                let removed = self.store.trust_remove(&key).map_err(internal)?;
                Ok(json!({"removed": removed}))
            }
            Request::Timeline { since } => {
                Ok(self.timeline.since(since, now_ms(), &|p| self.name_of(p)))
            }
            Request::ShareSet { share } => {
                tracing::info!(?share, "share policy changed through the control socket");
                self.config.share = share;
                self.policy.set_share(share);
                self.busy_since = None;
                self.advertise();
                Ok(json!({"share": share, "state": self.policy.state().name()}))
            }
            Request::TrustList => self
                .store
                .trust_list()
                .map(|list| json!(list))
                .map_err(internal),
            Request::Output {
                id,
                stdout_from,
                stderr_from,
            } => {
                let id: JobId = id.parse().map_err(bad_request)?;
                let live = self
                    .coord
                    .live_output(&id, stdout_from, stderr_from, |p| self.name_of(p));
                Ok(json!(live))
            }
            Request::Cancel { id } => {
                let id: JobId = id.parse().map_err(bad_request)?;
                let actions = self.coord.cancel(&id)?;
                self.timeline
                    .end_all(|_, j| *j == id, RunState::Cancelled, now_ms());
                let cancelled = actions.len();
                self.execute(actions);
                Ok(json!({ "cancelled": id.to_string(), "tasks_stopped": cancelled }))
            }
            Request::Forget { id } => {
                let id: JobId = id.parse().map_err(bad_request)?;
                let tasks = self.coord.forget(&id)?;
                Ok(json!({ "forgotten": id.to_string(), "tasks": tasks }))
            }
        }
    }

    /// `Watch`: answered once the job changes from `seq`, ends, or after
    /// `wait_ms`.
    pub(super) fn watch(
        &mut self,
        id: &str,
        seq: u64,
        wait_ms: u64,
        summary: bool,
        reply: oneshot::Sender<Answer>,
    ) {
        let job: JobId = match id.parse() {
            Ok(job) => job,
            Err(e) => {
                let _ = reply.send(Err(bad_request(e)));
                return;
            }
        };
        let now = tokio::time::Instant::now();
        if let Err(reply) = self.watchers.add(job, seq, wait_ms, summary, now, reply) {
            // Too many wait already: the caller gets the record as it is.
            self.control(Request::Job { id: id.to_string() }, reply);
        }
    }

    /// Answers the watchers whose job changed, ended or whose wait is over.
    pub(super) fn wake_watchers(&mut self) {
        let now = tokio::time::Instant::now();
        let ready = self
            .watchers
            .take_ready(now, |job| self.coord.progress(job));
        for w in ready {
            let name = |p: &PeerKey| self.name_of(p);
            let report = if w.summary {
                self.coord
                    .summary(&w.job, &name)
                    .or_else(|| self.coord.report(&w.job, &name))
            } else {
                self.coord.report(&w.job, &name)
            };
            let answer = report.map(|r| json!(r)).ok_or_else(|| no_job(&w.job));
            w.answer(answer);
        }
    }

    /// `corral status`.
    fn status(&self) -> serde_json::Value {
        json!({
            "id": self.peer_id.to_string(),
            "key": self.me.to_string(),
            "name": self.name,
            "arch": std::env::consts::ARCH,
            "engines": self.config.engines.iter().map(|e| e.engine.name()).collect::<Vec<_>>(),
            "addresses": self.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mesh": self.mesh,
            "peers": self.view.len(),
            "running": self.worker.running(),
            "coordinating": self.coord.running(),
            "share": self.config.share,
            "state": self.policy.state().name(),
            "on_battery": self.reading.host.on_battery,
            "slots": self.config.slots,
            "max_memory": self.config.max_memory,
            "relay": self.config.relay,
            "reachability": self.reachability(),
            "http": self.http.map(|a| a.to_string()),
            "jobs_seq": self.coord.jobs_seq(),
        })
    }

    /// How this device is reached (`corral status`): `public` if an
    /// address of it was confirmed reachable from outside (AutoNAT, or a
    /// relay's own), `relayed` if it holds a reservation at a relay, else
    /// `lan`; and the relays it uses, as an invite hands them out (a relay
    /// names itself first).
    fn reachability(&self) -> serde_json::Value {
        let reachable: Vec<&libp2p::Multiaddr> = self
            .swarm
            .external_addresses()
            .filter(|a| !crate::net::is_circuit(a))
            .collect();
        let external: Vec<String> = reachable.iter().map(ToString::to_string).collect();
        let reserved: Vec<String> = self
            .listen_addrs
            .iter()
            .filter(|a| crate::net::is_circuit(a))
            .map(ToString::to_string)
            .collect();
        let kind = match (external.is_empty(), reserved.is_empty()) {
            (false, _) => "public",
            (true, false) => "relayed",
            (true, true) => "lan",
        };
        let me = libp2p::multiaddr::Protocol::P2p(self.peer_id);
        let own = reachable
            .iter()
            .filter(|_| self.config.relay)
            .map(|a| (*a).clone().with(me.clone()));
        let relays: Vec<String> = own
            .chain(self.relays.addrs().cloned())
            .map(|a| a.to_string())
            .collect();
        json!({ "kind": kind, "external": external, "reserved": reserved, "relays": relays })
    }

    /// How `peer` is reached, by its best path (`lan`, `punched`, `direct`
    /// or `relayed`) with that path's round trip; every path; nothing when
    /// not connected.
    fn reached(&self, peer: Option<&libp2p::PeerId>) -> serde_json::Value {
        let Some(peer) = peer else {
            return json!({ "via": null, "rtt_ms": null, "paths": [] });
        };
        let rtt_ms = |p: &crate::net::paths::Path| p.rtt.map(|d| d.as_secs_f64() * 1e3);
        let best = self.paths.best(peer);
        let paths: Vec<serde_json::Value> = self
            .paths
            .of(peer)
            .map(|p| json!({ "via": p.via.name(), "remote": p.remote.to_string(), "rtt_ms": rtt_ms(p) }))
            .collect();
        json!({ "via": best.map(|p| p.via.name()), "rtt_ms": best.and_then(rtt_ms), "paths": paths })
    }

    /// `corral peers`: the other devices as this node sees them.
    fn peers(&self) -> serde_json::Value {
        let now = now_ms();
        let list: Vec<serde_json::Value> = self
            .view
            .peers()
            .map(|(key, entry)| {
                let id = self.peer_ids.get(key).map(ToString::to_string).unwrap_or_else(|| key.to_string());
                let advert = entry.advert.as_ref();
                let speed: serde_json::Map<String, serde_json::Value> = advert
                    .map(|a| {
                        a.engines
                            .iter()
                            .map(|e| (e.engine.name().to_string(), json!(e.ops_per_s)))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut line = json!({
                    "id": id,
                    "key": key.to_string(),
                    "name": advert.map(|a| a.name.clone()),
                    "arch": advert.map(|a| a.arch.clone()),
                    "engines": advert.map(|a| a.engines.iter().map(|e| e.engine.name()).collect::<Vec<_>>()).unwrap_or_default(),
                    "slots_total": advert.map(|a| a.slots_total),
                    "slots_free": advert.map(|a| a.slots_free),
                    "speed": speed,
                    "state": advert.map(|a| a.state.name()),
                    "on_battery": advert.map(|a| a.on_battery),
                    "last_seen_ms": entry.last_seen_ms,
                    "age_ms": now.saturating_sub(entry.last_seen_ms),
                    "connected": entry.connections > 0,
                    "addresses": entry.addresses,
                });
                if let (Some(line), serde_json::Value::Object(reached)) =
                    (line.as_object_mut(), self.reached(self.peer_ids.get(key)))
                {
                    line.extend(reached);
                }
                line
            })
            .collect();
        json!(list)
    }
}

/// A control answer: ready now, or to be made on a blocking thread.
enum Answered {
    Now(Answer),
    OffLoop(Box<dyn FnOnce() -> Answer + Send>),
}

fn bad_request(e: impl std::fmt::Display) -> ControlError {
    ControlError::bad_request(e.to_string())
}

fn internal(e: anyhow::Error) -> ControlError {
    ControlError::internal(format!("{e:#}"))
}

fn no_job(id: &JobId) -> ControlError {
    ControlError::not_found(format!("no job {id} on this node"))
}
