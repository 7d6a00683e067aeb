//! Concurrent decisions for one tree share one script call.
//!
//! Redis spends most of a small script's time on the call itself (dispatch,
//! setting up the script, loading each bucket) rather than on deciding, so a
//! busy instance sends the decisions that arrive while a call for the same tree
//! is in flight together, in the next call. Each keeps its own semantics and
//! atomicity: `decide.lua` runs them one after the other at the same `now`, as
//! if they were separate calls in the same microsecond.
//!
//! No background task: a caller that finds fewer than [`STEADY_IN_FLIGHT`]
//! calls in flight for its tree (or fewer than [`MAX_IN_FLIGHT`] and a
//! [`FULL_BATCH`] waiting) *leads* — it takes the waiting decisions (its own
//! first), makes the call and hands every caller its reply; as soon as Redis
//! answers, it passes the lead to the first caller still waiting. A lone caller
//! therefore goes straight to Redis, and batches grow only as fast as Redis
//! answers. Callers keep their own deadlines
//! ([`super::RedisStore`] bounds every call): one that gives up while waiting is
//! left out of the next call; if a leader gives up mid-call, the callers in its
//! call get an error (their decisions may or may not have been made) and the
//! lead passes on.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Most decisions in one script call: bounds the call's size and how long one
/// script holds Redis.
pub(super) const MAX_BATCH: usize = 64;

/// Script calls in flight per tree (per store) that any batch may fill. One:
/// decisions that arrive while it is in flight wait for it and go together in
/// the next, so a call's fixed cost (in Redis: the call, the script's set-up,
/// reading and writing the socket) is paid once per batch. Through `limitree
/// serve` with 8 connections two steady calls carried 2.1 decisions each and
/// cost Redis about a quarter more CPU per decision than one, with no better
/// latency (BENCHMARKS.md, "Redis CPU per decision through the server").
pub(super) const STEADY_IN_FLIGHT: usize = 1;

/// Most script calls in flight per tree (per store). Calls beyond
/// [`STEADY_IN_FLIGHT`] go only with at least [`FULL_BATCH`] decisions: when
/// that many wait, Redis would otherwise sit idle while the client turns a
/// reply around (waking the callers, making the next call), but an extra call
/// for every decision or two would only split the batches and pay each call's
/// fixed cost more often (measured in BENCHMARKS.md; allowing more than 4
/// changed nothing with 64 callers in-process).
pub(super) const MAX_IN_FLIGHT: usize = 4;

/// Decisions a call beyond [`STEADY_IN_FLIGHT`] must carry.
pub(super) const FULL_BATCH: usize = 4;

/// What a waiting caller is told.
#[derive(Debug)]
enum Signal<D, R> {
    /// Its decision's reply.
    Done(Result<R, StoreError>),
    /// Nobody is calling Redis for this tree any more: it leads now, with its
    /// decision handed back. The lead travels as a [`Lead`] so that it is
    /// passed on even if this caller gives up before reading the signal.
    Lead(D, Lead<D, R>),
}

#[derive(Debug)]
struct Waiter<D, R> {
    decision: D,
    reply: oneshot::Sender<Signal<D, R>>,
}

#[derive(Debug)]
struct Queue<D, R> {
    /// How many callers lead (are calling, or about to call, Redis); at most
    /// [`MAX_IN_FLIGHT`].
    leading: usize,
    /// Decisions not yet sent, oldest first.
    waiting: Vec<Waiter<D, R>>,
}

impl<D, R> Default for Queue<D, R> {
    fn default() -> Self {
        Queue {
            leading: 0,
            waiting: Vec::new(),
        }
    }
}

type Queues<D, R> = Arc<Mutex<HashMap<String, Queue<D, R>>>>;

/// Per-tree queues of decisions `D` waiting for a script call that answers
/// each with an `R`.
#[derive(Debug)]
pub(super) struct Batcher<D, R> {
    queues: Queues<D, R>,
}

