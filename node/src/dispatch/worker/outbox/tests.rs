//! The outbox: records from before receipts were signed as they leave,
//! and what a sender puts on the wire (a batch under one signature; a
//! signature each once a batch did not go through).

use corral_protocol::envelope::{peer_key, signing_key};
use corral_protocol::receipt::{Captured, EngineKind, TaskStatus};

use tokio::sync::mpsc;

use super::*;
use crate::dispatch::NetCmd;

fn key() -> SigningKey {
    signing_key(&[3; 32])
}

fn coordinator() -> PeerKey {
    peer_key(&signing_key(&[4; 32]))
}

fn item(index: u32) -> Outboxed {
    let job = JobId::from_bytes([9; 16]);
    Outboxed {
        coordinator: coordinator(),
        expires_ms: u64::MAX,
        job,
        index,
        attempt: 1,
        receipt: TaskReceipt {
            job,
            index,
            attempt: 1,
            worker: peer_key(&key()),
            status: TaskStatus::Exited { code: 0 },
            stdout: Captured::new(index.to_le_bytes().to_vec(), false),
            stderr: Captured::new(Vec::new(), false),
            files: Vec::new(),
            engine: EngineKind::Jit,
            arch: "x86_64".into(),
            duration_ms: 1,
        },
    }
}

fn old_record(item: &Outboxed, key: &SigningKey) -> (Vec<u8>, Vec<u8>) {
    let old = OutboxedSigned {
        coordinator: item.coordinator,
        expires_ms: item.expires_ms,
        job: item.job,
        index: item.index,
        attempt: item.attempt,
        receipt: Signed::sign(&item.receipt, key),
    };
    let key = outbox_key(&item.job, item.index, item.attempt)[1..].to_vec();
    (key, codec::to_canonical_bytes(&old))
}

#[test]
fn a_record_kept_before_the_upgrade_is_read_back_and_a_damaged_one_is_not() {
    let it = item(7);
    let (old_key, bytes) = old_record(&it, &key());
    assert_eq!(old_key.len(), OLD_KEY_BYTES);
    let back = read_stored(&old_key, &bytes).expect("an old record reads");
    assert_eq!((back.index, &back.receipt), (7, &it.receipt));
    // Today's form, under today's key.
    let now = codec::to_canonical_bytes(&it);
    let back = read_stored(&outbox_key(&it.job, 7, 1), &now).expect("a new record reads");
    assert_eq!(back.receipt, it.receipt);
    // An old record whose receipt was changed on disk: its signature no
    // longer holds, and it is not sent.
    let mut changed = it;
    changed.receipt.stdout = Captured::new(b"other".to_vec(), false);
    let (_, good) = old_record(&changed, &key());
    let mut damaged = bytes.clone();
    let at = damaged.len() - 70;
    damaged[at] ^= 1;
    assert!(read_stored(&old_key, &good).is_ok());
    let Err(err) = read_stored(&old_key, &damaged) else {
        panic!("a damaged record was read");
    };
    assert!(format!("{err:#}").contains("receipt"), "{err:#}");
    // A new record read as an old one (or the reverse) does not decode.
    assert!(read_stored(&old_key, &now).is_err());
    assert!(read_stored(&outbox_key(&changed.job, 7, 1), &bytes).is_err());
}

/// Answers the sender's requests as a coordinator would: `answer` gets
/// each request and says what comes back.
fn coordinator_loop(
    mut rx: mpsc::Receiver<NetCmd>,
    mut answer: impl FnMut(TaskRequest) -> Result<TaskResponse, String> + Send + 'static,
) {
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            if let NetCmd::Task { request, reply, .. } = cmd {
                let _ = reply.send(answer(request));
            }
        }
    });
}

async fn drained(deliveries: &Deliveries, store: &Store) {
    for _ in 0..200 {
        if deliveries.is_empty() && store.scan_raw(Records::Outbox, b"").is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the outbox did not drain");
}

/// What a courier borrows, held for a test.
struct Rig {
    key: SigningKey,
    net: NetHandle,
    store: Store,
    handle: tokio::runtime::Handle,
}

impl Rig {
    fn new(store: Store, net: NetHandle) -> Self {
        Self {
            key: key(),
            net,
            store,
            handle: tokio::runtime::Handle::current(),
        }
    }

    fn courier(&self) -> Courier<'_> {
        Courier {
            key: &self.key,
            net: &self.net,
            store: &self.store,
            handle: &self.handle,
        }
    }
}

