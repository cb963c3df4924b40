//! Unit tests of the coordinator: a real coordinator on a temporary store
//! and blob store, driven without a network.

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::envelope::{peer_key, signing_key};
use corral_protocol::manifest::{EngineReq, Limits};
use corral_protocol::receipt::{Captured, EngineKind};
use serde::{Deserialize, Serialize};

use super::records::{JobState, TaskRunState, task_key};
use super::*;
use crate::control::wire::SubmitSpec;

/// A coordinator on its own data dir, and that dir (kept alive).
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) me: PeerKey,
    pub(super) key: SigningKey,
    pub(super) module: ContentHash,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary dir for the test");
        let key = signing_key(&[7; 32]);
        let me = peer_key(&key);
        let blobs = BlobStore::open(dir.path()).expect("blob store on a temporary dir");
        let module = blobs
            .put_bytes(b"\0asm\x01\0\0\0")
            .expect("a module blob in the temporary store");
        Self {
            dir,
            me,
            key,
            module,
        }
    }

    /// Opens the store and loads the coordinator (one at a time: sled
    /// locks its files).
    pub(super) fn load(&self) -> Coordinator {
        // The system clock: the migration and expiry tests hand it dates.
        self.load_with(SystemClock)
    }

    /// As [`Fixture::load`], reading time from `clock`.
    pub(super) fn load_with<C: Clock>(&self, clock: C) -> Coordinator<C> {
        let store = Store::open(self.dir.path()).expect("store on a temporary dir");
        let blobs = BlobStore::open(self.dir.path()).expect("blob store on a temporary dir");
        Coordinator::load_with_clock(clock, self.me, self.key.clone(), store, blobs)
    }

    pub(super) fn spec(&self, tasks: u32, verify: u8) -> SubmitSpec {
        SubmitSpec {
            module: self.module,
            module_name: "m.wasm".into(),
            args: Vec::new(),
            env: Vec::new(),
            tasks,
            inputs: Vec::new(),
            dirs: Vec::new(),
            limits: Limits::default(),
            engine: EngineReq::Any,
            verify,
            stdin: None,
            output: true,
        }
    }
}

/// A receipt of task `index` of `job` at `attempt` from `worker`: exited
/// 0, printing `stdout`, after `duration_ms`.
pub(super) fn receipt_of(
    job: JobId,
    index: u32,
    attempt: u32,
    worker: PeerKey,
    stdout: &[u8],
    duration_ms: u64,
) -> TaskReceipt {
    TaskReceipt {
        job,
        index,
        attempt,
        worker,
        status: TaskStatus::Exited { code: 0 },
        stdout: Captured::new(stdout.to_vec(), false),
        stderr: Captured::new(Vec::new(), false),
        files: Vec::new(),
        engine: EngineKind::Interp,
        arch: "x86_64".into(),
        duration_ms,
    }
}

/// The records as an older daemon wrote them: states as free strings.
#[derive(Serialize, Deserialize)]
struct OldJobRecord {
    state: String,
    created_ms: u64,
    finished_ms: Option<u64>,
    module_name: String,
    verify: u8,
    signed: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct OldTaskRecord {
    state: String,
    attempts: u32,
    reason: Option<String>,
    runs: Vec<serde_json::Value>,
    winner: Option<usize>,
    mismatch: bool,
}

#[test]
fn records_written_with_string_states_are_read_as_enums() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let (running, done) = {
        let mut c = fx.load();
        let running = c.submit(fx.spec(3, 1), now).expect("submit");
        let done = c.submit(fx.spec(1, 1), now).expect("submit");
        // Overwrite both jobs' records in the old form.
        for (id, state) in [(running, "running"), (done, "cancelled")] {
            let signed = c.jobs[&id].record.signed.clone();
            let old = OldJobRecord {
                state: state.into(),
                created_ms: now,
                finished_ms: None,
                module_name: "m.wasm".into(),
                verify: 1,
                signed,
            };
            // As JSON, as those versions wrote every record.
            let json = serde_json::to_vec(&old).expect("json");
            c.store
                .put_raw(Records::Jobs, id.as_bytes(), &json)
                .expect("write an old job record");
        }
        for (index, state, attempts) in [(0, "failed", 3), (1, "running", 2)] {
            let old = OldTaskRecord {
                state: state.into(),
                attempts,
                reason: Some("gave up".into()),
                runs: Vec::new(),
                winner: None,
                mismatch: false,
            };
            let json = serde_json::to_vec(&old).expect("json");
            c.store
                .put_raw(Records::Tasks, &task_key(&running, index), &json)
                .expect("write an old task record");
        }
        c.store.flush().expect("flush");
        (running, done)
    };
    let c = fx.load();
    // The running job resumes; its old task states read as enums.
    let job = &c.jobs[&running];
    assert_eq!(job.record.state, JobState::Running);
    assert_eq!(job.tasks[0].state, TaskRunState::Failed);
    assert_eq!(job.tasks[0].attempts, 3);
    // A task that was running when the daemon stopped is queued again.
    assert_eq!(job.tasks[1].state, TaskRunState::Queued);
    assert_eq!(job.tasks[2].state, TaskRunState::Queued);
    assert!(!c.jobs.contains_key(&done));
    let records = c
        .store
        .scan_records::<JobRecord>(Records::Jobs, done.as_bytes());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1.state, JobState::Cancelled);
    // And `corral jobs` shows the same strings as before.
    let list = c.list();
    let state_of = |id: &JobId| {
        list.iter()
            .find(|j| j["id"] == id.to_string())
            .map(|j| j["state"].clone())
    };
    assert_eq!(state_of(&running), Some(serde_json::json!("running")));
    assert_eq!(state_of(&done), Some(serde_json::json!("cancelled")));
}

