//! HTTP integration tests: real servers on `127.0.0.1:0`, real sockets.
//!
//! One test binary (fewer link steps on a small machine) with a module per area.

mod check;
mod cli;
mod errors;
mod health;
mod notify;
mod notify_restart;
mod shutdown;
mod support;
