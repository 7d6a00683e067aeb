//! From a request's descriptors to its chain: the bucket of each level it
//! passes, and what each bucket costs.
//!
//! # Two ways to select buckets
//! A tree's [`Selection`] says how:
//! - **native** trees (TOML): the descriptors are one map ([`Descriptors`]);
//!   the chain holds the bucket of every level whose `by` keys the map gives
//!   ([`Tree::chain`]), root first, each charged the request's one cost.
//! - **envoyproxy/ratelimit domains**: a call carries several descriptors,
//!   each an ordered list of entries with its own cost (Envoy's per-descriptor
//!   `hits_addend`); each matches at most one rule
//!   ([`Domain::match_request`](crate::policy::envoy::Domain::match_request)),
//!   and the chain holds the bucket of every matched counted rule
//!   ([`Tree::chain_for_descriptors`], which also takes native trees, merging
//!   their descriptors into one map).
//!
//! Either way the chain is decided in one atomic store call, all-or-nothing.
//!
//! # Costs
//! Every [`Bucket`] carries its own `cost`: what an admitted commit charges
//! it. Two descriptors that land on the same bucket (the same rule and
//! values) are **merged** into one bucket whose cost is their sum, so a
//! bucket appears at most once in a chain and is charged once, with
//! everything the call takes from it. A bucket of cost 0 (Envoy's
//! `hits_addend: 0`: "checked and reported, not charged") is reported as a
//! peek reports it — what is left now — and never denies the call nor is
//! charged. A whole chain of cost 0 is a [`Mode::Peek`]
//! (which asks whether one more unit fits at every bucket).
//!
//! # Order
//! Buckets are ordered by level index (root first), then by values: the
//! memory store locks them in this order, the same for every request.

use std::collections::{BTreeMap, HashMap};

use arrayvec::ArrayVec;

use crate::decision::Mode;
use crate::inline_vec::InlineVec;
use crate::policy::envoy::{DomainTree, RuleLimit, is_replaced, replaced_names};
use crate::policy::{Level, LimitSpec, MAX_LEVELS, Selection, Shares, Tree};

const _: () = assert!(
    MAX_LEVELS <= 32,
    "chain positions are bits of a u32 (overflow and charge masks, BucketSet)"
);

/// Longest descriptor key or value, in bytes.
pub const MAX_DESCRIPTOR_LEN: usize = 256;

/// Where a request's descriptor values come from.
pub trait Descriptors {
    /// The value given for `key`, if any.
    fn get(&self, key: &str) -> Option<&str>;
}

impl<S: std::hash::BuildHasher> Descriptors for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl Descriptors for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl Descriptors for [(&str, &str)] {
    fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
}

impl<const N: usize> Descriptors for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<&str> {
        Descriptors::get(self.as_slice(), key)
    }
}

/// A bucket's descriptor values, in its level's `by` order (at most
/// [`MAX_BY_KEYS`](crate::policy::MAX_BY_KEYS)). Two live inline: most levels have one or two `by` keys,
/// and a decision moves its chain by value, so every byte of inline room is
/// copied on every request; more spill to the heap.
pub type BucketValues<'a> = InlineVec<&'a str, 2>;

/// A chain's buckets, root first (at most [`MAX_LEVELS`]). Four live inline
/// (deeper trees spill to the heap), for the same reason as [`BucketValues`].
pub type ChainBuckets<'a> = InlineVec<Bucket<'a>, 4>;

/// One bucket of a chain.
#[derive(Debug, Clone)]
pub struct Bucket<'a> {
    /// Position of the level in its tree.
    pub level_index: usize,
    /// The level.
    pub level: &'a Level,
    /// The bucket's descriptor values, in the level's `by` order (empty: global).
    pub values: BucketValues<'a>,
    /// The limit this bucket holds (the level's, or an override's).
    pub spec: &'a LimitSpec,
    /// Whether `spec` comes from an override.
    pub overridden: bool,
    /// Units an admitted commit charges this bucket; 0: reported (as a peek
    /// reports), never charged, never denies (see the module docs).
    pub cost: u64,
}

