//! `flood` mode, and the rogue's swarm: the node's own behaviours plus two
//! raw writers on `/corral/task/1` and `/corral/blob/1` that send whatever
//! bytes they are told (frames over the size bound, streams that never
//! finish), and offers of big manifests signed by the rogue's own key.

#![allow(missing_docs)] // the derive generates an undocumented event enum

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corral_node::identity::NodeKey;
use corral_node::net::behaviour::Behaviour;
use corral_node::net::relay::Roles;
use corral_node::net::wire::{BLOB_PROTOCOL, TASK_PROTOCOL};
use corral_protocol::PROTOCOL_VERSION;
use corral_protocol::codec::WireMessage;
use corral_protocol::envelope::{Signed, SigningKey};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, Nonce};
use corral_protocol::manifest::{EngineReq, InputSpec, JobManifest, Limits, TaskSet};
use corral_protocol::messages::{BlobRequest, TaskRef, TaskRequest};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, StreamProtocol, Swarm};

use super::say;

/// A raw writer on one protocol.
pub(crate) type RawBehaviour = request_response::Behaviour<RawCodec>;

/// The rogue's behaviours.
#[derive(NetworkBehaviour)]
pub(crate) struct RogueBehaviour {
    /// What an honest node speaks (adverts, task requests and answers).
    pub(crate) core: Behaviour,
    /// Raw frames on `/corral/task/1`.
    pub(crate) raw_task: RawBehaviour,
    /// Raw frames on `/corral/blob/1`.
    pub(crate) raw_blob: RawBehaviour,
}

pub(crate) use self::RogueBehaviourEvent as RogueEvent;

/// What to flood the victim with (all off by default).
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct FloodArgs {
    /// Concurrent task-protocol frames one byte over the bound (kept up).
    #[arg(long, default_value_t = 0)]
    frames: usize,
    /// Bytes of each such frame (default: the task request bound plus one).
    #[arg(long, default_value_t = TaskRequest::MAX_BYTES + 1)]
    frame_bytes: usize,
    /// Which task request the frames claim to be, by its variant number in
    /// the encoding (0 an offer, 1 a cancel, 5 a batch of results, …).
    #[arg(long, default_value_t = 0)]
    frame_variant: u8,
    /// Concurrent blob-protocol frames of 1 MiB (kept up).
    #[arg(long, default_value_t = 0)]
    blob_frames: usize,
    /// Task-protocol streams that send `--stall-kib` and then never finish.
    #[arg(long, default_value_t = 0)]
    stall: usize,
    /// KiB each stalled stream sends first (a Yamux window is 256 KiB).
    #[arg(long, default_value_t = 256)]
    stall_kib: usize,
    /// Offers of big manifests signed by the rogue kept in flight.
    #[arg(long, default_value_t = 0)]
    manifests: usize,
    /// Size of each such manifest, MiB.
    #[arg(long, default_value_t = 8)]
    manifest_mib: usize,
    /// Extra members under fresh keys that connect and advertise.
    #[arg(long, default_value_t = 0)]
    pub(crate) sybils: usize,
}

impl FloodArgs {
    /// Streams the raw writers may hold open per connection.
    pub(crate) fn max_streams(&self) -> usize {
        self.frames + self.blob_frames + self.stall + 16
    }
}

/// Builds the rogue's swarm: the node's swarm with the raw writers added.
pub(crate) fn build(
    key: &NodeKey,
    psk: libp2p::pnet::PreSharedKey,
    max_streams: usize,
) -> anyhow::Result<Swarm<RogueBehaviour>> {
    let raw = |protocol: StreamProtocol| {
        request_response::Behaviour::new(
            [(protocol, ProtocolSupport::Outbound)],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(3600))
                .with_max_concurrent_streams(max_streams),
        )
    };
    corral_node::net::swarm::build_with(key, psk, |k, relay_client| {
        Ok(RogueBehaviour {
            core: Behaviour::new(k, relay_client, Roles::default())?,
            raw_task: raw(TASK_PROTOCOL),
            raw_blob: raw(BLOB_PROTOCOL),
        })
    })
}