#[test]
fn a_finished_job_older_than_its_lifetime_reads_back_from_the_store() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    // Submitted three days ago (the lifetime is two), cancelled then.
    let long_ago = now - submit::JOB_LIFETIME_MS - 24 * 3600 * 1000;
    let id = {
        let mut c = fx.load();
        let id = c.submit(fx.spec(2, 1), long_ago).expect("submit");
        c.cancel(&id).expect("cancel");
        c.store.flush().expect("flush");
        id
    };
    // A restarted daemon holds no finished job in memory.
    let c = fx.load();
    assert!(!c.jobs.contains_key(&id));
    let report = c
        .report(&id, &|p: &PeerKey| p.short())
        .expect("an expired finished job is still reported");
    assert_eq!(report.state, JobState::Cancelled);
    assert_eq!(report.tasks_total, 2);
    let listed = c
        .list()
        .into_iter()
        .find(|j| j["id"] == id.to_string())
        .expect("listed");
    assert_eq!(listed["tasks_total"], 2);
}

#[test]
fn a_job_that_ended_is_forgotten_whole_and_a_running_one_is_refused() {
    use crate::control::ErrorCode;
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let (running, ended, stored) = {
        let mut c = fx.load();
        let ended = c.submit(fx.spec(3, 1), now).expect("submit");
        // A task of the job to forget has run: its record is stored.
        let peer = PeerKey::from_bytes([9; 32]);
        let actions = c.schedule(&[candidate(peer)], &[peer], now);
        let Some(Action::Offer { attempt, .. }) = actions.first() else {
            panic!("an offer: {actions:?}");
        };
        let receipt = receipt_of(ended, 0, *attempt, peer, b"42", 5);
        c.on_result(peer, "p", receipt).expect("stored");
        let records = c.store.scan_raw(Records::Tasks, ended.as_bytes()).len();
        assert!(records >= 1, "the task's record is stored");
        let running = c.submit(fx.spec(2, 1), now).expect("submit");
        let stored = c.submit(fx.spec(1, 1), now).expect("submit");
        c.cancel(&ended).expect("cancel");
        c.cancel(&stored).expect("cancel");
        // Cancelling wrote the placements of its other tasks too.
        let records = c.store.scan_raw(Records::Tasks, ended.as_bytes()).len();
        assert_eq!(
            c.forget(&running).expect_err("still running").code,
            ErrorCode::Refused
        );
        assert_eq!(c.forget(&ended), Ok(records), "its task records");
        assert!(c.report(&ended, &|p: &PeerKey| p.short()).is_none());
        assert!(c.list().iter().all(|j| j["id"] != ended.to_string()));
        assert_eq!(
            c.forget(&ended).expect_err("forgotten").code,
            ErrorCode::NotFound
        );
        assert!(c.report(&running, &|p: &PeerKey| p.short()).is_some());
        c.check_invariants().expect("invariants");
        c.store.flush().expect("flush");
        (running, ended, stored)
    };
    // After a restart: nothing of it read back; a job held only in the
    // store is forgotten as well.
    let mut c = fx.load();
    assert!(c.store.scan_raw(Records::Jobs, ended.as_bytes()).is_empty());
    assert!(
        c.store
            .scan_raw(Records::Tasks, ended.as_bytes())
            .is_empty()
    );
    assert!(
        !c.jobs.contains_key(&stored),
        "a finished job is not loaded"
    );
    c.forget(&stored).expect("forget a stored job");
    assert!(c.report(&stored, &|p: &PeerKey| p.short()).is_none());
    let listed: Vec<String> = c.list().iter().map(|j| j["id"].to_string()).collect();
    assert_eq!(listed, vec![format!("\"{running}\"")]);
}

pub(super) fn candidate(peer: PeerKey) -> Candidate {
    Candidate {
        peer,
        slots: 1,
        engines: vec![EngineSpeed {
            engine: EngineKind::Interp,
            ops_per_s: 1_000_000,
        }],
        arch: "x86_64".into(),
        relayed_rtt_ms: None,
    }
}

