//! The front door: a request → its chain → the store → a [`Decision`].

use std::sync::Arc;

use crate::chain::{ChainError, Descriptors};
use crate::decision::{Decision, MAX_COST, Mode};
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
        tracing::trace!(tree = %tree.name, allowed = outcome.allowed, reason = %outcome.reason, "decided");
        Ok(Decision::new(&chain, &outcome))
    }
}
