//! The Slack relay: `POST /v1/notify` → the limiter → an outbox → a paced
//! worker per webhook → Slack.
//!
//! A notification's path through the modules:
//! - [`route`]: its category picks a [`route::Webhook`] (URLs expanded from the
//!   environment and never shown);
//! - [`Relay::submit`]: a place is reserved in the webhook's [`queue`], the
//!   limiter decides (`{"category": C}`, cost 1), and an admitted notification
//!   is written to the [`outbox`] before the 202; a limited one is
//!   *suppressed*: answered 429 and tallied for a [`digest`];
//! - [`deliver`]: the webhook's worker sends it, paced, retrying 429s and
//!   transient failures, dead-lettering what Slack refuses, and marks it done.
//!
//! Every worker and the digest loop run in the server's `TaskTracker`; after the
//! shutdown signal they keep delivering for `[notify] drain`, and whatever is
//! left stays in the outbox and is sent on the next start.
//!
//! # Layout
//!
//! - [`relay`]: the [`Relay`] handle, the state submit, start-up and the
//!   digest loop share, and where the outbox lives ([`OutboxSource`]).
//! - [`submit`]: [`Relay::submit`] — one notification from route to queue;
//!   [`Submission`], [`Submitted`], [`NotifyError`].
//! - [`start`]: [`Relay::start`], the one start path — opens the outbox,
//!   resends what it holds, starts every task; [`StartError`].
//! - [`deliver`]: a webhook's worker (a narrow handle built at start), its
//!   pacing on [`limitree::algo::gcra`], Slack's answers, retries.
//! - [`metrics`]: the counters, their plain-value [`metrics::Snapshot`], and
//!   its Prometheus text.
//! - [`digest`]: the tallies of suppressed notifications (bookkeeping only);
//!   [`digest_loop`]: the loop that charges and queues due digests.
//! - [`tally`]: a tally as the digests keep it and the outbox saves it.
//! - [`outbox`]: the durable record (the [`outbox::Outbox`] trait, the
//!   data-dir journal); [`redis_outbox`] (feature `redis`): the Redis stream.
//! - [`route`]: category → webhook; [`queue`]: a bounded queue per webhook.
//! - [`config`]: the `[notify]` section.
//!
//! Dependencies run one way: [`tally`] ← [`outbox`] ← [`queue`]; the
//! workers ([`deliver`]) see only those, [`route`], [`metrics`] and
//! [`digest`]; [`relay`] gathers the state; [`submit`], [`start`] and
//! [`digest_loop`] act on it.

pub mod config;
pub mod deliver;
pub mod digest;
pub mod digest_loop;
pub mod metrics;
pub mod outbox;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis_outbox;
pub mod relay;
pub mod route;
pub mod start;
pub mod submit;
pub mod tally;

pub use self::relay::{OutboxSource, Relay};
pub use self::start::StartError;
pub use self::submit::{NotifyError, Submission, Submitted};
