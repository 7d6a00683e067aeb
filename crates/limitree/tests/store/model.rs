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

/// Fair sharing in a chain (one per shared parent): the parent's position, the request's guarantee
/// (its label and spec) and the pool's spec. The parent's bucket has no log
/// of its own: its parts do, under the parent's level as
/// `g:<parent bucket>:<value>` and `pool:<parent bucket>` (each bucket of a
/// keyed parent has its own parts).
#[derive(Debug, Clone)]
pub struct ModelShare {
    pub parent: usize,
    pub guarantee: Option<(String, LimitSpec)>,
    pub pool: LimitSpec,
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
    ///
    /// With `shares` (one per shared parent of the chain), each such parent
    /// is its parts: it fits iff the cost is within guarantee plus pool
    /// capacity and what they hold now; a charge takes from the guarantee
    /// first, the rest from the pool.
    pub fn decide(
        &mut self,
        buckets: &[(usize, String, LimitSpec, bool)],
        shares: &[ModelShare],
        costs: &[u64],
        now: Micros,
        mode: Mode,
    ) -> (bool, Vec<ModelLevel>) {
        let probes: Vec<u64> = costs
            .iter()
            .map(|&c| if mode == Mode::Peek { 1 } else { c })
            .collect();
        let part = |model: &Model, level: usize, label: &str, spec: &LimitSpec| {
            let log = model.logs[level].get(label).map_or(&[][..], Vec::as_slice);
            available(spec, log, now)
        };
        let part_label = |sh: &ModelShare, guarantee: Option<&str>| {
            let parent = &buckets[sh.parent].1;
            match guarantee {
                Some(label) => format!("g:{parent}:{label}"),
                None => format!("pool:{parent}"),
            }
        };
        let share_at = |i: usize| shares.iter().find(|sh| sh.parent == i);
        // Per bucket: a shared parent's (guarantee available, pool
        // available, capacity).
        let shared: Vec<Option<(u64, u64, u64)>> = (0..buckets.len())
            .map(|i| {
                let sh = share_at(i)?;
                let level = buckets[sh.parent].0;
                let (ga, gcap) = sh.guarantee.as_ref().map_or((0, 0), |(label, spec)| {
                    (
                        part(self, level, &part_label(sh, Some(label)), spec),
                        spec.capacity(),
                    )
                });
                Some((
                    ga,
                    part(self, level, &part_label(sh, None), &sh.pool),
                    gcap + sh.pool.capacity(),
                ))
            })
            .collect();
        let avail: Vec<u64> = buckets
            .iter()
            .enumerate()
            .map(|(i, (level, bucket, spec, _))| match shared[i] {
                Some((ga, pa, _)) => ga + pa,
                None => part(self, *level, bucket, spec),
            })
            .collect();
        let fits: Vec<bool> = buckets
            .iter()
            .enumerate()
            .zip(avail.iter().zip(&probes))
            .map(|((i, (_, _, spec, _)), (a, p))| {
                let capacity = match shared[i] {
                    Some((_, _, cap)) => cap,
                    None => spec.capacity(),
                };
                *p <= capacity && p <= a
            })
            .collect();
        let allowed = buckets
            .iter()
            .zip(&fits)
            .all(|((_, _, _, shadow), f)| *shadow || *f);
        let levels = buckets
            .iter()
            .zip(avail.iter().zip(&fits))
            .zip(costs)
            .enumerate()
            .map(|(i, (((level, bucket, _, _), (a, f)), &cost))| {
                let charged = allowed && *f && mode != Mode::Peek && cost > 0;
                if charged && mode == Mode::Commit {
                    match (share_at(i), shared[i]) {
                        (Some(sh), Some((ga, _, _))) => {
                            let from_g = cost.min(ga);
                            if let Some((label, _)) = sh.guarantee.as_ref().filter(|_| from_g > 0) {
                                self.logs[*level]
                                    .entry(part_label(sh, Some(label)))
                                    .or_default()
                                    .push((now, from_g));
                            }
                            if cost > from_g {
                                self.logs[*level]
                                    .entry(part_label(sh, None))
                                    .or_default()
                                    .push((now, cost - from_g));
                            }
                        }
                        _ => self.logs[*level]
                            .entry(bucket.clone())
                            .or_default()
                            .push((now, cost)),
                    }
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

/// The model's view of a chain's fair sharing: one per shared parent the
/// chain passes (a level between two splits is a child of one and the
/// parent of the other).
pub fn shares(policy: &Policy, descriptors: &[(&str, &str)]) -> Vec<ModelShare> {
    let chain = policy.trees()[0]
        .chain(descriptors, 1)
        .expect("valid chain");
    chain
        .shares
        .iter()
        .map(|at| ModelShare {
            parent: at.parent,
            guarantee: at.part.map(|p| {
                let part = &at.shares.parts[p];
                (part.values.join(","), part.spec)
            }),
            pool: at.shares.pool,
        })
        .collect()
}
