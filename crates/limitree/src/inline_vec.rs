//! A vector that keeps up to `N` elements inline and spills to the heap past
//! that: a chain's buckets and each bucket's values.
//!
//! A decision moves its chain and its outcome by value several times, and a
//! move copies the inline room whole, used or not: an `ArrayVec` sized for the
//! deepest tree (8 levels of 8 `by` keys) made each request copy about 2.4 KB.
//! Inline room for the common depths, with the heap for the rare deep chain,
//! copies a fraction of that and allocates nothing for ordinary trees.
//!
//! Not `smallvec` 1.x: its storage is named through an associated type
//! (`A::Item`), which makes a `SmallVec` of borrowed items invariant in their
//! lifetime, and a `Chain<'a>` must shrink to a shorter borrow when it is
//! passed to a store.

use std::ops::{Deref, DerefMut};

use arrayvec::ArrayVec;

/// Up to `N` elements inline, any number on the heap.
#[derive(Clone)]
pub enum InlineVec<T, const N: usize> {
    /// At most `N` elements, in place.
    Inline(ArrayVec<T, N>),
    /// More than fit in place.
    Heap(Vec<T>),
}

impl<T, const N: usize> InlineVec<T, N> {
    /// An empty vector (inline, allocates nothing).
    pub const fn new() -> Self {
        InlineVec::Inline(ArrayVec::new_const())
    }

    /// Appends `value`, moving everything to the heap when the inline room is full.
    #[inline]
    pub fn push(&mut self, value: T) {
        match self {
            InlineVec::Inline(inline) if !inline.is_full() => {
                // Just checked: cannot fail.
                let _ = inline.try_push(value);
            }
            InlineVec::Inline(_) => self.spill(value),
            InlineVec::Heap(heap) => heap.push(value),
        }
    }

    /// Moves the full inline room to the heap, then appends `value`.
    #[cold]
    fn spill(&mut self, value: T) {
        if let InlineVec::Inline(inline) = self {
            let mut heap = Vec::with_capacity(N * 2);
            heap.extend(inline.drain(..));
            heap.push(value);
            *self = InlineVec::Heap(heap);
        }
    }

    /// Removes every element (keeping the heap buffer, if any).
    pub fn clear(&mut self) {
        match self {
            InlineVec::Inline(inline) => inline.clear(),
            InlineVec::Heap(heap) => heap.clear(),
        }
    }
}

impl<T, const N: usize> Default for InlineVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, const N: usize> Deref for InlineVec<T, N> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        match self {
            InlineVec::Inline(inline) => inline,
            InlineVec::Heap(heap) => heap,
        }
    }
}

impl<T, const N: usize> DerefMut for InlineVec<T, N> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            InlineVec::Inline(inline) => inline,
            InlineVec::Heap(heap) => heap,
        }
    }
}

impl<T, const N: usize> FromIterator<T> for InlineVec<T, N> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut vec = Self::new();
        for value in iter {
            vec.push(value);
        }
        vec
    }
}

impl<'v, T, const N: usize> IntoIterator for &'v InlineVec<T, N> {
    type Item = &'v T;
    type IntoIter = std::slice::Iter<'v, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'v, T, const N: usize> IntoIterator for &'v mut InlineVec<T, N> {
    type Item = &'v mut T;
    type IntoIter = std::slice::IterMut<'v, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T: std::fmt::Debug, const N: usize> std::fmt::Debug for InlineVec<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Equal when the elements are, wherever they live.
impl<T: PartialEq, const N: usize, const M: usize> PartialEq<InlineVec<T, M>> for InlineVec<T, N> {
    fn eq(&self, other: &InlineVec<T, M>) -> bool {
        **self == **other
    }
}

impl<T: Eq, const N: usize> Eq for InlineVec<T, N> {}

#[cfg(test)]
mod tests {
    use super::InlineVec;

    #[test]
    fn spills_to_the_heap_past_its_room_and_keeps_the_order() {
        let mut v: InlineVec<u32, 2> = InlineVec::new();
        v.push(1);
        v.push(2);
        assert!(matches!(v, InlineVec::Inline(_)));
        v.push(3);
        assert!(matches!(v, InlineVec::Heap(_)));
        assert_eq!(&*v, &[1, 2, 3]);
        let inline: InlineVec<u32, 4> = [1, 2, 3].into_iter().collect();
        assert!(matches!(inline, InlineVec::Inline(_)));
        assert_eq!(v, inline, "equal whatever room they have");
        v.clear();
        assert!(v.is_empty());
    }

    /// A vector of borrows shrinks to a shorter borrow (what `Chain<'a>` needs).
    #[test]
    fn is_covariant_in_its_elements() {
        fn shorten<'short>(v: InlineVec<&'static str, 2>) -> InlineVec<&'short str, 2> {
            v
        }
        let v = shorten(["a"].into_iter().collect());
        assert_eq!(&*v, &["a"]);
    }
}