impl Bucket<'_> {
    /// The limit this bucket holds for a request: its own [`Bucket::spec`],
    /// or, when the request landed in the level's overflow bucket (the memory
    /// store's `max_buckets` cap), the level's own limit, which that shared
    /// bucket holds.
    pub fn spec_in(&self, overflow: bool) -> &LimitSpec {
        if overflow {
            &self.level.spec
        } else {
            self.spec
        }
    }

    /// What a store evaluates this bucket for in `mode`: 1 for a peek
    /// (whether one more unit fits), else its cost (0 always fits).
    pub fn probe(&self, mode: Mode) -> u64 {
        if mode == Mode::Peek { 1 } else { self.cost }
    }

    /// The bucket as people read it: `category=errors`, or `*` for a global level.
    pub fn label(&self) -> String {
        if self.values.is_empty() {
            return "*".to_owned();
        }
        let mut label = String::new();
        for (i, (k, v)) in self.level.by.iter().zip(&self.values).enumerate() {
            if i > 0 {
                label.push(',');
            }
            label.push_str(k);
            label.push('=');
            label.push_str(v);
        }
        label
    }
}

/// A rule the request matched that blocks every request
/// (envoyproxy/ratelimit's `requests_per_unit: 0`): it has no bucket and
/// counts nothing, but denies the chain (see [`BlockedRule::applies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockedRule {
    /// Index of the rule in its domain's rules.
    pub rule_index: usize,
    /// The summed cost of the request's descriptors that matched it.
    pub cost: u64,
    /// The rule is in shadow mode: reported, never denies.
    pub shadow: bool,
}

impl BlockedRule {
    /// Whether the rule has no room for the request in `mode` (as a bucket of
    /// limit 0 would): always for a peek, else when it has a cost — a cost-0
    /// descriptor takes nothing, so it fits.
    pub fn applies(&self, mode: Mode) -> bool {
        mode == Mode::Peek || self.cost > 0
    }
}

/// The buckets a request passes, root first.
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    /// The tree.
    pub tree: &'a Tree,
    /// One bucket per level that applies (optional levels whose descriptors are
    /// missing are skipped), ordered by level index, then values; no bucket twice.
    pub buckets: ChainBuckets<'a>,
    /// Matched rules that block every request (Envoy domains only; empty
    /// otherwise, and then it does not allocate).
    pub blocked: Vec<BlockedRule>,
    /// Where the tree's guaranteed shares meet this chain (trees with
    /// [`Shares`] only), one per split whose parent's bucket the chain has,
    /// root first: each parent's bucket is decided by its parts. Two inline
    /// (every chain carries the room, see [`BucketValues`]); more spill.
    pub shares: InlineVec<ChainShare<'a>, 2>,
}

/// How a chain passes a tree's [`Shares`]: the parent's bucket (when the
/// chain has it: a keyed parent whose descriptor is missing and not required
/// is skipped, and then nothing is shared) stands for its parts — the
/// guarantee of the child's value in that bucket, if it has one, and that
/// bucket's pool. Each bucket of a keyed parent has parts of its own.
#[derive(Debug, Clone, Copy)]
pub struct ChainShare<'a> {
    /// The tree's shares.
    pub shares: &'a Shares,
    /// Position of the parent's bucket in [`Chain::buckets`].
    pub parent: usize,
    /// Position of the child's bucket, when the chain has one.
    pub child: Option<usize>,
    /// The child value's guarantee (index in [`Shares::parts`]); `None`: the
    /// request takes only from the pool.
    pub part: Option<usize>,
}

impl<'a> ChainShare<'a> {
    /// The guarantee's spec, when the request has one.
    pub fn part_spec(&self) -> Option<&'a LimitSpec> {
        self.part.map(|p| &self.shares.parts[p].spec)
    }
}

