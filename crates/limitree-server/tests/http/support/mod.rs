//! What the test modules share, one thing in one place (see the list in
//! `main.rs`).

pub mod policy;
pub mod poll;
pub mod served;
pub mod server;
pub mod slack;
