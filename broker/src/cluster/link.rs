//! `ControllerLink`: how this node reaches the active controller (controller shard). A voter
//! asks its own `ControllerService` when that one is active and serves metadata fetches from
//! it always; everything else goes over the internal RPC to the other voters.

use std::rc::Rc;
use std::time::{Duration, Instant};

use skein_controller::rpc::{with_timeout, RemoteClient};
use skein_controller::service::{codes, ControllerService};
use skein_net::internal::InternalMessage;

/// Pause between attempts while no controller answers (an election is under way).
const RETRY_PAUSE: Duration = Duration::from_millis(20);

pub struct ControllerLink {
    local: Option<Rc<ControllerService>>,
    remote: Option<RemoteClient>,
}

#[derive(Debug, thiserror::Error)]
#[error("no active controller answered within {waited:?}: {last}")]
pub struct LinkError {
    pub waited: Duration,
    pub last: String,
}

impl ControllerLink {
    pub fn new(local: Option<Rc<ControllerService>>, remote: Option<RemoteClient>) -> Self {
        ControllerLink { local, remote }
    }

    /// This node's controller voter, if it is one.
    pub fn local(&self) -> Option<&Rc<ControllerService>> {
        self.local.as_ref()
    }

    /// Sends `request` to the active controller (metadata fetches: to this node's voter if it
    /// has one) and returns its answer; retries through elections until `timeout`.
    pub async fn call(
        &self,
        node_id: i32,
        request: InternalMessage,
        timeout: Duration,
    ) -> Result<InternalMessage, LinkError> {
        let start = Instant::now();
        let is_fetch = matches!(request, InternalMessage::FetchMetadata { .. });
        let mut last = String::from("no controller configured");
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            if let Some(local) = &self.local {
                if is_fetch || local.is_active() {
                    // Bounded too: a decision waits for a quorum that may be gone for good
                    // (the other voters stopped), and a stopping broker must not wait forever.
                    match with_timeout(left, local.handle(node_id, request.clone())).await {
                        Some(answer) if answer.error_code() != Some(codes::NOT_CONTROLLER) => {
                            return Ok(answer)
                        }
                        Some(_) => last = "the local controller lost its leadership".to_string(),
                        None => last = "the local controller did not decide in time".to_string(),
                    }
                }
            }
            if let (Some(local), Some(remote)) = (&self.local, &self.remote) {
                // A voter knows the Raft leader from its own log: ask it first rather than
                // rotate through the voters (one of which may hang without refusing).
                let leader = local.node().leader_id().filter(|l| l.0 != node_id);
                if let Some(leader) = leader.filter(|_| !is_fetch) {
                    let attempt = left.min(Duration::from_millis(500));
                    if let Ok(answer) = remote.call_node(leader, request.clone(), attempt).await {
                        if answer.error_code() != Some(codes::NOT_CONTROLLER) {
                            return Ok(answer);
                        }
                    }
                }
            }
            if let Some(remote) = &self.remote {
                // Short attempts, so a local voter that wins the election is asked soon.
                let attempt = if self.local.is_some() {
                    left.min(Duration::from_millis(500))
                } else {
                    left
                };
                match remote.call(request.clone(), attempt).await {
                    Ok(answer) if answer.error_code() != Some(codes::NOT_CONTROLLER) => {
                        return Ok(answer)
                    }
                    Ok(_) => last = "no voter is the active controller".to_string(),
                    Err(e) => last = e.to_string(),
                }
            }
            if start.elapsed() >= timeout {
                return Err(LinkError {
                    waited: start.elapsed(),
                    last,
                });
            }
            glommio::timer::sleep(RETRY_PAUSE.min(timeout.saturating_sub(start.elapsed()))).await;
        }
    }
}
