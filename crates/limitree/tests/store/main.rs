//! Store tests, one binary: the backend-conformance suite stamped out per store,
//! memory-store specifics, property tests against a reference model, and a
//! multi-threaded exactness test.

mod conformance;
mod memory;
mod model;
mod properties;
mod threads;
