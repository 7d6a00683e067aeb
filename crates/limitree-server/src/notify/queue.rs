//! A bounded queue per webhook. The outbox is the durable record; this is only
//! the order of work for the webhook's worker, so it holds what is pending for
//! one webhook and nothing else.
//!
//! A request *reserves* a place before it is decided and persisted, so a full
//! queue is refused (503) before the limiter charges anything, and a reserved
//! place cannot be taken by another request while the outbox writes.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::outbox::Notification;

/// One webhook's pending notifications, oldest first.
#[derive(Debug)]
pub struct Queue {
    capacity: usize,
    state: Mutex<State>,
    /// Wakes the webhook's (single) worker; `notify_one` keeps a permit when
    /// the worker is busy, so no push is missed.
    wake: Notify,
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<Notification>,
    reserved: usize,
}

/// A reserved place in a [`Queue`]; released on drop unless filled.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<Queue>,
    filled: bool,
}

impl Queue {
    /// An empty queue holding at most `capacity`.
    pub fn new(capacity: usize) -> Queue {
        Queue {
            capacity,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    /// The most it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Reserves a place, or `None` when the queue (with its reservations) is full.
    pub fn reserve(self: &Arc<Self>) -> Option<Slot> {
        let mut state = self.state.lock();
        if state.items.len() + state.reserved >= self.capacity {
            return None;
        }
        state.reserved += 1;
        Some(Slot {
            queue: Arc::clone(self),
            filled: false,
        })
    }

    /// Adds a notification read back from the outbox at start, past the
    /// capacity if need be: it was accepted, so it must be sent.
    pub fn restore(&self, n: Notification) {
        self.state.lock().items.push_back(n);
        self.wake.notify_one();
    }

    /// Notifications waiting (not counting reservations).
    pub fn len(&self) -> usize {
        self.state.lock().items.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest notification, left in place until [`Queue::pop`] (it is not
    /// finished until delivered or dead-lettered).
    pub fn front(&self) -> Option<Notification> {
        self.state.lock().items.front().cloned()
    }

    /// Waits for a notification and returns the oldest.
    pub async fn next(&self) -> Notification {
        loop {
            if let Some(n) = self.front() {
                return n;
            }
            self.wake.notified().await;
        }
    }

    /// Removes the oldest notification (the one just finished).
    pub fn pop(&self) {
        self.state.lock().items.pop_front();
    }
}

impl Slot {
    /// Puts `n` in the reserved place and wakes the worker.
    pub fn fill(mut self, n: Notification) {
        {
            let mut state = self.queue.state.lock();
            state.reserved -= 1;
            state.items.push_back(n);
        }
        self.filled = true;
        self.queue.wake.notify_one();
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.filled {
            self.queue.state.lock().reserved -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::Kind;

    fn note(id: &str) -> Notification {
        Notification {
            id: id.to_owned(),
            kind: Kind::Message,
            tree: "t".to_owned(),
            category: "c".to_owned(),
            payload: serde_json::json!({"text": id}),
            request_id: None,
            accepted_at: 0,
        }
    }

    #[test]
    fn reservations_count_against_capacity_until_dropped() {
        let queue = Arc::new(Queue::new(2));
        let a = queue.reserve().unwrap();
        let b = queue.reserve().unwrap();
        assert!(queue.reserve().is_none());
        drop(b);
        a.fill(note("a"));
        let c = queue.reserve().unwrap();
        assert!(queue.reserve().is_none());
        drop(c);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.front().unwrap().id, "a");
        queue.pop();
        assert!(queue.is_empty());
    }
}
