//! A worker's word to a task's coordinator that it still holds the task
//! (queued behind its slots or running), every
//! [`HEARTBEAT_INTERVAL_MS`]: the task's lease goes on, so an honest long
//! run is not copied elsewhere (DESIGN §7).

use std::sync::Weak;
use std::time::Duration;

use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::{HEARTBEAT_INTERVAL_MS, TaskRef, TaskRequest};

use crate::dispatch::NetHandle;

/// The worker's interval between heartbeats.
pub(super) const INTERVAL: Duration = Duration::from_millis(HEARTBEAT_INTERVAL_MS);

/// Says every `interval` ([`INTERVAL`]) that task `index` of `job` is
/// still held, for as long as `held` lives (the worker drops every strong
/// handle of it once the task has ended). A message lost with the
/// connection only shortens the lease the coordinator keeps.
pub(super) async fn beat<T: Send + Sync>(
    net: NetHandle,
    (job, index, attempt): (JobId, u32, u32),
    coordinator: PeerKey,
    held: Weak<T>,
    interval: Duration,
) {
    loop {
        tokio::time::sleep(interval).await;
        if held.strong_count() == 0 {
            return;
        }
        let request = TaskRequest::Alive {
            job,
            tasks: vec![TaskRef { index, attempt }],
        };
        if let Err(e) = net.task(coordinator, request).await {
            tracing::debug!(%job, index, "heartbeat not delivered: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dispatch::NetCmd;
    use corral_protocol::messages::TaskResponse;

    #[tokio::test]
    async fn a_held_task_is_said_alive_until_it_ends() {
        let (net, mut rx) = NetHandle::new();
        let job = JobId::from_bytes([3; 16]);
        let coordinator = PeerKey::from_bytes([4; 32]);
        let held = Arc::new(());
        let beating = tokio::spawn(beat(
            net,
            (job, 7, 2),
            coordinator,
            Arc::downgrade(&held),
            Duration::from_millis(20),
        ));
        for _ in 0..2 {
            match rx.recv().await.expect("a heartbeat") {
                NetCmd::Task {
                    peer,
                    request,
                    reply,
                } => {
                    assert_eq!(peer, coordinator);
                    assert_eq!(
                        request,
                        TaskRequest::Alive {
                            job,
                            tasks: vec![TaskRef {
                                index: 7,
                                attempt: 2
                            }]
                        }
                    );
                    let _ = reply.send(Ok(TaskResponse::Ack));
                }
                other => panic!("expected a heartbeat, got {other:?}"),
            }
        }
        // The task ended: the heartbeats stop.
        drop(held);
        let stopped = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(cmd) = rx.recv().await {
                if let NetCmd::Task { reply, .. } = cmd {
                    let _ = reply.send(Ok(TaskResponse::Ack));
                }
            }
        });
        assert!(
            stopped.await.is_ok(),
            "heartbeats went on after the task ended"
        );
        assert!(beating.await.is_ok());
    }
}