#[test]
fn refusals_are_judged_by_their_code() {
    use corral_protocol::messages::RejectReason;
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(1, 1), now).expect("submit");
    let peer = PeerKey::from_bytes([9; 32]);
    let offer = |c: &mut Coordinator| c.schedule(&[candidate(peer)], &[peer], now);
    assert!(matches!(offer(&mut c)[..], [Action::Offer { .. }]));
    // Busy: transient, the device is rested, not excluded, the task kept.
    c.on_rejected(id, 0, peer, "p", RejectReason::Busy);
    assert!(!c.jobs[&id].excluded.contains(&peer));
    assert!(c.jobs[&id].cooldown.contains_key(&peer));
    assert_eq!(c.jobs[&id].record.state, JobState::Running);
    // Not trusted: lasting; with no other device, the job ends failed.
    c.jobs.get_mut(&id).expect("the job").cooldown.clear();
    assert!(matches!(offer(&mut c)[..], [Action::Offer { .. }]));
    c.on_rejected(id, 0, peer, "p", RejectReason::NotTrusted);
    assert!(c.jobs[&id].excluded.contains(&peer));
    assert!(offer(&mut c).is_empty());
    assert_eq!(c.jobs[&id].record.state, JobState::Failed);
    c.check_invariants().expect("invariants");
    let refusals = &c.jobs[&id].refusals;
    assert_eq!(refusals.len(), 2);
    assert_eq!(refusals[1].reason, RejectReason::NotTrusted.describe());
}

#[test]
fn control_errors_carry_their_code() {
    use crate::control::ErrorCode;
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let mut spec = fx.spec(1, 1);
    spec.module = ContentHash::of(b"not stored");
    let err = c.submit(spec, now).expect_err("no such module");
    assert_eq!(err.code, ErrorCode::NotFound);
    let id = c.submit(fx.spec(1, 1), now).expect("submit");
    let unknown = JobId::from_bytes([3; 16]);
    assert_eq!(
        c.cancel(&unknown).expect_err("unknown").code,
        ErrorCode::NotFound
    );
    c.cancel(&id).expect("cancel");
    assert_eq!(
        c.cancel(&id).expect_err("already ended").code,
        ErrorCode::Refused
    );
}

#[test]
fn a_restarted_coordinator_keeps_the_votes_of_a_verified_task() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let store = Store::open(fx.dir.path()).expect("store on a temporary dir");
    let blobs = BlobStore::open(fx.dir.path()).expect("blob store on a temporary dir");
    let load = || Coordinator::load(fx.me, fx.key.clone(), store.clone(), blobs.clone());
    let mut c = load();
    let id = c.submit(fx.spec(1, 2), now).expect("submit");
    let a = PeerKey::from_bytes([9; 32]);
    let actions = c.schedule(&[candidate(a)], &[a], now);
    let Some(Action::Offer { attempt, .. }) = actions.first() else {
        panic!("an offer to a: {actions:?}");
    };
    let receipt = receipt_of(id, 0, *attempt, a, b"42", 5);
    c.on_result(a, "a", receipt.clone()).expect("stored");
    assert_eq!(c.jobs[&id].tasks[0].runs.len(), 1);
    drop(c);
    // After a restart, the same device's result again is not a second vote.
    let mut c = load();
    let wanted = c.still_wanted(&a, &id, 0, *attempt) == Ok(true);
    c.on_result(a, "a", receipt).expect("stored");
    assert!(!wanted, "a's result is wanted again after a restart");
    assert_eq!(c.jobs[&id].tasks[0].runs.len(), 1);
    assert_eq!(c.jobs[&id].tasks[0].state, TaskRunState::Queued);
    c.check_invariants().expect("invariants");
}

#[test]
fn a_relayed_path_costs_its_round_trips_and_the_tasks_own_bytes() {
    use super::lease::{RELAY_BYTES_PER_MS, TASK_ROUND_TRIPS, transfer_ms};
    use corral_protocol::manifest::{InputSpec, StdinSpec, TaskSet};
    let fx = Fixture::new();
    let mut c = fx.load();
    let id = c
        .submit(fx.spec(2, 1), crate::clock::now_ms())
        .expect("submit");
    let mut manifest = (*c.jobs[&id].manifest).clone();
    assert_eq!(
        transfer_ms(None, &manifest),
        0,
        "a direct path costs nothing extra"
    );
    assert_eq!(
        transfer_ms(Some(0), &manifest),
        1,
        "a relayed one is never free"
    );
    assert_eq!(transfer_ms(Some(20), &manifest), 20 * TASK_ROUND_TRIPS);
    // Inputs of 1 and 3 MB: a task moves 2 MB on average; its stdin too.
    let input = |size| InputSpec {
        name: format!("in-{size}"),
        hash: corral_protocol::hash::ContentHash::of(b"x"),
        size,
    };
    manifest.tasks = TaskSet::Inputs(vec![input(1_000_000), input(3_000_000)]);
    manifest.stdin = Some(StdinSpec {
        hash: corral_protocol::hash::ContentHash::of(b"y"),
        size: 500_000,
    });
    assert_eq!(
        transfer_ms(Some(20), &manifest),
        20 * TASK_ROUND_TRIPS + 2_500_000 / RELAY_BYTES_PER_MS
    );
    assert_eq!(transfer_ms(None, &manifest), 0);
}
