//! The front door: a request → its chain → the store → a [`Decision`].

use std::sync::Arc;

use crate::chain::{ChainError, Descriptors};
use crate::clock::Micros;
use crate::decision::{MAX_COST, Mode, Reason};
use crate::policy::{Policy, Tree};
use crate::store::{Store, StoreError};

/// One rate-limit question.
#[derive(Debug, Clone, Copy)]
pub struct CheckRequest<'a, D: ?Sized> {
    /// The tree; may be `None` when the policy has exactly one.
    pub tree: Option<&'a str>,
    /// The request's descriptors (`category = errors`, …).
    pub descriptors: &'a D,
    /// Units to take; 0 peeks.
    pub cost: u64,
    /// Answer without recording anything.
    pub dry_run: bool,
}

/// One level's part in a [`Decision`], named for people and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelStatus {
    /// The level's name.
    pub name: String,
    /// The bucket: `category=errors`, `*` for a global level, or
    /// `category=<overflow>` when the level's bucket cap was reached.
    pub bucket: String,
    /// The bucket's limit per window.
    pub limit: u64,
    /// The bucket's window, in microseconds.
    pub window: Micros,
    /// Units left.
    pub remaining: u64,
    /// Wait until the bucket is full again.
    pub reset_after: Micros,
    /// This level had room.
    pub allowed: bool,
    /// When this level lacked room: the exact wait until it has.
    pub retry_after: Option<Micros>,
    /// A shadow level (reported, never denies).
    pub shadow: bool,
}

/// The answer to a [`CheckRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The tree decided.
    pub tree: String,
    /// Admitted (and, unless a dry run or peek, charged at every level).
    pub allowed: bool,
    /// Why.
    pub reason: Reason,
    /// When limited: the earliest wait after which the whole chain could take the
    /// cost if nothing else arrived. Never early.
    pub retry_after: Option<Micros>,
    /// Per level, root first.
    pub levels: Vec<LevelStatus>,
}

/// Why a request could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The named tree does not exist.
    #[error("tree `{name}` is not defined; defined trees: {}", known.join(", "))]
    UnknownTree {
        /// What was asked for.
        name: String,
        /// What exists.
        known: Vec<String>,
    },
    /// The policy has several trees and the request named none.
    #[error("the policy has several trees; name one with `tree` ({})", known.join(", "))]
    TreeRequired {
        /// What exists.
        known: Vec<String>,
    },
    /// The descriptors do not form a chain.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The cost is out of range.
    #[error("cost {cost} is larger than the maximum {MAX_COST}")]
    CostTooLarge {
        /// The cost given.
        cost: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides requests against a policy, in a store.
#[derive(Debug, Clone)]
pub struct Limiter {
    policy: Arc<Policy>,
    store: Arc<dyn Store>,
}

impl Limiter {
    /// A limiter over `store`, which must have been built for `policy`.
    pub fn new(policy: Arc<Policy>, store: Arc<dyn Store>) -> Self {
        Limiter { policy, store }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The tree a request names (or the only one).
    pub fn tree(&self, name: Option<&str>) -> Result<&Tree, CheckError> {
        let known = || self.policy.trees().iter().map(|t| t.name.clone()).collect();
        match name {
            Some(name) => self
                .policy
                .tree(name)
                .ok_or_else(|| CheckError::UnknownTree {
                    name: name.to_owned(),
                    known: known(),
                }),
            None => match self.policy.trees() {
                [only] => Ok(only),
                _ => Err(CheckError::TreeRequired { known: known() }),
            },
        }
    }

    /// Decides one request.
    pub async fn check<D: Descriptors + Sync + ?Sized>(
        &self,
        request: CheckRequest<'_, D>,
    ) -> Result<Decision, CheckError> {
        if request.cost > MAX_COST {
            return Err(CheckError::CostTooLarge { cost: request.cost });
        }
        let tree = self.tree(request.tree)?;
        let chain = tree.chain(request.descriptors)?;
        let mode = Mode::for_request(request.cost, request.dry_run);
        let outcome = self.store.decide(&chain, request.cost, mode).await?;
        let levels = chain
            .links
            .iter()
            .zip(&outcome.levels)
            .map(|(link, o)| LevelStatus {
                name: link.level.name.clone(),
                bucket: if o.overflow {
                    format!("{}=<overflow>", link.level.by.join(","))
                } else {
                    link.bucket_label()
                },
                limit: o.limit,
                window: o.window,
                remaining: o.remaining,
                reset_after: o.reset_after,
                allowed: o.allowed,
                retry_after: o.retry_after,
                shadow: o.shadow,
            })
            .collect();
        tracing::trace!(tree = %tree.name, allowed = outcome.allowed, reason = %outcome.reason, "decided");
        Ok(Decision {
            tree: tree.name.clone(),
            allowed: outcome.allowed,
            reason: outcome.reason,
            retry_after: outcome.retry_after,
            levels,
        })
    }
}