impl<'a> Chain<'a> {
    /// The chain of one bucket: level `level_index` of `tree` with `values`
    /// (one per `by` key, in order; none for a global level), costing
    /// nothing — what the introspection API peeks at and resets
    /// ([`crate::inspect`]). Values are checked as a request's are.
    pub fn one_bucket(
        tree: &'a Tree,
        level_index: usize,
        values: &[&'a str],
    ) -> Result<Chain<'a>, ChainError> {
        let level = &tree.levels[level_index];
        let mut checked = BucketValues::new();
        for (key, value) in level.by.iter().zip(values) {
            checked.push(check_value(key, value)?);
        }
        let mut buckets = ChainBuckets::new();
        buckets.push(Bucket {
            level_index,
            level,
            spec: level.spec_for(&checked),
            overridden: level.override_for(&checked).is_some(),
            values: checked,
            cost: 0,
        });
        // A shared parent's bucket is its pool (with no guarantee: the
        // bucket stands for no child value), as in a request's chain.
        let shares = tree
            .split_of(level_index)
            .map(|shares| ChainShare {
                shares: shares.for_values(&buckets[0].values),
                parent: 0,
                child: None,
                part: None,
            })
            .into_iter()
            .collect();
        Ok(Chain {
            tree,
            buckets,
            blocked: Vec::new(),
            shares,
        })
    }
}

impl Chain<'_> {
    /// Whether a blocking rule denies the chain in `mode` (nothing is then
    /// charged anywhere).
    pub fn blocked_denies(&self, mode: Mode) -> bool {
        self.blocked.iter().any(|b| !b.shadow && b.applies(mode))
    }

    /// Everything the request takes: the sum of its buckets' and blocked
    /// rules' costs (0: a peek).
    pub fn total_cost(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.cost)
            .chain(self.blocked.iter().map(|b| b.cost))
            .fold(0, u64::saturating_add)
    }
}

/// A set of a chain's bucket positions (bit `i`: `Chain::buckets[i]`, and so
/// `Decision::levels[i]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BucketSet(u32);

impl BucketSet {
    /// The set holding only `i`.
    pub fn one(i: usize) -> BucketSet {
        BucketSet(1 << i)
    }

    /// Adds `i`.
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }

    /// Whether `i` is in the set.
    pub fn contains(self, i: usize) -> bool {
        i < 32 && self.0 & (1 << i) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The positions, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> + Clone {
        (0..32).filter(move |&i| self.contains(i))
    }
}

/// What one request descriptor of a call lands on (see
/// [`Tree::chain_for_descriptors`]); the gRPC layer reports one status per
/// request descriptor from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No limit applies: no rule matched (or `replaces` dropped it), or no
    /// level of a native tree is reported on it. `OK` without a limit.
    NoLimit,
    /// Reported on these buckets of the chain: exactly one for an Envoy
    /// domain (several descriptors may share it: duplicates are merged); for
    /// a native tree, every level reported on this descriptor.
    Buckets(BucketSet),
    /// An `unlimited: true` rule (index in the domain's rules): always `OK`,
    /// never counted.
    UnlimitedRule {
        /// The rule's index.
        rule_index: usize,
    },
    /// A `requests_per_unit: 0` rule (index in the domain's rules): over the
    /// limit (unless in shadow mode), counts nothing; see [`Chain::blocked`].
    Blocked {
        /// The rule's index.
        rule_index: usize,
    },
}

/// Why descriptors do not make a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A required level's descriptor is absent.
    #[error(
        "descriptor `{key}` is required by level `{level}` of tree `{tree}`; add `\"{key}\": \"…\"` to `descriptors`"
    )]
    MissingDescriptor {
        /// The tree.
        tree: String,
        /// The level that needs it.
        level: String,
        /// The missing key.
        key: String,
    },
    /// A descriptor value is empty or too long.
    #[error("descriptor `{key}` {problem}")]
    InvalidDescriptor {
        /// The key (truncated if it was itself too long).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The descriptors match more buckets than one chain holds.
    #[error(
        "the descriptors match more than {MAX_LEVELS} buckets of tree `{tree}`; one call is decided \
         as one chain of at most {MAX_LEVELS} buckets: send fewer descriptors per call"
    )]
    TooManyBuckets {
        /// The tree.
        tree: String,
    },
    /// A native tree's descriptors give one key two values.
    #[error(
        "descriptor key `{key}` is given twice with different values (`{first}`, then `{second}`); \
         tree `{tree}` decides a call as one chain, so each key may have one value"
    )]
    ConflictingValues {
        /// The tree.
        tree: String,
        /// The key (cut to 64 bytes).
        key: String,
        /// The first value (cut).
        first: String,
        /// The other value (cut).
        second: String,
    },
    /// An envoyproxy/ratelimit domain was given one descriptor map.
    #[error(
        "tree `{tree}` is an envoyproxy/ratelimit domain: its rules match ordered descriptor \
         entries, so send the request's descriptors as a list (gRPC `ShouldRateLimit` or `POST /json`)"
    )]
    DescriptorListRequired {
        /// The tree.
        tree: String,
    },
    /// Costs and descriptors do not pair up (a caller's bug).
    #[error("{descriptors} descriptors but {costs} costs; give one cost per descriptor")]
    CostCount {
        /// Descriptors given.
        descriptors: usize,
        /// Costs given.
        costs: usize,
    },
}

