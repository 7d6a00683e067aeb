//! The backend-conformance suite on a standalone Redis and a 3-primary cluster.
//! Needs `conformance.rs` (the suite) in this binary: see `main.rs`.

use std::sync::Arc;

use limitree::{ManualClock, Policy, Store};

use crate::conformance::Harness;
use crate::support::redis::{Topology, store};

pub struct Standalone;
pub struct Cluster;

impl Harness for Standalone {
    fn store(&self, _policy: &Arc<Policy>, clock: ManualClock) -> Arc<dyn Store> {
        Arc::new(store(Topology::Standalone, clock))
    }
}

impl Harness for Cluster {
    fn store(&self, _policy: &Arc<Policy>, clock: ManualClock) -> Arc<dyn Store> {
        Arc::new(store(Topology::Cluster, clock))
    }
}

mod standalone {
    crate::conformance_suite!(super::Standalone);
}

mod cluster {
    crate::conformance_suite!(super::Cluster);
}
