//! What to do when the shared store fails: a chosen answer, fast.
//!
//! [`FallbackStore`] wraps a primary store (Redis). While the primary answers,
//! it is invisible. When a call fails (unreachable, timed out), the decision is
//! made without it according to [`OnError`], with reason
//! [`Reason::StoreUnavailable`] so clients and metrics can tell:
//! - [`OnError::Deny`] (fail closed): nothing passes; protects what is behind the
//!   limiter, at the price of an outage while the store is down.
//! - [`OnError::Allow`] (fail open): everything passes; keeps service up, at the
//!   price of no limit at all while the store is down.
//! - [`OnError::Local`]: an in-memory store with the same policy decides. Limits
//!   then hold **per instance**: N instances together may admit up to N times a
//!   limit until the shared store returns (its state does not carry over).
//!
//! Not every error is an outage: [`StoreError::UnknownTree`] (the store and the
//! limiter got different policies) and [`StoreError::Protocol`] (the store broke
//! its own protocol) are bugs, and pass through unchanged — answering them with
//! `on_error` would hide them behind what looks like a Redis outage.
//!
//! Readiness ([`Store::check_ready`]) still reports the primary, so `/readyz`
//! fails while the shared store is unreachable even though requests are answered.
//!
//! An outage is logged twice, not once per request: a warning when the first
//! call fails (`Redis unavailable: connection refused at 127.0.0.1:6390;
//! on_error = deny decides`) and an info line when a call (or a readiness
//! check) succeeds again (`Redis back after 3.2s; 120 calls failed
//! meanwhile`), timed on the local store's clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use super::{BoxFuture, MemoryStore, Store, StoreError};
use crate::chain::Chain;
use crate::clock::Micros;
use crate::decision::{ChainOutcome, LevelOutcome, Mode, Reason};
use crate::policy::Policy;

/// What to do while the primary store fails (`store.on_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Deny every request while the store fails.
    Deny,
    /// Admit every request while the store fails.
    Allow,
    /// Decide with a per-instance in-memory store while the store fails.
    Local,
}

impl OnError {
    /// The name in config files (`deny`, `allow`, `local`).
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Deny => "deny",
            OnError::Allow => "allow",
            OnError::Local => "local",
        }
    }

    /// Parses a config name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        [OnError::Deny, OnError::Allow, OnError::Local]
            .into_iter()
            .find(|o| o.as_str() == name)
    }
}

/// A primary store with its `on_error`. See the module docs.
#[derive(Debug)]
pub struct FallbackStore {
    primary: Arc<dyn Store>,
    /// Used only under [`OnError::Local`]; built for the same policy.
    local: MemoryStore,
    on_error: OnError,
    /// The outage in progress, if any: logged when it starts and ends.
    /// Shared with the store of a reloaded policy ([`Store::for_policy`]),
    /// so an outage spanning a reload is logged once at each end.
    outage: Arc<Mutex<Option<Outage>>>,
    /// Whether `outage` is set: read without the lock by every successful
    /// call, so the lock is taken only while the primary fails.
    in_outage: Arc<AtomicBool>,
}

/// An outage of the primary: when it started (local store's clock) and how
/// many calls `on_error` answered since.
#[derive(Debug)]
struct Outage {
    since: Micros,
    failures: u64,
}

/// `kind` as a name in a sentence (`redis` → `Redis`).
fn display_name(kind: &str) -> &str {
    match kind {
        "redis" => "Redis",
        other => other,
    }
}

/// What failed, without `StoreError`'s generic prefix.
fn cause(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable(cause) => cause.clone(),
        other => other.to_string(),
    }
}