fn check_value<'v>(key: &str, value: &'v str) -> Result<&'v str, ChainError> {
    let problem = if value.is_empty() {
        "is empty; give it a value"
    } else if value.len() > MAX_DESCRIPTOR_LEN {
        "is longer than 256 bytes"
    } else {
        return Ok(value);
    };
    Err(ChainError::InvalidDescriptor {
        key: cut(key),
        problem: problem.to_owned(),
    })
}

/// `text`, cut to 64 bytes on a character boundary, for messages.
fn cut(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Tree {
    /// The chain `descriptors` select in this native tree, every bucket
    /// charged `cost` (0: a peek). Descriptors no level uses are ignored
    /// (clients such as Envoy send more than a policy needs). An
    /// envoyproxy/ratelimit domain needs its descriptors as a list:
    /// [`Tree::chain_for_descriptors`].
    #[inline]
    pub fn chain<'a, D: Descriptors + ?Sized>(
        &'a self,
        descriptors: &'a D,
        cost: u64,
    ) -> Result<Chain<'a>, ChainError> {
        if self.envoy().is_some() {
            return Err(ChainError::DescriptorListRequired {
                tree: self.name.clone(),
            });
        }
        self.native_chain(|key| descriptors.get(key), |_, _| cost)
    }

    /// The chain of a call's `descriptors` (each an ordered list of entries)
    /// with `costs` (one per descriptor), and what each descriptor lands on
    /// (one [`Target`] per descriptor, in order).
    ///
    /// - An envoyproxy/ratelimit domain: each descriptor matches at most one
    ///   rule ([`Domain::match_request`](crate::policy::envoy::Domain::match_request),
    ///   `replaces` applied); a counted rule's bucket is charged that
    ///   descriptor's cost, merged with any other descriptor on the same bucket
    ///   (costs summed); unlimited and blocking rules have no bucket.
    /// - A native tree: the entries of every descriptor are merged into one map
    ///   (one key with two values is a [`ChainError::ConflictingValues`]) and
    ///   the chain is [`Tree::chain`]'s. Each level is reported on the first
    ///   descriptor whose entries hold all of its `by` keys (a global level: the
    ///   first descriptor), else the last holding any, and is charged that
    ///   descriptor's cost.
    pub fn chain_for_descriptors<'a, D: AsRef<[(&'a str, &'a str)]>>(
        &'a self,
        descriptors: &'a [D],
        costs: &[u64],
    ) -> Result<(Chain<'a>, Vec<Target>), ChainError> {
        if descriptors.len() != costs.len() {
            return Err(ChainError::CostCount {
                descriptors: descriptors.len(),
                costs: costs.len(),
            });
        }
        match &self.selection {
            Selection::Native => self.native_for_descriptors(descriptors, costs),
            Selection::Envoy(domain) => self.envoy_chain(domain, descriptors, costs),
        }
    }

    /// Every level whose `by` keys `get` gives, root first; `cost` says what
    /// each level's bucket is charged.
    fn native_chain<'a>(
        &'a self,
        get: impl Fn(&str) -> Option<&'a str>,
        mut cost: impl FnMut(usize, &Level) -> u64,
    ) -> Result<Chain<'a>, ChainError> {
        // Built in place: a chain is ~0.5 KB, and moving its parts into it at
        // the end copied them on every request.
        let mut chain = Chain {
            tree: self,
            buckets: ChainBuckets::new(),
            blocked: Vec::new(),
            shares: InlineVec::new(),
        };
        'levels: for (level_index, level) in self.levels.iter().enumerate() {
            let mut values = BucketValues::new();
            for key in &level.by {
                match get(key) {
                    Some(v) => values.push(check_value(key, v)?),
                    None if level.required => {
                        return Err(ChainError::MissingDescriptor {
                            tree: self.name.clone(),
                            level: level.name.clone(),
                            key: key.clone(),
                        });
                    }
                    None => continue 'levels,
                }
            }
            let overridden = level.override_for(&values);
            let bucket = Bucket {
                level_index,
                level,
                spec: overridden.unwrap_or(&level.spec),
                overridden: overridden.is_some(),
                values,
                cost: cost(level_index, level),
            };
            // A native tree has at most MAX_LEVELS levels (the policy checks).
            if chain.buckets.len() == MAX_LEVELS {
                return Err(ChainError::TooManyBuckets {
                    tree: self.name.clone(),
                });
            }
            chain.buckets.push(bucket);
        }
        let buckets = &chain.buckets;
        for shares in &self.shares {
            let Some(parent) = buckets.iter().position(|b| b.level_index == shares.parent) else {
                continue;
            };
            // An overridden parent bucket has its own split.
            let shares = shares.for_values(&buckets[parent].values);
            let child = buckets.iter().position(|b| b.level_index == shares.child);
            let part = child.and_then(|c| shares.part_for(&buckets[c].values));
            chain.shares.push(ChainShare {
                shares,
                parent,
                child,
                part,
            });
        }
        Ok(chain)
    }

    fn native_for_descriptors<'a, D: AsRef<[(&'a str, &'a str)]>>(
        &'a self,
        descriptors: &'a [D],
        costs: &[u64],
    ) -> Result<(Chain<'a>, Vec<Target>), ChainError> {
        let mut merged: Vec<(&'a str, &'a str)> = Vec::new();
        for descriptor in descriptors {
            for &(key, value) in descriptor.as_ref() {
                match merged.iter().find(|(k, _)| *k == key) {
                    Some(&(_, first)) if first != value => {
                        return Err(ChainError::ConflictingValues {
                            tree: self.name.clone(),
                            key: cut(key),
                            first: cut(first),
                            second: cut(value),
                        });
                    }
                    Some(_) => {}
                    None => merged.push((key, value)),
                }
            }
        }
        let mut targets = vec![Target::NoLimit; descriptors.len()];
        let mut owners: ArrayVec<Option<usize>, MAX_LEVELS> = ArrayVec::new();
        let chain = self.native_chain(
            |key| merged.iter().find(|(k, _)| *k == key).map(|&(_, v)| v),
            |_, level| {
                let owner = owner(&level.by, descriptors);
                // At most MAX_LEVELS calls (one per bucket), checked there.
                let _ = owners.try_push(owner);
                owner.and_then(|o| costs.get(o).copied()).unwrap_or(0)
            },
        )?;
        for (i, owner) in owners.iter().enumerate() {
            if let Some(o) = *owner {
                match &mut targets[o] {
                    Target::Buckets(set) => set.insert(i),
                    slot => *slot = Target::Buckets(BucketSet::one(i)),
                }
            }
        }
        Ok((chain, targets))
    }

    fn envoy_chain<'a, D: AsRef<[(&'a str, &'a str)]>>(
        &'a self,
        domain_tree: &'a DomainTree,
        descriptors: &'a [D],
        costs: &[u64],
    ) -> Result<(Chain<'a>, Vec<Target>), ChainError> {
        let domain = &domain_tree.domain;
        let mut matched: Vec<Option<(usize, BucketValues<'a>)>> =
            Vec::with_capacity(descriptors.len());
        for descriptor in descriptors {
            let mut values = BucketValues::new();
            let rule = domain.match_values(descriptor.as_ref(), &mut values);
            matched.push(rule.map(|r| (r, values)));
        }
        let replaced = replaced_names(matched.iter().flatten().map(|(r, _)| &domain.rules[*r]));
        let mut buckets = ChainBuckets::new();
        let mut blocked: Vec<BlockedRule> = Vec::new();
        let mut targets = Vec::with_capacity(descriptors.len());
        for (slot, &cost) in matched.into_iter().zip(costs) {
            let Some((rule_index, values)) = slot else {
                targets.push(Target::NoLimit);
                continue;
            };
            let rule = &domain.rules[rule_index];
            if is_replaced(rule, &replaced) {
                targets.push(Target::NoLimit);
                continue;
            }
            let target = match (&rule.limit, domain_tree.level_of(rule_index)) {
                (RuleLimit::Unlimited, _) => Target::UnlimitedRule { rule_index },
                (RuleLimit::Blocked { .. }, _) => {
                    match blocked.iter_mut().find(|b| b.rule_index == rule_index) {
                        Some(b) => b.cost = b.cost.saturating_add(cost),
                        None => blocked.push(BlockedRule {
                            rule_index,
                            cost,
                            shadow: rule.shadow,
                        }),
                    }
                    Target::Blocked { rule_index }
                }
                (RuleLimit::Limited(_), Some(level_index)) => {
                    for (key, value) in self.levels[level_index].by.iter().zip(&values) {
                        check_value(key, value)?;
                    }
                    let at = merge_bucket(&mut buckets, &self.levels, level_index, values, cost)
                        .ok_or_else(|| ChainError::TooManyBuckets {
                            tree: self.name.clone(),
                        })?;
                    Target::Buckets(BucketSet::one(at))
                }
                // A counted rule always has a level (see `DomainTree`).
                (RuleLimit::Limited(_), None) => Target::NoLimit,
            };
            targets.push(target);
        }
        let chain = Chain {
            tree: self,
            buckets,
            blocked,
            shares: InlineVec::new(),
        };
        Ok(sorted(chain, targets))
    }
}

