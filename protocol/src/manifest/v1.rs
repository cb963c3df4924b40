//! Manifests as wire version 1 wrote them (before the disk limits and the
//! `output` flag), read back so that a daemon upgraded to this version
//! keeps the jobs it stored: only ever for its own stored records, never
//! for a peer's offer (peers must speak this version).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    DEFAULT_DISK_BYTES, DEFAULT_FILES, DirSpec, EngineReq, JobManifest, Limits, StdinSpec, TaskSet,
};
use crate::codec;
use crate::hash::ContentHash;
use crate::ids::{JobId, Nonce, PeerKey};

/// The wire version these manifests carry.
pub(super) const VERSION: u8 = 1;

#[derive(Deserialize)]
struct LimitsV1 {
    timeout_ms: u64,
    memory_bytes: u64,
    output_bytes: u64,
}

#[derive(Deserialize)]
struct JobManifestV1 {
    version: u8,
    job: JobId,
    submitter: PeerKey,
    module_hash: ContentHash,
    module_size: u64,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    dirs: Vec<DirSpec>,
    tasks: TaskSet,
    limits: LimitsV1,
    engine: EngineReq,
    redundancy: u8,
    created_ms: u64,
    expires_ms: u64,
    nonce: Nonce,
    stdin: Option<StdinSpec>,
}

/// A version 1 manifest's payload as this version's manifest: the disk
/// limits it did not have are the defaults, and every task had `/output`.
/// None when the bytes are not a version 1 manifest.
pub(crate) fn read(payload: &[u8]) -> Option<JobManifest> {
    if payload.first() != Some(&VERSION) {
        return None;
    }
    let old: JobManifestV1 =
        codec::from_canonical_bytes(payload, codec::MAX_MANIFEST_BYTES).ok()?;
    if old.version != VERSION {
        return None;
    }
    Some(JobManifest {
        version: crate::PROTOCOL_VERSION,
        job: old.job,
        submitter: old.submitter,
        module_hash: old.module_hash,
        module_size: old.module_size,
        args: old.args,
        env: old.env,
        dirs: old.dirs,
        tasks: old.tasks,
        limits: Limits {
            timeout_ms: old.limits.timeout_ms,
            memory_bytes: old.limits.memory_bytes,
            output_bytes: old.limits.output_bytes,
            disk_bytes: DEFAULT_DISK_BYTES,
            files: DEFAULT_FILES,
        },
        engine: old.engine,
        redundancy: old.redundancy,
        created_ms: old.created_ms,
        expires_ms: old.expires_ms,
        nonce: old.nonce,
        stdin: old.stdin,
        output: true,
    })
}
