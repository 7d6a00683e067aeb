//! A bucket's descriptor values as a hash key, and an index of value lists
//! (a level's overrides, a split's guarantees and per-bucket splits) for
//! finding a request's values among them without comparing them one by one.

use std::hash::{Hash, Hasher};

use hashbrown::{Equivalent, HashMap};

/// Owned descriptor values, in `by` order: a memory-store bucket's identity,
/// an index's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ValuesKey(pub(crate) Box<[Box<str>]>);

/// Borrowed descriptor values, for lookups without allocating: hashes
/// exactly as [`ValuesKey`] does ([`hash_values`]).
pub(crate) struct ValuesRef<'a>(pub(crate) &'a [&'a str]);

/// A key's hash: each value as `str` hashes (its bytes, then a terminator
/// byte, so `["ab", "c"]` and `["a", "bc"]` differ), without the slice's
/// length prefix — every key of one map has as many values as its level has
/// `by` keys, so the prefix told them nothing and cost a hasher call per
/// lookup. hashbrown's default hasher is seeded, so descriptor values chosen
/// to collide cannot be computed in advance.
fn hash_values<'v, H: Hasher>(values: impl Iterator<Item = &'v str>, state: &mut H) {
    for value in values {
        value.hash(state);
    }
}

impl Hash for ValuesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_values(self.0.iter().map(|v| &**v), state);
    }
}

impl Hash for ValuesRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_values(self.0.iter().copied(), state);
    }
}

impl Equivalent<ValuesKey> for ValuesRef<'_> {
    fn equivalent(&self, key: &ValuesKey) -> bool {
        self.0.len() == key.0.len() && self.0.iter().zip(key.0.iter()).all(|(a, b)| *a == &**b)
    }
}

impl ValuesRef<'_> {
    pub(crate) fn to_owned_key(&self) -> ValuesKey {
        ValuesKey(self.0.iter().map(|v| Box::<str>::from(*v)).collect())
    }
}

/// Lists up to this long are searched in order: cheaper than hashing.
const LINEAR: usize = 8;

/// Where each of a list of value tuples stands (the first, if one repeats),
/// built once when a policy is loaded: a request's values are looked up among
/// a level's overrides and a split's guarantees on every decision, and a
/// scan compared them with each in turn (a level with a thousand per-customer
/// overrides compared a thousand strings per request). Short lists keep the
/// scan ([`LINEAR`]).
///
/// It is derived from the list it was built from, so two indexes of equal
/// lists are equal: `PartialEq` holds for every pair, and `Debug` shows
/// nothing (the list is shown where it lives).
#[derive(Clone, Default)]
pub(crate) struct ValuesIndex(Option<HashMap<ValuesKey, usize>>);

impl ValuesIndex {
    /// The index of `lists`, in order.
    pub(crate) fn new<'l>(lists: impl ExactSizeIterator<Item = &'l [String]>) -> Self {
        if lists.len() <= LINEAR {
            return ValuesIndex(None);
        }
        let mut map = HashMap::with_capacity(lists.len());
        for (i, list) in lists.enumerate() {
            let key = ValuesKey(list.iter().map(|v| Box::<str>::from(v.as_str())).collect());
            map.entry(key).or_insert(i);
        }
        ValuesIndex(Some(map))
    }

    /// The position of `values` among `lists` (the same lists, in the same
    /// order, the index was built from).
    #[inline]
    pub(crate) fn find<'l>(
        &self,
        values: &[&str],
        mut lists: impl Iterator<Item = &'l [String]>,
    ) -> Option<usize> {
        match &self.0 {
            Some(map) => map.get(&ValuesRef(values)).copied(),
            None => lists.position(|l| l.iter().map(String::as_str).eq(values.iter().copied())),
        }
    }
}

impl PartialEq for ValuesIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ValuesIndex {}

impl std::fmt::Debug for ValuesIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValuesIndex")
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn a_borrowed_key_hashes_like_the_owned_one() {
        let s = hashbrown::DefaultHashBuilder::default();
        let values = ["errors", "team-a"];
        let owned = ValuesRef(&values).to_owned_key();
        assert_eq!(s.hash_one(ValuesRef(&values)), s.hash_one(&owned));
    }

    /// Short and long lists give the scan's answer: the first position, or none.
    #[test]
    fn finds_what_a_scan_finds() {
        for n in [3usize, 40] {
            let lists: Vec<Vec<String>> = (0..n)
                .map(|i| vec![format!("t{}", i % (n - 1)), format!("c{i}")])
                .chain([vec!["t0".to_owned(), "c0".to_owned()]])
                .collect();
            let index = ValuesIndex::new(lists.iter().map(Vec::as_slice));
            assert_eq!(index.0.is_some(), n > LINEAR);
            let find = |v: &[&str]| index.find(v, lists.iter().map(Vec::as_slice));
            assert_eq!(find(&["t0", "c0"]), Some(0), "the first of two equal lists");
            assert_eq!(find(&["t1", "c1"]), Some(1));
            assert_eq!(find(&["t1", "c2"]), None);
            assert_eq!(find(&["t1"]), None);
        }
    }
}