/// Adds a bucket of `level_index` with `values` and `cost` to `buckets`, or
/// adds `cost` to the bucket already there; returns its position (`None`:
/// the chain is full).
fn merge_bucket<'a>(
    buckets: &mut ChainBuckets<'a>,
    levels: &'a [Level],
    level_index: usize,
    values: BucketValues<'a>,
    cost: u64,
) -> Option<usize> {
    if let Some(at) = buckets
        .iter()
        .position(|b| b.level_index == level_index && b.values == values)
    {
        buckets[at].cost = buckets[at].cost.saturating_add(cost);
        return Some(at);
    }
    if buckets.len() == MAX_LEVELS {
        return None;
    }
    let level = &levels[level_index];
    let overridden = level.override_for(&values);
    buckets.push(Bucket {
        level_index,
        level,
        spec: overridden.unwrap_or(&level.spec),
        overridden: overridden.is_some(),
        values,
        cost,
    });
    Some(buckets.len() - 1)
}

/// `chain` with its buckets in chain order (level index, then values), and
/// `targets` renumbered to match.
fn sorted<'a>(mut chain: Chain<'a>, mut targets: Vec<Target>) -> (Chain<'a>, Vec<Target>) {
    let n = chain.buckets.len();
    let mut order: ArrayVec<usize, MAX_LEVELS> = (0..n).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&chain.buckets[a], &chain.buckets[b]);
        (a.level_index, &a.values[..]).cmp(&(b.level_index, &b.values[..]))
    });
    if order.iter().enumerate().all(|(i, &o)| i == o) {
        return (chain, targets);
    }
    let mut position = [0usize; MAX_LEVELS];
    for (new, &old) in order.iter().enumerate() {
        position[old] = new;
    }
    chain.buckets = order
        .iter()
        .map(|&old| chain.buckets[old].clone())
        .collect();
    for target in &mut targets {
        if let Target::Buckets(set) = target {
            let mut renumbered = BucketSet::default();
            for old in set.iter() {
                renumbered.insert(position[old]);
            }
            *set = renumbered;
        }
    }
    (chain, targets)
}