#[tokio::test]
async fn receipts_leave_under_one_signature_and_one_each_when_a_batch_does_not_go_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (net, rx) = NetHandle::new();
    let me = peer_key(&key());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    coordinator_loop(rx, move |request| {
        let answer = match &request {
            // As a coordinator that cannot read it (an older version).
            TaskRequest::SignedResults(batch) => {
                let opened = batch.open_receipts_from(&me, 0).expect("opens");
                assert!(opened.iter().all(Result::is_ok));
                Err("the lane closed".to_string())
            }
            TaskRequest::Results(each) => {
                let verified = Signed::verify_all_from(each, &me, 0);
                assert!(verified.iter().all(Result::is_ok));
                Ok(TaskResponse::Each(vec![None; each.len()]))
            }
            TaskRequest::Result(one) => {
                one.verify_from(&me, 0).expect("verifies");
                Ok(TaskResponse::Ack)
            }
            other => panic!("unexpected {other:?}"),
        };
        lock(&log).push(request);
        answer
    });
    let deliveries = Deliveries::default();
    let rig = Rig::new(store.clone(), net);
    let courier = rig.courier();
    // Kept before the sender first runs: they leave together.
    for index in 0..5 {
        deliveries.keep(&courier, item(index));
    }
    assert_eq!(store.scan_raw(Records::Outbox, b"").len(), 5);
    drained(&deliveries, &store).await;
    // Then a lone one, to a sender started afresh: it tries a batch again
    // only with several, and one goes alone.
    deliveries.keep(&courier, item(5));
    drained(&deliveries, &store).await;
    let sent: Vec<(&str, Vec<u32>)> = lock(&seen)
        .iter()
        .map(|r| match r {
            TaskRequest::SignedResults(b) => (
                "one signature",
                b.open_receipts_from(&me, 0)
                    .expect("opens")
                    .into_iter()
                    .map(|r| r.expect("ok").index)
                    .collect(),
            ),
            TaskRequest::Results(each) => (
                "each signed",
                each.iter()
                    .map(|s| s.verify(0).expect("ok").index)
                    .collect(),
            ),
            TaskRequest::Result(one) => ("alone", vec![one.verify(0).expect("ok").index]),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("one signature", vec![0, 1, 2, 3, 4]),
            ("each signed", vec![0, 1, 2, 3, 4]),
            ("alone", vec![5]),
        ]
    );
}

#[tokio::test]
async fn a_batch_refused_whole_is_dropped_and_a_busy_one_is_kept_and_sent_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let (net, rx) = NetHandle::new();
    let mut calls = 0;
    coordinator_loop(rx, move |request| {
        calls += 1;
        let batch = match request {
            TaskRequest::SignedResults(batch) => batch,
            // The busy receipt, sent again alone.
            TaskRequest::Result(_) if calls > 2 => return Ok(TaskResponse::Ack),
            other => panic!("unexpected {other:?}"),
        };
        let n = batch
            .open_receipts_from(batch.signer(), 0)
            .expect("opens")
            .len();
        Ok(match calls {
            // The first batch: refused whole (as a bad signature would be).
            1 => TaskResponse::Rejected(RejectReason::Malformed),
            // The second: the coordinator cannot store the second receipt.
            2 => TaskResponse::Each(
                (0..n)
                    .map(|i| (i == 1).then_some(RejectReason::Busy))
                    .collect(),
            ),
            _ => TaskResponse::Ack,
        })
    });
    let deliveries = Deliveries::default();
    let rig = Rig::new(store.clone(), net);
    let courier = rig.courier();
    deliveries.keep(&courier, item(0));
    deliveries.keep(&courier, item(1));
    drained(&deliveries, &store).await;
    deliveries.keep(&courier, item(2));
    deliveries.keep(&courier, item(3));
    deliveries.keep(&courier, item(4));
    // The busy receipt stays kept until it is acknowledged.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let kept: Vec<Vec<u8>> = store
        .scan_raw(Records::Outbox, b"")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(kept, [outbox_key(&item(3).job, 3, 1)]);
    drained(&deliveries, &store).await;
}
