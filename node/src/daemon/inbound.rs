//! Requests from peers and from this node's own spawned tasks: the task
//! protocol's offers, cancels, hand-backs, live output, heartbeats and
//! results (routed to [`super::screening`], the worker, the coordinator or
//! [`super::results`]), the blob
//! protocol's chunk requests (read from disk off the loop), and the answers
//! to requests this node sent, matched by request id.

use corral_protocol::ids::PeerKey;
use corral_protocol::messages::{
    BlobRequest, BlobResponse, RejectReason, TaskRef, TaskRequest, TaskResponse,
};
use libp2p::PeerId;
use libp2p::request_response::{self, ResponseChannel};

use super::node::Node;
use super::state::{Pending, Reply, Served, TaskCall};
use crate::blobs::BlobStore;
use crate::clock::now_ms;
use crate::dispatch::NetCmd;
use crate::job::timeline::RunState;
use crate::net::lane::{Delivery, LaneEvent, Route};
use crate::net::{peer_id_of, peer_key_of};

impl Node {
    /// Answers an inbound task request.
    pub(super) fn respond(&mut self, reply: Reply, response: TaskResponse) {
        match reply {
            Reply::Remote(channel) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .task
                    .send_response(channel, response);
            }
            Reply::Lane(answer) => answer.send(response),
            Reply::Local(tx) => {
                let _ = tx.send(Ok(response));
            }
        }
    }

    /// Sends a task request to `peer`: on its lane, or on a stream of its
    /// own (a big one, or a peer without the lane).
    pub(super) fn send_task(&mut self, peer: PeerId, request: TaskRequest) -> TaskCall {
        match self.lanes.call(peer, request) {
            Route::Lane(call) => TaskCall::Lane(call),
            Route::Stream(request) => {
                TaskCall::Stream(self.swarm.behaviour_mut().task.send_request(&peer, request))
            }
        }
    }

    /// What a lane brought: a request, an answer, or requests to send
    /// again as streams.
    pub(super) fn on_lane_event(&mut self, event: LaneEvent) {
        for delivery in self.lanes.take(event) {
            self.on_delivery(delivery);
        }
    }

    /// Fails the calls on lanes that waited too long.
    pub(super) fn expire_lane_calls(&mut self) {
        for delivery in self.lanes.expire(std::time::Instant::now()) {
            self.on_delivery(delivery);
        }
    }

    fn on_delivery(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Request {
                peer,
                request,
                answer,
            } => {
                if let Some(from) = peer_key_of(&peer) {
                    self.on_task_request(from, request, Reply::Lane(answer));
                }
            }
            Delivery::Answered { call, result } => {
                self.on_task_answer(TaskCall::Lane(call), result);
            }
            Delivery::Resend {
                call,
                peer,
                request,
            } => {
                if let Some(pending) = self.pending_tasks.remove(&TaskCall::Lane(call)) {
                    let rid = self.swarm.behaviour_mut().task.send_request(&peer, request);
                    self.pending_tasks.insert(TaskCall::Stream(rid), pending);
                }
            }
        }
    }

    /// The answer to a task request this node sent, or why there is none.
    fn on_task_answer(&mut self, call: TaskCall, answer: Result<TaskResponse, String>) {
        match self.pending_tasks.remove(&call) {
            Some(Pending::Reply(tx)) => {
                let _ = tx.send(answer);
            }
            Some(Pending::Offers { job, indices, peer }) => {
                self.on_offers_answer(job, indices, peer, answer);
            }
            Some(Pending::Cancel) | None => {}
        }
    }

    /// A task-protocol request from `from` (a peer, or this node).
    fn on_task_request(&mut self, from: PeerKey, request: TaskRequest, reply: Reply) {
        if !request.is_bounded() {
            tracing::warn!(peer = %from.short(), "a task request is out of bounds (an empty or oversized batch, or too much live output)");
            self.respond(reply, TaskResponse::Rejected(RejectReason::Malformed));
            return;
        }
        match request {
            TaskRequest::Offer {
                manifest,
                index,
                attempt,
            } => self.on_offer(
                from,
                manifest,
                vec![TaskRef { index, attempt }],
                true,
                reply,
            ),
            TaskRequest::Cancel { job, index } => {
                // From the task's coordinator: stop it (the worker ignores
                // anyone else). A worker that cannot run a task sends
                // HandBack instead.
                self.worker.on_cancel(from, job, index);
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::HandBack { job, index, reason } => {
                // A transient reason (the owner came back, the device is
                // leaving, busy) costs the task no attempt; any other (it
                // could not fetch what the task needs) is a failure there.
                let name = self.name_of(&from);
                let why = format!("{name} handed it back: {}", reason.describe());
                let (actions, state) = if reason.is_transient() {
                    (self.coord.on_lost(job, index, from, &why), RunState::Lost)
                } else {
                    (
                        self.coord.on_failed(job, index, from, &why),
                        RunState::Failed,
                    )
                };
                self.timeline.ended(from, job, index, state, None, now_ms());
                self.execute(actions);
                self.dirty = true;
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::Offers { manifest, tasks } => {
                self.on_offer(from, manifest, tasks, false, reply);
            }
            TaskRequest::Output {
                job,
                index,
                attempt,
                stdout_at,
                stdout,
                stderr_at,
                stderr,
            } => {
                tracing::trace!(%job, index, attempt, "live output");
                self.coord
                    .on_output(from, job, index, (stdout_at, &stdout), (stderr_at, &stderr));
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::Alive { job, tasks } => {
                let indices: Vec<u32> = tasks.iter().map(|t| t.index).collect();
                self.coord.on_alive(from, job, &indices);
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::Result(signed) => {
                let opened = self.coord.wants_results(&from, &[signed]);
                self.on_results(from, opened, true, reply);
            }
            TaskRequest::Results(list) => {
                let opened = self.coord.wants_results(&from, &list);
                self.on_results(from, opened, false, reply);
            }
            TaskRequest::SignedResults(batch) => match self.coord.open_batch(&from, &batch) {
                Ok(receipts) => {
                    let opened = self.coord.wants_opened(&from, receipts);
                    self.on_results(from, opened, false, reply);
                }
                Err(why) => {
                    tracing::warn!("{why}");
                    self.respond(reply, TaskResponse::Rejected(RejectReason::Malformed));
                }
            },
        }
    }

    /// A request from one of this node's spawned tasks: sent to the peer,
    /// or answered here when the peer is this node.
    pub(super) fn on_net_cmd(&mut self, cmd: NetCmd) {
        match cmd {
            NetCmd::Task {
                peer,
                request,
                reply,
            } => {
                if peer == self.me {
                    self.on_task_request(self.me, request, Reply::Local(reply));
                } else if let Some(id) = peer_id_of(&peer) {
                    let call = self.send_task(id, request);
                    self.pending_tasks.insert(call, Pending::Reply(reply));
                } else {
                    let _ = reply.send(Err("bad peer key".into()));
                }
            }
            NetCmd::Blob {
                peer,
                request,
                reply,
            } => {
                if peer == self.me {
                    let blobs = self.blobs.clone();
                    let permits = self.serving.clone();
                    tokio::spawn(async move {
                        let Ok(_permit) = permits.acquire_owned().await else {
                            return;
                        };
                        let chunk = read_chunk(blobs, request).await;
                        let _ = reply.send(Ok(chunk));
                    });
                } else if let Some(id) = peer_id_of(&peer) {
                    let rid = self.swarm.behaviour_mut().blob.send_request(&id, request);
                    self.pending_blobs.insert(rid, reply);
                } else {
                    let _ = reply.send(Err("bad peer key".into()));
                }
            }
            NetCmd::AwaitDirect { peer, reply } => self.await_direct(peer, reply),
        }
    }

    /// Task-protocol traffic: inbound requests, and answers to ours.
    pub(super) fn on_task_event(
        &mut self,
        event: request_response::Event<TaskRequest, TaskResponse>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Some(from) = peer_key_of(&peer) else {
                        return;
                    };
                    self.on_task_request(from, request, Reply::Remote(channel));
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => self.on_task_answer(TaskCall::Stream(request_id), Ok(response)),
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => self.on_task_answer(TaskCall::Stream(request_id), Err(error.to_string())),
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound task request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Blob-protocol traffic: chunk requests are read off the loop;
    /// answers go to the task that asked.
    pub(super) fn on_blob_event(
        &mut self,
        event: request_response::Event<corral_protocol::messages::BlobRequest, BlobResponse>,
    ) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => self.serve_chunk(request, channel),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(tx) = self.pending_blobs.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = self.pending_blobs.remove(&request_id) {
                    let _ = tx.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound blob request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Reads a chunk for a peer off the loop (at most [`super::node::MAX_SERVING`]
    /// at once); [`Node::on_served`] sends it.
    fn serve_chunk(&mut self, request: BlobRequest, channel: ResponseChannel<BlobResponse>) {
        let blobs = self.blobs.clone();
        let permits = self.serving.clone();
        let served = self.served_tx.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let response = read_chunk(blobs, request).await;
            let _ = served.send(Served { channel, response }).await;
        });
    }

    /// A chunk read off the loop goes to the peer that asked.
    pub(super) fn on_served(&mut self, served: Served) {
        let _ = self
            .swarm
            .behaviour_mut()
            .blob
            .send_response(served.channel, served.response);
    }
}

/// Reads a blob chunk on a blocking thread.
async fn read_chunk(blobs: BlobStore, request: BlobRequest) -> BlobResponse {
    tokio::task::spawn_blocking(move || blobs.chunk(&request))
        .await
        .unwrap_or(BlobResponse::NotFound)
}
