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

use std::sync::Arc;

use super::{BoxFuture, MemoryStore, Store, StoreError};
use crate::chain::Chain;
use crate::decision::{ChainOutcome, LevelOutcome, Mode, Reason};

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
}

impl FallbackStore {
    /// Wraps `primary`; `local` must be built for the same policy (it is only
    /// consulted under [`OnError::Local`]).
    pub fn new(primary: Arc<dyn Store>, local: MemoryStore, on_error: OnError) -> Self {
        FallbackStore {
            primary,
            local,
            on_error,
        }
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
                Ok(outcome) => Ok(outcome),
                // A policy mismatch or a broken protocol is a bug, not an
                // outage: no fallback hides it (the store logged it already).
                Err(e @ (StoreError::UnknownTree(_) | StoreError::Protocol(_))) => Err(e),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        store = self.primary.kind(),
                        on_error = self.on_error.as_str(),
                        tree = %chain.tree.name,
                        "store failed; deciding by on_error"
                    );
                    self.without_primary(chain, mode)
                }
            }
        })
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.primary.check_ready()
    }

    fn expire_idle(&self) -> usize {
        self.primary.expire_idle() + self.local.expire_idle()
    }

    fn kind(&self) -> &'static str {
        self.primary.kind()
    }
}
