//! Submit: one posted notification → a reserved queue place → the limiter →
//! the outbox → the webhook's queue (or a digest tally when limited).
//!
//! The order is what makes the answers honest: the queue place is reserved
//! before the limiter charges anything (a full queue refuses without using up
//! the limit), and the 202 is sent only after the outbox has the notification.

use limitree::{CheckError, CheckRequest, Decision};

use super::metrics::bump;
use super::outbox::{Kind, Notification, OutboxError};
use super::relay::Relay;
use super::route::NoRoute;

/// A notification as posted: what the handler validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// The tree, when named (else `[notify] tree`, else the only tree).
    pub tree: Option<String>,
    /// The category: the descriptor the limiter decides on, and the route.
    pub category: String,
    /// The Slack body: `text`, and `blocks` / `attachments` as given.
    pub payload: serde_json::Value,
}

/// What became of a submission.
#[derive(Debug)]
pub enum Submitted {
    /// Admitted, persisted and queued.
    Accepted {
        /// The notification's id.
        id: String,
        /// The limiter's decision.
        decision: Decision,
    },
    /// Limited by the limiter, so suppressed: tallied for the category's
    /// digest instead of sent.
    Suppressed(Decision),
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// No usable webhook for the category.
    #[error(transparent)]
    NoRoute(#[from] NoRoute),
    /// The webhook's queue is full.
    #[error(
        "the queue of webhook `{webhook}` is full ({capacity} notifications waiting); retry later"
    )]
    QueueFull {
        /// The webhook's label.
        webhook: String,
        /// `[notify] queue_capacity`.
        capacity: usize,
    },
    /// The limiter could not decide.
    #[error(transparent)]
    Check(#[from] CheckError),
    /// The outbox could not record it.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The relay's outbox is not open (the server has not started it).
    #[error("the notification relay is not running")]
    NotStarted,
}

impl Relay {
    /// Decides, persists and queues one notification.
    pub async fn submit(
        &self,
        submission: Submission,
        request_id: Option<&str>,
    ) -> Result<Submitted, NotifyError> {
        let shared = &self.shared;
        let counters = &shared.counters;
        let at = shared
            .routes
            .route(&submission.category)
            .inspect_err(|_| bump(&counters.no_route))?;
        let outbox = shared.outbox.get().ok_or(NotifyError::NotStarted)?;
        let Some(slot) = shared.queues[at].reserve() else {
            bump(&counters.queue_full);
            return Err(NotifyError::QueueFull {
                webhook: shared.routes.webhooks()[at].label().to_owned(),
                capacity: shared.queues[at].capacity(),
            });
        };
        let tree = submission
            .tree
            .as_deref()
            .or(shared.settings.tree.as_deref());
        let decision = shared
            .limiter
            .check(CheckRequest {
                tree,
                descriptors: &[("category", submission.category.as_str())],
                cost: 1,
                dry_run: false,
            })
            .await?;
        if !decision.allowed {
            bump(&counters.limited);
            if let Some(retry_after) = decision.retry_after {
                let text = submission.payload["text"].as_str().unwrap_or_default();
                shared.digests.record(
                    (decision.tree.clone(), submission.category),
                    text,
                    shared.clock.now(),
                    retry_after,
                    request_id,
                );
            }
            return Ok(Submitted::Suppressed(decision));
        }
        let n = Notification {
            id: uuid::Uuid::new_v4().to_string(),
            kind: Kind::Message,
            tree: decision.tree.clone(),
            category: submission.category,
            payload: submission.payload,
            request_id: request_id.map(str::to_owned),
            accepted_at: shared.clock.now(),
        };
        let id = n.id.clone();
        outbox.append(n.clone()).await?;
        slot.fill(n);
        bump(&counters.accepted);
        tracing::debug!(id, "notification queued");
        Ok(Submitted::Accepted { id, decision })
    }
}