/// The descriptor a native level with `by` keys is reported on: the first
/// holding all of them, else the last holding any.
fn owner<'a, D: AsRef<[(&'a str, &'a str)]>>(by: &[String], descriptors: &[D]) -> Option<usize> {
    let has = |d: &D, key: &String| d.as_ref().iter().any(|(k, _)| k == key);
    descriptors
        .iter()
        .position(|d| by.iter().all(|b| has(d, b)))
        .or_else(|| {
            descriptors
                .iter()
                .rposition(|d| by.iter().any(|b| has(d, b)))
        })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::policy::Policy;
    use crate::policy::envoy::EnvoyConfig;

    const EDGE: &str = r#"
domain: edge
descriptors:
  - key: remote_address
    rate_limit:
      unit: second
      requests_per_unit: 10
  - key: path
    value: /login
    rate_limit:
      unit: minute
      requests_per_unit: 5
    descriptors:
      - key: user
        rate_limit:
          unit: minute
          requests_per_unit: 2
  - key: blocked
    rate_limit:
      unit: second
      requests_per_unit: 0
  - key: free
    rate_limit:
      unlimited: true
  - key: tier
    rate_limit:
      name: general
      unit: second
      requests_per_unit: 100
  - key: vip
    rate_limit:
      name: vip
      unit: second
      requests_per_unit: 1000
      replaces:
        - name: general