/// Bytes a raw writer sends: `header`, then `fill` zero bytes, then it
/// either finishes the stream or holds it open for ever.
#[derive(Clone, Debug)]
pub(crate) struct RawFrame {
    header: Vec<u8>,
    fill: usize,
    stall: bool,
    /// Bytes written so far (the victim may cut the stream early).
    written: Arc<AtomicU64>,
}

/// The raw writers' codec: writes [`RawFrame`]s, reads at most 1 KiB back.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = RawFrame;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<RawFrame>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the rogue's raw writers serve nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut bytes = Vec::new();
        io.take(1024).read_to_end(&mut bytes).await?;
        Ok(bytes)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: RawFrame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req.header).await?;
        let chunk = vec![0u8; 64 * 1024];
        let mut left = req.fill;
        while left > 0 {
            let n = left.min(chunk.len());
            io.write_all(&chunk[..n]).await?;
            req.written.fetch_add(n as u64, Ordering::Relaxed);
            left -= n;
        }
        if req.stall {
            futures::future::pending::<()>().await;
        }
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("the rogue's raw writers answer nothing"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Frame,
    Blob,
    Stall,
}

/// The flood kept up against every connected peer dialled with `--peer`.
pub(crate) struct Flood {
    args: FloodArgs,
    key: SigningKey,
    me: corral_protocol::ids::PeerKey,
    target: Option<PeerId>,
    raw: HashMap<(bool, OutboundRequestId), (Kind, Arc<AtomicU64>)>,
    offers_in_flight: usize,
    inputs: Vec<InputSpec>,
    sent: HashMap<&'static str, u64>,
    ended: HashMap<&'static str, u64>,
}

impl Flood {
    /// A flood as `args` say, with manifests signed by `key`.
    pub(crate) fn new(key: &NodeKey, args: &FloodArgs) -> Self {
        Self {
            args: args.clone(),
            key: key.signing_key(),
            me: key.peer_key(),
            target: None,
            raw: HashMap::new(),
            offers_in_flight: 0,
            inputs: Vec::new(),
            sent: HashMap::new(),
            ended: HashMap::new(),
        }
    }

    /// Floods `peer` from now on.
    pub(crate) fn target(&mut self, peer: PeerId) {
        self.target.get_or_insert(peer);
    }

    /// `peer` is gone.
    pub(crate) fn untarget(&mut self, peer: &PeerId) {
        if self.target.as_ref() == Some(peer) {
            self.target = None;
            self.raw.clear();
            self.offers_in_flight = 0;
        }
    }

    fn written(&self, kind: Kind) -> u64 {
        self.raw
            .values()
            .filter(|(k, _)| *k == kind)
            .map(|(_, w)| w.load(Ordering::Relaxed))
            .sum()
    }

    fn in_flight(&self, kind: Kind) -> usize {
        self.raw.values().filter(|(k, _)| *k == kind).count()
    }

    /// Opens what is missing of every kind of flood.
    pub(crate) fn top_up(&mut self, swarm: &mut Swarm<RogueBehaviour>) {
        let Some(peer) = self.target else { return };
        let offer = [PROTOCOL_VERSION, TaskRequest::KIND, 0];
        let frame = [PROTOCOL_VERSION, TaskRequest::KIND, self.args.frame_variant];
        let plans = [
            (
                Kind::Frame,
                self.args.frames,
                frame.to_vec(),
                self.args.frame_bytes.saturating_sub(3),
                false,
            ),
            (
                Kind::Blob,
                self.args.blob_frames,
                vec![PROTOCOL_VERSION, BlobRequest::KIND],
                1 << 20,
                false,
            ),
            (
                Kind::Stall,
                self.args.stall,
                offer.to_vec(),
                self.args.stall_kib * 1024,
                true,
            ),
        ];
        for (kind, want, header, fill, stall) in plans {
            for _ in self.in_flight(kind)..want {
                let written = Arc::new(AtomicU64::new(0));
                let frame = RawFrame {
                    header: header.clone(),
                    fill,
                    stall,
                    written: written.clone(),
                };
                let blob = kind == Kind::Blob;
                let behaviour = swarm.behaviour_mut();
                let raw = if blob {
                    &mut behaviour.raw_blob
                } else {
                    &mut behaviour.raw_task
                };
                let id = raw.send_request(&peer, frame);
                self.raw.insert((blob, id), (kind, written));
                *self.sent.entry(kind_name(kind)).or_default() += 1;
            }
        }
        while self.offers_in_flight < self.args.manifests {
            let request = self.big_offer();
            swarm.behaviour_mut().core.task.send_request(&peer, request);
            self.offers_in_flight += 1;
            *self.sent.entry("manifest").or_default() += 1;
        }
    }

