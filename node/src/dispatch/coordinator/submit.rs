//! Submitting a job: checks that its blobs are here, builds and signs the
//! manifest, stores the job record and takes the job into memory.

use corral_protocol::codec;
use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, Nonce};
use corral_protocol::manifest::{InputSpec, JobManifest, MAX_LIFETIME_MS, TaskSet};

use super::job::batch_of;
use super::records::{JobRecord, JobState, TaskRecord, TaskRunState};
use super::{Coordinator, Job};
use crate::clock::Clock;
use crate::control::ControlError;
use crate::control::wire::SubmitSpec;
use crate::store::Records;

/// How long a submitted job stays valid on workers.
pub(super) const JOB_LIFETIME_MS: u64 = 2 * 24 * 3600 * 1000;

impl<C: Clock> Coordinator<C> {
    /// Builds, signs and stores a job; it is scheduled on the next round.
    /// Its record is written before it is taken into memory; the caller
    /// flushes the store (off its event loop) before it hands out the id.
    pub fn submit(&mut self, spec: SubmitSpec, now_ms: u64) -> Result<JobId, ControlError> {
        let module_size = self.blobs.size(&spec.module).ok_or_else(|| {
            ControlError::not_found(format!(
                "module {} is not in the blob store",
                spec.module.short()
            ))
        })?;
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for (name, hash) in &spec.inputs {
            let size = self.blobs.size(hash).ok_or_else(|| {
                ControlError::not_found(format!("input {name} is not in the blob store"))
            })?;
            inputs.push(InputSpec {
                name: name.clone(),
                hash: *hash,
                size,
            });
        }
        for dir in &spec.dirs {
            let listing = self
                .blobs
                .listing(&dir.tree_hash)
                .map_err(|e| ControlError::not_found(format!("--dir {}: {e:#}", dir.guest_path)))?;
            if let Some(f) = listing.files.iter().find(|f| !self.blobs.has(&f.hash)) {
                return Err(ControlError::not_found(format!(
                    "--dir {}: {} is not in the blob store",
                    dir.guest_path, f.path
                )));
            }
        }
        let stdin = match spec.stdin {
            Some(hash) => Some(corral_protocol::manifest::StdinSpec {
                hash,
                size: self
                    .blobs
                    .size(&hash)
                    .ok_or_else(|| ControlError::not_found("stdin is not in the blob store"))?,
            }),
            None => None,
        };
        let mut random = [0u8; 32];
        getrandom::fill(&mut random)
            .map_err(|e| ControlError::internal(format!("no randomness: {e}")))?;
        let job = JobId::from_bytes(random[..16].try_into().unwrap_or([0; 16]));
        let nonce = Nonce(random[16..].try_into().unwrap_or([0; 16]));
        let mut args = Vec::with_capacity(spec.args.len() + 1);
        args.push(spec.module_name.clone());
        args.extend(spec.args);
        let manifest = JobManifest {
            version: corral_protocol::PROTOCOL_VERSION,
            job,
            submitter: self.me,
            module_hash: spec.module,
            module_size,
            args,
            env: spec.env.into_iter().collect(),
            dirs: spec.dirs,
            tasks: if inputs.is_empty() {
                TaskSet::Count(spec.tasks.max(1))
            } else {
                TaskSet::Inputs(inputs)
            },
            limits: spec.limits,
            engine: spec.engine,
            redundancy: spec.verify.max(1),
            created_ms: now_ms,
            expires_ms: now_ms + JOB_LIFETIME_MS.min(MAX_LIFETIME_MS),
            nonce,
            stdin,
            output: spec.output,
        };
        manifest
            .validate()
            .map_err(|e| ControlError::bad_request(e.to_string()))?;
        let signed = Signed::sign(&manifest, &self.key);
        let record = JobRecord {
            state: JobState::Running,
            created_ms: now_ms,
            finished_ms: None,
            module_name: spec.module_name,
            verify: manifest.redundancy,
            signed: codec::to_canonical_bytes(&signed),
        };
        self.store
            .put_record(Records::Jobs, job.as_bytes(), &record)
            .map_err(|e| ControlError::internal(format!("{e:#}")))?;
        let count = manifest.task_count();
        let batch = batch_of(&manifest, manifest.redundancy);
        self.jobs.insert(
            job,
            Job {
                started: Some(std::time::Instant::now()),
                ..Job::new(
                    signed,
                    manifest,
                    batch,
                    record,
                    vec![
                        TaskRecord {
                            state: TaskRunState::Queued,
                            ..TaskRecord::default()
                        };
                        count as usize
                    ],
                )
            },
        );
        self.trim();
        Ok(job)
    }
}