"#;

    fn edge() -> Policy {
        let domain = EnvoyConfig::from_yaml_str(EDGE, "edge.yaml").unwrap();
        Policy::from_envoy_domains(vec![domain]).unwrap()
    }

    fn b(i: usize) -> Target {
        Target::Buckets(BucketSet::one(i))
    }

    /// (level, bucket label, cost) per bucket of a chain.
    fn shape(chain: &Chain<'_>) -> Vec<(String, String, u64)> {
        chain
            .buckets
            .iter()
            .map(|b| (b.level.name.clone(), b.label(), b.cost))
            .collect()
    }

    fn owned(buckets: &[(&str, &str, u64)]) -> Vec<(String, String, u64)> {
        buckets
            .iter()
            .map(|(l, b, c)| ((*l).to_owned(), (*b).to_owned(), *c))
            .collect()
    }

    #[rstest]
    #[case::one_descriptor(
        vec![vec![("remote_address", "1.2.3.4")]], vec![2],
        vec![("remote_address", "remote_address=1.2.3.4", 2)], vec![b(0)]
    )]
    #[case::ordered_by_level_not_by_request(
        vec![vec![("path", "/login"), ("user", "ann")], vec![("remote_address", "a")]], vec![1, 3],
        vec![("remote_address", "remote_address=a", 3), ("path=/login.user", "path=/login,user=ann", 1)],
        vec![b(1), b(0)]
    )]
    #[case::duplicates_merge_and_sum_their_costs(
        vec![vec![("remote_address", "a")], vec![("remote_address", "a")]], vec![2, 3],
        vec![("remote_address", "remote_address=a", 5)], vec![b(0), b(0)]
    )]
    #[case::one_rule_two_values_two_buckets_by_value(
        vec![vec![("remote_address", "b")], vec![("remote_address", "a")]], vec![1, 0],
        vec![("remote_address", "remote_address=a", 0), ("remote_address", "remote_address=b", 1)],
        vec![b(1), b(0)]
    )]
    #[case::a_rule_on_the_way_is_reached_by_a_shorter_descriptor(
        vec![vec![("path", "/login")]], vec![1],
        vec![("path=/login", "path=/login", 1)], vec![b(0)]
    )]
    #[case::no_rule_no_limit(
        vec![vec![("nothing", "x")], vec![("path", "/other")]], vec![1, 1],
        vec![], vec![Target::NoLimit, Target::NoLimit]
    )]
    #[case::unlimited_and_blocked_rules_have_no_bucket(
        vec![vec![("free", "1")], vec![("blocked", "1")]], vec![1, 4],
        vec![], vec![Target::UnlimitedRule { rule_index: 4 }, Target::Blocked { rule_index: 3 }]
    )]
    #[case::replaced_rules_are_dropped(
        vec![vec![("tier", "gold")], vec![("vip", "yes")]], vec![1, 1],
        vec![("vip", "vip=yes", 1)], vec![Target::NoLimit, b(0)]
    )]
    fn envoy_chains(
        #[case] descriptors: Vec<Vec<(&str, &str)>>,
        #[case] costs: Vec<u64>,
        #[case] buckets: Vec<(&str, &str, u64)>,
        #[case] targets: Vec<Target>,
    ) {
        let policy = edge();
        let tree = &policy.trees()[0];
        let (chain, got) = tree.chain_for_descriptors(&descriptors, &costs).unwrap();
        assert_eq!(shape(&chain), owned(&buckets));
        assert_eq!(got, targets);
    }

    #[test]
    fn blocked_rules_are_merged_and_deny_unless_free() {
        let policy = edge();
        let descriptors = [vec![("blocked", "1")], vec![("blocked", "2")]];
        let (chain, _) = policy.trees()[0]
            .chain_for_descriptors(&descriptors, &[0, 3])
            .unwrap();
        assert_eq!(
            chain.blocked,
            [BlockedRule {
                rule_index: 3,
                cost: 3,
                shadow: false
            }]
        );
        assert!(chain.blocked_denies(Mode::Commit));
        let (free, _) = policy.trees()[0]
            .chain_for_descriptors(&descriptors[..1], &[0])
            .unwrap();
        assert!(!free.blocked_denies(Mode::DryRun));
        assert!(free.blocked_denies(Mode::Peek));
    }

    #[test]
    fn more_buckets_than_a_chain_holds_is_an_error() {
        let policy = edge();
        let values: Vec<String> = (0..=MAX_LEVELS).map(|i| format!("10.0.0.{i}")).collect();
        let descriptors: Vec<Vec<(&str, &str)>> = values
            .iter()
            .map(|v| vec![("remote_address", v.as_str())])
            .collect();
        let costs = vec![1; descriptors.len()];
        let err = policy.trees()[0]
            .chain_for_descriptors(&descriptors, &costs)
            .unwrap_err();
        assert_eq!(
            err,
            ChainError::TooManyBuckets {
                tree: "edge".into()
            }
        );
    }

    #[test]
    fn an_envoy_tree_needs_a_descriptor_list() {
        let policy = edge();
        let err = policy.trees()[0]
            .chain(&[("remote_address", "a")], 1)
            .unwrap_err();
        assert!(matches!(err, ChainError::DescriptorListRequired { .. }));
    }

    #[test]
    fn costs_must_pair_with_descriptors() {
        let policy = edge();
        let descriptors = [vec![("remote_address", "a")]];
        let err = policy.trees()[0]
            .chain_for_descriptors(&descriptors, &[1, 2])
            .unwrap_err();
        assert_eq!(
            err,
            ChainError::CostCount {
                descriptors: 1,
                costs: 2
            }
        );
    }

    /// Native trees: one merged map; each level charged the cost of the
    /// descriptor it is reported on.
    #[rstest]
    #[case::each_level_on_its_descriptor(
        vec![vec![("user", "ann")], vec![("category", "errors")]], vec![2, 5],
        vec![2, 5], vec![b(0), b(1)]
    )]
    #[case::both_on_one_descriptor(
        vec![vec![("category", "errors")], vec![("user", "ann")]], vec![3, 1],
        vec![3, 3], vec![Target::Buckets(BucketSet(0b11)), Target::NoLimit]
    )]
    #[case::the_same_value_twice_is_fine(
        vec![vec![("category", "errors")], vec![("category", "errors")]], vec![1, 4],
        vec![1, 1], vec![Target::Buckets(BucketSet(0b11)), Target::NoLimit]
    )]
    fn native_chains(
        #[case] descriptors: Vec<Vec<(&str, &str)>>,
        #[case] costs: Vec<u64>,
        #[case] bucket_costs: Vec<u64>,
        #[case] targets: Vec<Target>,
    ) {
        let policy = Policy::default_notifications();
        let (chain, got) = policy.trees()[0]
            .chain_for_descriptors(&descriptors, &costs)
            .unwrap();
        let costs: Vec<u64> = chain.buckets.iter().map(|b| b.cost).collect();
        assert_eq!(costs, bucket_costs);
        assert_eq!(got, targets);
    }

    #[test]
    fn a_native_key_with_two_values_is_an_error_quoting_them_cut() {
        let policy = Policy::default_notifications();
        let long = "x".repeat(1 << 16);
        let descriptors = [vec![("category", "a")], vec![("category", long.as_str())]];
        let err = policy.trees()[0]
            .chain_for_descriptors(&descriptors, &[1, 1])
            .unwrap_err();
        assert!(matches!(err, ChainError::ConflictingValues { .. }));
        assert!(err.to_string().len() < 400, "{err}");
    }
}
