//! The front door: a request → its chain → the store → a [`Decision`].

use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::chain::{ChainError, Descriptors, Target};
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

/// Decides requests against a policy, in a store. Clones share one policy:
/// [`Limiter::reload`] swaps it for every clone at once (the HTTP API, the
/// relay and the gRPC service all hold clones).
///
/// Each request decides with one [`Snapshot`] — a policy and the store laid
/// out for it — taken when it starts and used for its whole decision, so no
/// request sees half of two policies. Taking one is a lock-free read
/// (`arc-swap`).
#[derive(Debug, Clone)]
pub struct Limiter {
    current: Arc<ArcSwap<Snapshot>>,
    /// One reload at a time: each builds its store from the one before.
    reloading: Arc<Mutex<()>>,
}

/// A policy and the store that decides its chains: what one request uses.
#[derive(Debug)]
pub struct Snapshot {
    policy: Arc<Policy>,
    store: Arc<dyn Store>,
}

impl Limiter {
    /// A limiter over `store`, which must have been built for `policy`.
    pub fn new(policy: Arc<Policy>, store: Arc<dyn Store>) -> Self {
        Limiter {
            current: Arc::new(ArcSwap::from_pointee(Snapshot { policy, store })),
            reloading: Arc::new(Mutex::new(())),
        }
    }

    /// The policy and store in force now. Hold it for one decision (or one
    /// answer): a reload does not change it under you.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.current.load().policy)
    }

    /// The store in force now.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.current.load().store)
    }

    /// Puts `policy` in force for every clone of this limiter, atomically:
    /// requests that took their snapshot before finish on the old policy,
    /// every later one uses the new. The store is carried over by
    /// [`Store::for_policy`]: a bucket whose tree, level name, `by` keys and
    /// algorithm are unchanged keeps its state (its count is then read under
    /// the new limit and window), every other bucket starts fresh, and state
    /// of levels and trees the new policy lacks is dropped (memory) or left
    /// to expire by its TTL (Redis). Returns the new snapshot.
    pub fn reload(&self, policy: Arc<Policy>) -> Arc<Snapshot> {
        let _one_at_a_time = self.reloading.lock();
        let old = self.current.load();
        let store = old
            .store
            .for_policy(&old.policy, &policy)
            .unwrap_or_else(|| Arc::clone(&old.store));
        let new = Arc::new(Snapshot { policy, store });
        self.current.store(Arc::clone(&new));
        new
    }

    /// Decides one request (on the snapshot in force now).
    pub async fn check<D: Descriptors + Sync + ?Sized>(
        &self,
        request: CheckRequest<'_, D>,
    ) -> Result<Decision, CheckError> {
        self.snapshot().check(request).await
    }
}

impl Snapshot {
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
        let chain = tree.chain(request.descriptors, request.cost)?;
        let mode = Mode::for_request(request.cost, request.dry_run);
        let outcome = self.store.decide(&chain, mode).await?;
        tracing::trace!(tree = %tree.name, allowed = outcome.allowed, reason = %outcome.reason, "decided");
        Ok(Decision::new(&chain, &outcome))
    }

    /// Decides one call of several descriptors (Envoy's `ShouldRateLimit`),
    /// each an ordered list of entries with its own cost (`costs[i]` for
    /// `descriptors[i]`), in **one** atomic store call, all-or-nothing: an
    /// answer that is not allowed charged nothing anywhere; an allowed commit
    /// charged every matched bucket its cost (duplicates merged, costs summed).
    /// Works for both kinds of tree (see [`Tree::chain_for_descriptors`]).
    ///
    /// The call costs the sum of `costs`: 0 is a peek ([`Mode::Peek`]: does
    /// one more unit fit everywhere); otherwise a descriptor of cost 0 is
    /// checked and reported but neither charged nor able to deny. A matched
    /// `requests_per_unit: 0` rule denies the call
    /// ([`Reason::InsufficientCapacity`](crate::Reason::InsufficientCapacity))
    /// unless it is in shadow mode.
    ///
    /// Returns the decision (its `levels` are the chain's buckets) and, per
    /// request descriptor, what it landed on: a [`Target::Buckets`] indexes
    /// `Decision::levels`.
    pub async fn check_descriptors<'a, D: AsRef<[(&'a str, &'a str)]> + Sync>(
        &self,
        tree: &'a Tree,
        descriptors: &'a [D],
        costs: &[u64],
        dry_run: bool,
    ) -> Result<(Decision, Vec<Target>), CheckError> {
        if let Some(&cost) = costs.iter().find(|&&c| c > MAX_COST) {
            return Err(CheckError::CostTooLarge { cost });
        }
        let (chain, targets) = tree.chain_for_descriptors(descriptors, costs)?;
        let mode = Mode::for_request(chain.total_cost(), dry_run);
        let outcome = self.store.decide(&chain, mode).await?;
        tracing::trace!(tree = %tree.name, allowed = outcome.allowed, reason = %outcome.reason, "decided");
        Ok((Decision::new(&chain, &outcome), targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::BucketSet;
    use crate::decision::Reason;
    use crate::policy::envoy::EnvoyConfig;
    use crate::store::MemoryStore;

    /// The memory store's futures are ready at once: poll once.
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => unreachable!("the memory store answers at once"),
        }
    }

    const YAML: &str = "domain: d
descriptors:
  - key: ip
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: closed
    rate_limit:
      unit: second
      requests_per_unit: 0
";

    fn limiter() -> Limiter {
        let domain = EnvoyConfig::from_yaml_str(YAML, "d.yaml").unwrap();
        let policy = Arc::new(Policy::from_envoy_domains(vec![domain]).unwrap());
        let store = Arc::new(MemoryStore::new(&policy));
        Limiter::new(policy, store)
    }

    #[test]
    fn a_call_of_several_descriptors_is_one_decision() {
        let limiter = limiter().snapshot();
        let tree = limiter.tree(Some("d")).unwrap();
        let call = [vec![("ip", "a")], vec![("ip", "a")]];
        let (decision, targets) =
            ready(limiter.check_descriptors(tree, &call, &[1, 1], false)).unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.levels.len(), 1);
        assert_eq!(decision.levels[0].remaining, 0);
        assert_eq!(targets, [Target::Buckets(BucketSet::one(0)); 2]);
        // Full: denied, and a peek (all costs 0) says so without charging.
        let (decision, _) = ready(limiter.check_descriptors(tree, &call, &[0, 0], false)).unwrap();
        assert!(!decision.allowed && decision.reason == Reason::Limited);
    }

    #[test]
    fn a_blocking_rule_denies_without_charging() {
        let limiter = limiter().snapshot();
        let tree = limiter.tree(Some("d")).unwrap();
        let call = [vec![("ip", "b")], vec![("closed", "x")]];
        let (decision, targets) =
            ready(limiter.check_descriptors(tree, &call, &[1, 1], false)).unwrap();
        assert!(!decision.allowed);
        assert_eq!(decision.reason, Reason::InsufficientCapacity);
        assert_eq!(decision.levels[0].remaining, 2, "nothing charged");
        assert_eq!(targets[1], Target::Blocked { rule_index: 1 });
    }

    #[test]
    fn every_cost_is_bounded() {
        let limiter = limiter().snapshot();
        let tree = limiter.tree(Some("d")).unwrap();
        let call = [vec![("ip", "c")]];
        let err =
            ready(limiter.check_descriptors(tree, &call, &[MAX_COST + 1], false)).unwrap_err();
        assert_eq!(err, CheckError::CostTooLarge { cost: MAX_COST + 1 });
    }
}
