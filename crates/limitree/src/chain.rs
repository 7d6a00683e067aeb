//! From a request's descriptors to its chain: the bucket of each level it passes.

use std::collections::{BTreeMap, HashMap};

use arrayvec::ArrayVec;

use crate::policy::{Level, LimitSpec, MAX_BY_KEYS, MAX_LEVELS, Tree};

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

/// One bucket of a chain.
#[derive(Debug, Clone)]
pub struct Bucket<'a> {
    /// Position of the level in its tree.
    pub level_index: usize,
    /// The level.
    pub level: &'a Level,
    /// The bucket's descriptor values, in the level's `by` order (empty: global).
    pub values: ArrayVec<&'a str, MAX_BY_KEYS>,
    /// The limit this bucket holds (the level's, or an override's).
    pub spec: &'a LimitSpec,
    /// Whether `spec` comes from an override.
    pub overridden: bool,
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

/// The buckets a request passes, root first.
#[derive(Debug, Clone)]
pub struct Chain<'a> {
    /// The tree.
    pub tree: &'a Tree,
    /// One bucket per level that applies (optional levels whose descriptors are
    /// missing are skipped).
    pub buckets: ArrayVec<Bucket<'a>, MAX_LEVELS>,
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
        key: key.to_owned(),
        problem: problem.to_owned(),
    })
}

impl Tree {
    /// The chain `descriptors` select in this tree. Descriptors no level uses are
    /// ignored (clients such as Envoy send more than a policy needs).
    #[inline]
    pub fn chain<'a, D: Descriptors + ?Sized>(
        &'a self,
        descriptors: &'a D,
    ) -> Result<Chain<'a>, ChainError> {
        let mut buckets = ArrayVec::new();
        'levels: for (level_index, level) in self.levels.iter().enumerate() {
            let mut values = ArrayVec::new();
            for key in &level.by {
                match descriptors.get(key) {
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
            buckets.push(Bucket {
                level_index,
                level,
                spec: overridden.unwrap_or(&level.spec),
                overridden: overridden.is_some(),
                values,
            });
        }
        Ok(Chain {
            tree: self,
            buckets,
        })
    }
}
