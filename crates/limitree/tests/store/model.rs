//! A reference model: the simplest statement of each algorithm, computed from the
//! full log of admissions instead of from compact state. The stores must agree
//! with it decision for decision.

use std::collections::HashMap;

use limitree::{Algorithm, LimitSpec, Micros, Mode, Policy};

/// Per level: bucket label → admissions (time, units).
#[derive(Debug, Default)]
pub struct Model {
    logs: Vec<HashMap<String, Vec<(Micros, u64)>>>,
}

/// The model's answer for one level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLevel {
    pub allowed: bool,
    pub remaining: u64,
}

/// Units a bucket could take at `now`, from its admissions.
pub fn available(spec: &LimitSpec, log: &[(Micros, u64)], now: Micros) -> u64 {
    let (limit, w) = (spec.limit, spec.window);
    let sum = |keep: &dyn Fn(Micros) -> bool| -> u64 {
        log.iter().filter(|(t, _)| keep(*t)).map(|(_, c)| c).sum()
    };
    match spec.algorithm {
        Algorithm::SlidingLog => limit.saturating_sub(sum(&|t| t + w > now)),
        Algorithm::FixedWindow => limit.saturating_sub(sum(&|t| t / w == now / w)),
        Algorithm::SlidingWindow => {
            let k = now / w;
            let curr = u128::from(sum(&|t| t / w == k));
            let prev = u128::from(sum(&|t| t / w + 1 == k));
            let e = u128::from(now - k * w);
            let w = u128::from(w);
            let room = (u128::from(limit) * w).checked_sub(prev * (w - e) + curr * w);
            room.map_or(0, |r| (r / w) as u64)
        }
        Algorithm::Gcra => {
            // A token bucket holding credit in microseconds of "drip".
            let t = spec.emission_interval();
            let full = spec.burst * t;
            let mut credit = full;
            let mut last = 0;
            for &(at, c) in log {
                credit = (credit + (at - last)).min(full) - c * t;
                last = at;
            }
            let credit = if log.is_empty() {
                full
            } else {
                (credit + (now - last)).min(full)
            };
            credit / t
        }
    }
}

impl Model {
    pub fn new(levels: usize) -> Model {
        Model {
            logs: vec![HashMap::new(); levels],
        }
    }

    /// Decides a chain: `buckets` holds (level index, bucket label, spec,
    /// shadow), `costs` each bucket's own cost. A bucket of cost 0 (outside a
    /// peek) always fits, is reported as it stands and is never charged.
    pub fn decide(
        &mut self,
        buckets: &[(usize, String, LimitSpec, bool)],
        costs: &[u64],
        now: Micros,
        mode: Mode,
    ) -> (bool, Vec<ModelLevel>) {
        let probes: Vec<u64> = costs
            .iter()
            .map(|&c| if mode == Mode::Peek { 1 } else { c })
            .collect();
        let avail: Vec<u64> = buckets
            .iter()
            .map(|(level, bucket, spec, _)| {
                let log = self.logs[*level].get(bucket).map_or(&[][..], Vec::as_slice);
                available(spec, log, now)
            })
            .collect();
        let fits: Vec<bool> = buckets
            .iter()
            .zip(avail.iter().zip(&probes))
            .map(|((_, _, spec, _), (a, p))| *p <= spec.capacity() && p <= a)
            .collect();
        let allowed = buckets
            .iter()
            .zip(&fits)
            .all(|((_, _, _, shadow), f)| *shadow || *f);
        let levels = buckets
            .iter()
            .zip(avail.iter().zip(&fits))
            .zip(costs)
            .map(|(((level, bucket, _, _), (a, f)), &cost)| {
                let charged = allowed && *f && mode != Mode::Peek && cost > 0;
                if charged && mode == Mode::Commit {
                    self.logs[*level]
                        .entry(bucket.clone())
                        .or_default()
                        .push((now, cost));
                }
                ModelLevel {
                    allowed: *f,
                    remaining: if charged { a - cost } else { *a },
                }
            })
            .collect();
        (allowed, levels)
    }
}

/// The model's buckets for a chain of `policy`'s first tree.
pub fn buckets(
    policy: &Policy,
    descriptors: &[(&str, &str)],
) -> Vec<(usize, String, LimitSpec, bool)> {
    let chain = policy.trees()[0]
        .chain(descriptors, 1)
        .expect("valid chain");
    chain
        .buckets
        .iter()
        .map(|l| (l.level_index, l.label(), *l.spec, l.level.shadow))
        .collect()
}