    /// A raw request ended (answered, refused or cut).
    pub(crate) fn on_raw(&mut self, blob: bool, event: request_response::Event<RawFrame, Vec<u8>>) {
        let (id, why) = match event {
            request_response::Event::Message {
                message: request_response::Message::Response { request_id, .. },
                ..
            } => (request_id, "answered".to_string()),
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => (request_id, error.to_string()),
            _ => return,
        };
        let Some((kind, written)) = self.raw.remove(&(blob, id)) else {
            return;
        };
        // The line the flood test reads: how much of a frame over the bound
        // the victim took before it cut the stream.
        say(&format!(
            "ENDED {} after {} bytes ({why})",
            kind_name(kind),
            written.load(Ordering::Relaxed)
        ));
        *self.ended.entry(kind_name(kind)).or_default() += 1;
    }

    /// The line the flood test reads: the most bytes the victim has taken
    /// so far on one oversize task frame still open.
    pub(crate) fn report_oversize(&self) {
        let most = self
            .raw
            .values()
            .filter(|(k, _)| *k == Kind::Frame)
            .map(|(_, w)| w.load(Ordering::Relaxed))
            .max();
        if let Some(most) = most {
            say(&format!("OVERSIZE_OPEN {most} bytes"));
        }
    }

    /// One line on what is in flight and sent so far.
    pub(crate) fn report(&self) {
        if self.target.is_some() {
            say(&format!(
                "FLOOD in flight: {} oversize-task ({} bytes written), {} oversize-blob, {} stalled, {} offers; sent {:?}; ended {:?}",
                self.in_flight(Kind::Frame),
                self.written(Kind::Frame),
                self.in_flight(Kind::Blob),
                self.in_flight(Kind::Stall),
                self.offers_in_flight,
                self.sent,
                self.ended
            ));
        }
    }

    /// An offer of a big manifest was answered or failed.
    pub(crate) fn on_offer_answer(&mut self) {
        self.offers_in_flight = self.offers_in_flight.saturating_sub(1);
    }

    /// An offer of one task of a fresh job whose manifest, signed by the
    /// rogue, lists inputs up to `--manifest-mib`.
    fn big_offer(&mut self) -> TaskRequest {
        if self.inputs.is_empty() {
            // About 90 bytes per input.
            let count = (self.args.manifest_mib * 1024 * 1024 / 90).max(1);
            self.inputs = (0..count)
                .map(|i| InputSpec {
                    name: format!("rogue-input-{i:012}-padding-padding"),
                    hash: ContentHash::of(&i.to_le_bytes()),
                    size: 1,
                })
                .collect();
        }
        let now = corral_node::clock::now_ms();
        let manifest = JobManifest {
            version: PROTOCOL_VERSION,
            job: JobId::from_bytes(random()),
            submitter: self.me,
            module_hash: ContentHash::of(b"rogue"),
            module_size: 5,
            args: Vec::new(),
            env: Default::default(),
            dirs: Vec::new(),
            tasks: TaskSet::Inputs(self.inputs.clone()),
            limits: Limits::default(),
            engine: EngineReq::Any,
            redundancy: 1,
            created_ms: now,
            expires_ms: now + 3_600_000,
            nonce: Nonce(random()),
            stdin: None,
            output: true,
        };
        TaskRequest::Offers {
            manifest: Signed::sign(&manifest, &self.key),
            tasks: vec![TaskRef {
                index: 0,
                attempt: 1,
            }],
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Frame => "oversize-task",
        Kind::Blob => "oversize-blob",
        Kind::Stall => "stalled",
    }
}

fn random() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // A failing RNG only makes two jobs share an id: harmless here.
    let _ = getrandom::fill(&mut bytes);
    bytes
}