impl FallbackStore {
    /// Wraps `primary`; `local` must be built for the same policy (it is only
    /// consulted under [`OnError::Local`]).
    pub fn new(primary: Arc<dyn Store>, local: MemoryStore, on_error: OnError) -> Self {
        FallbackStore {
            primary,
            local,
            on_error,
            outage: Arc::new(Mutex::new(None)),
            in_outage: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A call failed: the start of an outage is logged, the rest counted.
    fn note_failure(&self, e: &StoreError) {
        let mut outage = self.outage.lock();
        match outage.as_mut() {
            Some(outage) => outage.failures += 1,
            None => {
                self.in_outage.store(true, Ordering::Relaxed);
                *outage = Some(Outage {
                    since: self.local.clock().now(),
                    failures: 1,
                });
                tracing::warn!(
                    error = %e,
                    store = self.primary.kind(),
                    on_error = self.on_error.as_str(),
                    "{} unavailable: {}; on_error = {} decides",
                    display_name(self.primary.kind()),
                    cause(e),
                    self.on_error.as_str(),
                );
            }
        }
    }

    /// A call succeeded: the end of an outage is logged, with its length.
    fn note_success(&self) {
        if !self.in_outage.load(Ordering::Relaxed) {
            return;
        }
        let Some(outage) = ({
            let mut outage = self.outage.lock();
            // Under the lock, so that an outage starting now is not lost.
            self.in_outage.store(false, Ordering::Relaxed);
            outage.take()
        }) else {
            return;
        };
        let micros = self.local.clock().now().saturating_sub(outage.since);
        #[expect(
            clippy::cast_precision_loss,
            reason = "a duration in a log line, to a tenth of a second"
        )]
        let seconds = micros as f64 / 1e6;
        tracing::info!(
            store = self.primary.kind(),
            outage_ms = micros / 1_000,
            failures = outage.failures,
            "{} back after {seconds:.1}s; {} calls failed meanwhile",
            display_name(self.primary.kind()),
            outage.failures,
        );
    }

    /// What it does while the primary fails.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    fn without_primary(&self, chain: &Chain<'_>, mode: Mode) -> Result<ChainOutcome, StoreError> {
        let allowed = match self.on_error {
            OnError::Local => {
                let mut outcome = self.local.decide_chain(chain, mode)?;
                outcome.reason = Reason::StoreUnavailable;
                return Ok(outcome);
            }
            // A blocking rule denies whatever the store would have said.
            OnError::Allow => !chain.blocked_denies(mode),
            OnError::Deny => false,
        };
        // Nothing is known about the buckets: report every level as `on_error`
        // decided, with nothing remaining and no retry time to promise.
        let levels = chain
            .buckets
            .iter()
            .map(|bucket| LevelOutcome {
                level_index: bucket.level_index,
                allowed,
                remaining: 0,
                limit: bucket.spec.limit,
                window: bucket.spec.window,
                reset_after: 0,
                retry_after: None,
                insufficient: false,
                shadow: bucket.level.shadow,
                overflow: false,
                share: None,
                since_admission: None,
            })
            .collect();
        Ok(ChainOutcome {
            allowed,
            reason: Reason::StoreUnavailable,
            retry_after: None,
            levels,
        })
    }
}

impl Store for FallbackStore {
    fn decide<'a>(
        &'a self,
        chain: &'a Chain<'a>,
        mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(async move {
            match self.primary.decide(chain, mode).await {
                Ok(outcome) => {
                    self.note_success();
                    Ok(outcome)
                }
                // A policy mismatch or a broken protocol is a bug, not an
                // outage: no fallback hides it (the store logged it already).
                Err(e @ (StoreError::UnknownTree(_) | StoreError::Protocol(_))) => Err(e),
                Err(e) => {
                    self.note_failure(&e);
                    self.without_primary(chain, mode)
                }
            }
        })
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let ready = self.primary.check_ready().await;
            match &ready {
                Ok(()) => self.note_success(),
                Err(StoreError::UnknownTree(_) | StoreError::Protocol(_)) => {}
                Err(e) => self.note_failure(e),
            }
            ready
        })
    }

    fn expire_idle(&self) -> usize {
        self.primary.expire_idle() + self.local.expire_idle()
    }

    fn kind(&self) -> &'static str {
        self.primary.kind()
    }

    /// The primary's buckets: while it fails there is nothing to read (the
    /// local store's are `on_error = "local"` stand-ins), so its error is
    /// the answer.
    fn scan_buckets<'a>(
        &'a self,
        scan: super::BucketScan<'a>,
    ) -> BoxFuture<'a, Result<super::ScannedBuckets, StoreError>> {
        self.primary.scan_buckets(scan)
    }

    /// Resets the primary's buckets and the local stand-ins alike, so a
    /// bucket reset during an outage does not come back from either.
    fn reset<'a>(&'a self, chain: &'a Chain<'a>) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let _ = self.local.reset_chain(chain);
            self.primary.reset(chain).await
        })
    }

    /// The primary for `policy` (Redis serves any policy as it is), the local
    /// store rebuilt for it keeping what it can, the outage state shared.
    fn for_policy(&self, old: &Policy, policy: &Policy) -> Option<Arc<dyn Store>> {
        Some(Arc::new(FallbackStore {
            primary: self
                .primary
                .for_policy(old, policy)
                .unwrap_or_else(|| Arc::clone(&self.primary)),
            local: self.local.for_new_policy(policy),
            on_error: self.on_error,
            outage: Arc::clone(&self.outage),
            in_outage: Arc::clone(&self.in_outage),
        }))
    }
}
