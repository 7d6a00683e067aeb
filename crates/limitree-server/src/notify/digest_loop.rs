//! The digest loop: [`super::digest`] keeps the tallies and decides nothing;
//! this is the part that acts on them. Every `[notify] digest_interval` it
//! charges each due digest through the limiter like any notification, and
//! writes the admitted ones to the outbox and the webhook's queue. At shutdown
//! it hands the tallies still waiting to the outbox for the next start.

use std::sync::Arc;

use limitree::CheckRequest;
use tokio_util::sync::CancellationToken;

use super::digest;
use super::metrics::bump;
use super::outbox::{Kind, Notification};
use super::relay::Shared;

/// Every `[notify] digest_interval`, tries the digests whose categories the
/// limiter said would have room by now, until `cancel`.
pub(super) async fn run(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(shared.settings.digest_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticks.tick() => try_digests(&shared).await,
        }
    }
    // Suppressions not yet told of are told after the restart.
    let tallies = shared.digests.save();
    if let (false, Some(outbox)) = (tallies.is_empty(), shared.outbox.get()) {
        let count = tallies.len();
        match outbox.save_digests(tallies).await {
            Ok(()) => tracing::info!(
                count,
                "notify: kept the pending digest tallies for the next start"
            ),
            Err(e) => tracing::warn!(error = %e, "notify: could not keep the digest tallies"),
        }
    }
}

/// One pass over the due digests: each is charged through the limiter like any
/// notification; admitted ones are persisted and queued.
async fn try_digests(shared: &Shared) {
    let Some(outbox) = shared.outbox.get() else {
        return;
    };
    let now = shared.clock.now();
    for key in shared.digests.due(now) {
        let (tree, category) = &key;
        let Ok(at) = shared.routes.route(category) else {
            continue;
        };
        let Some(slot) = shared.queues[at].reserve() else {
            // The queue is full: look again next time.
            continue;
        };
        let decision = shared
            .limiter
            .check(CheckRequest {
                tree: Some(tree),
                descriptors: &[("category", category.as_str())],
                cost: 1,
                dry_run: false,
            })
            .await;
        let decision = match decision {
            Ok(decision) => decision,
            Err(e) => {
                tracing::warn!(category, error = %e, "notify: a digest could not be decided");
                continue;
            }
        };
        if !decision.allowed {
            let wait = decision.retry_after.unwrap_or(0);
            shared.digests.reschedule(&key, now.saturating_add(wait));
            continue;
        }
        let Some(tally) = shared.digests.take(&key) else {
            continue;
        };
        let n = Notification {
            id: uuid::Uuid::new_v4().to_string(),
            kind: Kind::Digest,
            tree: tree.clone(),
            category: category.clone(),
            payload: serde_json::json!({ "text": digest::text(category, &tally) }),
            request_id: tally.request_id.clone(),
            accepted_at: now,
        };
        match outbox.append(n.clone()).await {
            Ok(()) => {
                tracing::info!(
                    category,
                    suppressed = tally.count,
                    id = n.id,
                    "notify: digest queued"
                );
                slot.fill(n);
                bump(&shared.counters.digests);
            }
            Err(e) => {
                tracing::warn!(category, error = %e, "notify: a digest could not be persisted");
                shared.digests.put_back(&key, tally, now);
            }
        }
    }
}