impl<D, R> Default for Batcher<D, R> {
    fn default() -> Self {
        Batcher {
            queues: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<D, R> Batcher<D, R> {
    /// Decides `decision` for `tree`, in a batch with the decisions of other
    /// callers of the same tree. `call` makes one script call for a batch and
    /// returns one reply per decision, in order.
    pub(super) async fn submit<F, Fut>(
        &self,
        tree: &str,
        decision: D,
        call: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(Vec<D>) -> Fut,
        Fut: Future<Output = Result<Vec<R>, StoreError>>,
    {
        let queued = {
            let mut queues = self.queues.lock();
            let queue = queues.entry_ref(tree).or_default();
            // This caller's decision and the waiting ones make the batch.
            if !may_lead(queue.leading, queue.waiting.len() + 1) {
                let (reply, replied) = oneshot::channel();
                queue.waiting.push(Waiter { decision, reply });
                Err(replied)
            } else {
                queue.leading += 1;
                Ok(decision)
            }
        };
        // Leading. Whatever happens from here (even this future being dropped
        // mid-call), the guard passes the lead on.
        let (decision, lead) = match queued {
            Ok(decision) => (decision, Lead::new(&self.queues, tree)),
            Err(replied) => match replied.await {
                Ok(Signal::Done(result)) => return result,
                Ok(Signal::Lead(decision, lead)) => (decision, lead),
                Err(_) => return Err(abandoned()),
            },
        };
        let others: Vec<Waiter<D, R>> = {
            let mut queues = self.queues.lock();
            let queue = queues.entry_ref(tree).or_default();
            // Callers that gave up are left out: nobody would learn their answer.
            queue.waiting.retain(|w| !w.reply.is_closed());
            let n = queue.waiting.len().min(MAX_BATCH - 1);
            queue.waiting.drain(..n).collect()
        };
        let mut decisions = Vec::with_capacity(others.len() + 1);
        decisions.push(decision);
        let mut replies = Vec::with_capacity(others.len());
        for waiter in others {
            decisions.push(waiter.decision);
            replies.push(waiter.reply);
        }
        let sent = decisions.len();
        let answered = call(decisions).await;
        // Redis has answered: the next call may go out now, while this caller
        // hands out the replies.
        drop(lead);
        let results = match answered {
            Ok(results) if results.len() == sent => results,
            Ok(results) => {
                let e = super::protocol::protocol_error(format!(
                    "the decision script answered {} of {sent} decisions",
                    results.len()
                ));
                for reply in replies {
                    let _ = reply.send(Signal::Done(Err(e.clone())));
                }
                return Err(e);
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Signal::Done(Err(e.clone())));
                }
                return Err(e);
            }
        };
        let mut results = results.into_iter();
        // This caller's decision went first.
        let own = results.next().ok_or_else(abandoned)?;
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(Signal::Done(Ok(result)));
        }
        Ok(own)
    }
}

/// Whether one more caller may lead (make a call) while `leading` do, with a
/// batch of `batch` decisions.
fn may_lead(leading: usize, batch: usize) -> bool {
    leading < STEADY_IN_FLIGHT || (leading < MAX_IN_FLIGHT && batch >= FULL_BATCH)
}

fn abandoned() -> StoreError {
    StoreError::Unavailable(
        "the script call carrying this decision was abandoned (its caller timed out)".to_owned(),
    )
}

/// Held by a leading caller: on drop, passes the lead to the first caller
/// still waiting, or records that one caller fewer leads.
#[derive(Debug)]
struct Lead<D, R> {
    queues: Queues<D, R>,
    tree: String,
    /// False once passed on (or for a lead that could not be delivered).
    armed: bool,
}

impl<D, R> Lead<D, R> {
    fn new(queues: &Queues<D, R>, tree: &str) -> Self {
        Lead {
            queues: Arc::clone(queues),
            tree: tree.to_owned(),
            armed: true,
        }
    }
}

impl<D, R> Drop for Lead<D, R> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut queues = self.queues.lock();
        let Some(queue) = queues.get_mut(&self.tree) else {
            return;
        };
        // The lead passes on only if the waiting callers could take it anew.
        while !queue.waiting.is_empty() && may_lead(queue.leading - 1, queue.waiting.len()) {
            let next = queue.waiting.remove(0);
            let lead = Lead::new(&self.queues, &self.tree);
            match next.reply.send(Signal::Lead(next.decision, lead)) {
                Ok(()) => return,
                // That caller gave up: disarm the undelivered lead (dropping it
                // armed would re-enter this lock) and try the next one.
                Err(Signal::Lead(_, mut undelivered)) => undelivered.armed = false,
                Err(Signal::Done(_)) => {}
            }
        }
        queue.leading -= 1;
        if queue.leading == 0 {
            queues.remove(&self.tree);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Replies to each decision `d` with `[d]`; records the batches it saw.
    async fn echo(
        seen: &Mutex<Vec<Vec<i64>>>,
        batch: Vec<i64>,
    ) -> Result<Vec<Vec<i64>>, StoreError> {
        seen.lock().push(batch.clone());
        tokio::task::yield_now().await;
        Ok(batch.into_iter().map(|d| vec![d]).collect())
    }

    #[tokio::test]
    async fn waiting_decisions_share_the_next_call_in_order() {
        let batcher = Arc::new(Batcher::<i64, Vec<i64>>::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        for d in 0..200 {
            let (batcher, seen) = (Arc::clone(&batcher), Arc::clone(&seen));
            tasks.spawn(async move {
                let reply = batcher.submit("t", d, |b| echo(&seen, b)).await.unwrap();
                assert_eq!(reply, vec![d]);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let seen = seen.lock();
        assert_eq!(seen.iter().map(Vec::len).sum::<usize>(), 200);
        assert!(seen.len() < 200, "no batching happened");
        assert!(seen.iter().all(|b| b.len() <= MAX_BATCH));
        assert!(
            batcher.queues.lock().is_empty(),
            "nobody leads once all are done"
        );
    }

    /// A leader that gives up mid-call passes the lead on: callers waiting
    /// behind it are still decided, and the tree is not left without a leader.
    /// On paused time: the deadlines pass in order, at once.
    #[tokio::test(start_paused = true)]
    #[expect(
        clippy::disallowed_methods,
        reason = "test tasks, each awaited before the test ends"
    )]
    async fn a_leader_that_gives_up_passes_the_lead() {
        let batcher = Arc::new(Batcher::<i64, Vec<i64>>::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut stuck = Vec::new();
        // Leaders whose calls never return, then give up.
        for d in 0..STEADY_IN_FLIGHT as i64 {
            let batcher = Arc::clone(&batcher);
            stuck.push(tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(100),
                    batcher.submit("t", d, |_| std::future::pending()),
                )
                .await
            }));
        }
        tokio::task::yield_now().await;
        // These wait behind them; one waiter gives up early.
        let quitter = {
            let batcher = Arc::clone(&batcher);
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(10),
                    batcher.submit("t", 99, |_| std::future::pending()),
                )
                .await
            })
        };
        let waiter = {
            let (batcher, seen) = (Arc::clone(&batcher), Arc::clone(&seen));
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(1),
                    batcher.submit("t", 7, |b| echo(&seen, b)),
                )
                .await
            })
        };
        assert!(quitter.await.unwrap().is_err());
        for s in stuck {
            assert!(s.await.unwrap().is_err(), "timed out");
        }
        assert_eq!(waiter.await.unwrap().unwrap().unwrap(), vec![7]);
        // The quitter was left out of the call.
        assert_eq!(*seen.lock(), vec![vec![7]]);
        let fresh = batcher.submit("t", 8, |b| echo(&seen, b)).await.unwrap();
        assert_eq!(fresh, vec![8]);
        assert!(batcher.queues.lock().is_empty());
    }

    /// Beyond the steady calls, more go only with full batches, up to the
    /// most in flight; when a call returns, its lead passes on only under the
    /// same rule.
    #[tokio::test(start_paused = true)]
    async fn an_extra_call_goes_only_with_a_full_batch() {
        let batcher = Arc::new(Batcher::<i64, Vec<i64>>::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        let mut submit = |d: i64| {
            let (batcher, seen, gate) =
                (Arc::clone(&batcher), Arc::clone(&seen), Arc::clone(&gate));
            tasks.spawn(async move {
                let reply = batcher
                    .submit("t", d, |b| async move {
                        seen.lock().push(b.clone());
                        // Held until the test opens the gate.
                        let _pass = gate.acquire().await;
                        Ok(b.into_iter().map(|d| vec![d]).collect())
                    })
                    .await;
                assert_eq!(reply, Ok(vec![d]));
            });
        };
        // On paused time a sleep returns only once every task is blocked
        // (the runtime advances the clock only when idle): every submitted
        // decision has then either led a call or queued.
        let settle = || tokio::time::sleep(Duration::from_millis(20));
        for d in 0..STEADY_IN_FLIGHT as i64 {
            submit(d);
        }
        settle().await;
        assert_eq!(seen.lock().len(), STEADY_IN_FLIGHT);
        // One decision short of a full batch: it waits.
        for d in 0..FULL_BATCH as i64 - 1 {
            submit(100 + d);
        }
        settle().await;
        assert_eq!(seen.lock().len(), STEADY_IN_FLIGHT, "no extra call yet");
        submit(999);
        settle().await;
        {
            let seen = seen.lock();
            assert_eq!(seen.len(), STEADY_IN_FLIGHT + 1, "a full batch went");
            assert_eq!(seen[STEADY_IN_FLIGHT].len(), FULL_BATCH);
        }
        // Full batches keep going until MAX_IN_FLIGHT calls are out; then
        // even a full batch waits.
        let mut full_batches = 1;
        for calls in STEADY_IN_FLIGHT + 2..=MAX_IN_FLIGHT + 1 {
            for d in 0..FULL_BATCH as i64 {
                submit(1000 * calls as i64 + d);
            }
            full_batches += 1;
            settle().await;
            assert_eq!(
                seen.lock().len(),
                calls.min(MAX_IN_FLIGHT),
                "at most {MAX_IN_FLIGHT}"
            );
        }
        // A few more wait; when the calls return they are decided.
        for d in 0..3 {
            submit(200 + d);
        }
        settle().await;
        gate.add_permits(1000);
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(
            seen.lock().iter().map(Vec::len).sum::<usize>(),
            STEADY_IN_FLIGHT + full_batches * FULL_BATCH + 3
        );
        assert!(batcher.queues.lock().is_empty());
    }
}
