//! `on_error`: decisions made without a failing store, and the errors that are
//! not outages.

use std::sync::Arc;

use limitree::store::BoxFuture;
use limitree::store::fallback::{FallbackStore, OnError};
use limitree::{ChainOutcome, ManualClock, MemoryStore, Mode, Policy, Reason, Store, StoreError};
use rstest::rstest;

/// A store whose every decision fails with its error.
#[derive(Debug)]
struct Failing(StoreError);

/// A store that is always down.
const DOWN: Failing = Failing(StoreError::Timeout(100));

impl Store for Failing {
    fn decide<'a>(
        &'a self,
        _chain: &'a limitree::Chain<'a>,
        _mode: Mode,
    ) -> BoxFuture<'a, Result<ChainOutcome, StoreError>> {
        Box::pin(std::future::ready(Err(self.0.clone())))
    }

    fn check_ready(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "down".into(),
        ))))
    }

    fn kind(&self) -> &'static str {
        "down"
    }
}

fn fallback(on_error: OnError) -> (Arc<Policy>, FallbackStore) {
    fallback_over(DOWN, on_error)
}

fn fallback_over(primary: Failing, on_error: OnError) -> (Arc<Policy>, FallbackStore) {
    let policy = Arc::new(Policy::default_notifications());
    let local = MemoryStore::with_clock(&policy, Arc::new(ManualClock::new(1_700_000_000_000_000)));
    (
        policy,
        FallbackStore::new(Arc::new(primary), local, on_error),
    )
}

#[rstest]
#[case::deny(OnError::Deny, false)]
#[case::allow(OnError::Allow, true)]
#[case::local(OnError::Local, true)]
#[tokio::test]
async fn a_failing_store_is_answered_by_on_error(#[case] on_error: OnError, #[case] allowed: bool) {
    let (policy, store) = fallback(on_error);
    let chain = policy.trees()[0]
        .chain(&[("category", "errors")], 1)
        .unwrap();
    let o = store.decide(&chain, Mode::Commit).await.unwrap();
    assert_eq!(o.allowed, allowed);
    assert_eq!(o.reason, Reason::StoreUnavailable);
    assert_eq!(o.levels.len(), 2);
    assert!(
        store.check_ready().await.is_err(),
        "readiness reports the primary"
    );
}

#[tokio::test]
async fn local_keeps_the_limits_per_instance() {
    let (policy, store) = fallback(OnError::Local);
    let chain = policy.trees()[0]
        .chain(&[("category", "errors")], 1)
        .unwrap();
    for _ in 0..10 {
        assert!(store.decide(&chain, Mode::Commit).await.unwrap().allowed);
    }
    let o = store.decide(&chain, Mode::Commit).await.unwrap();
    assert!(!o.allowed);
    assert_eq!(o.reason, Reason::StoreUnavailable);
    assert!(o.retry_after.is_some());
}

/// A bug is not an outage: whatever `on_error` says, a broken protocol or a
/// policy mismatch reaches the caller as it is, never a fallback answer.
#[rstest]
#[case::protocol_deny(StoreError::Protocol("decoder and script disagree".into()), OnError::Deny)]
#[case::protocol_allow(StoreError::Protocol("decoder and script disagree".into()), OnError::Allow)]
#[case::protocol_local(StoreError::Protocol("decoder and script disagree".into()), OnError::Local)]
#[case::unknown_tree_local(StoreError::UnknownTree("notifications".into()), OnError::Local)]
#[tokio::test]
async fn a_bug_passes_through(#[case] error: StoreError, #[case] on_error: OnError) {
    let (policy, store) = fallback_over(Failing(error.clone()), on_error);
    let chain = policy.trees()[0]
        .chain(&[("category", "errors")], 1)
        .unwrap();
    assert_eq!(store.decide(&chain, Mode::Commit).await, Err(error));
}
