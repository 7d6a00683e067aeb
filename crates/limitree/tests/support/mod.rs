//! Helpers shared by integration tests. Each test binary includes this with
//! `#[path = "../support/mod.rs"] mod support;`.

#![allow(dead_code)]

#[cfg(feature = "redis")]
pub mod redis;
