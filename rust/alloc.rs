//! Fallible allocation for the kernels' working buffers.
//!
//! `vec![v; n]`, `Vec::with_capacity(n)` and a growing `Vec::push` abort the whole
//! process when the allocator says no, as it does under the address-space limit a case
//! runs with (`pipeline/budget.py`). Every kernel buffer whose size follows the input
//! (voxels, rows, runs, labels, regions) is allocated through these helpers instead,
//! which report [`KernelError::OutOfMemory`] (a Python `MemoryError`) naming the buffer
//! and the bytes asked for. Small fixed-size buffers keep the ordinary constructors.

use std::alloc::{alloc_zeroed, Layout};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::mem::size_of;

use crate::error::{KernelError, KernelResult};

/// The error for `elems` elements of `T` that could not be allocated for `what`.
#[cold]
#[inline(never)]
pub fn out_of_memory<T>(what: &str, elems: usize) -> KernelError {
    // u128: an absurd request must not overflow the message's arithmetic.
    let bytes = elems as u128 * size_of::<T>() as u128;
    KernelError::OutOfMemory(format!(
        "out of memory: cannot allocate {bytes} bytes for {what} ({elems} elements)"
    ))
}

/// An empty vector with room for exactly `n` elements.
#[inline]
pub fn try_with_capacity<T>(n: usize, what: &str) -> KernelResult<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| out_of_memory::<T>(what, n))?;
    Ok(v)
}

/// `vec![value; n]`, fallibly.
#[inline]
pub fn try_vec_filled<T: Clone>(n: usize, value: T, what: &str) -> KernelResult<Vec<T>> {
    let mut v = try_with_capacity(n, what)?;
    v.resize(n, value);
    Ok(v)
}

/// Element types whose all-zero bytes are a valid value (numbers and arrays of them).
///
/// # Safety
///
/// Implement only for types for which every byte being zero is a valid value, equal
/// to `ZERO`.
pub unsafe trait Zeroable: Copy {
    const ZERO: Self;
}

macro_rules! impl_zeroable {
    ($($t:ty = $zero:expr),*) => {$(
        // SAFETY: zero bytes are the number zero.
        unsafe impl Zeroable for $t {
            const ZERO: Self = $zero;
        }
    )*};
}
impl_zeroable!(
    u8 = 0,
    u16 = 0,
    u32 = 0,
    u64 = 0,
    usize = 0,
    i64 = 0,
    f64 = 0.0
);

// SAFETY: an array of zero-byte values is zero bytes.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {
    const ZERO: Self = [T::ZERO; N];
}

/// `vec![0; n]`, fallibly, and like it through the allocator's zeroed allocation: a
/// large buffer comes as fresh zero pages that cost memory only where written (the
/// per-worker tables of `surface.rs` touch a few entries each), instead of being
/// written through as [`try_vec_filled`] does.
pub fn try_vec_zeroed<T: Zeroable>(n: usize, what: &str) -> KernelResult<Vec<T>> {
    if n == 0 || size_of::<T>() == 0 {
        // Nothing to allocate.
        return Ok(vec![T::ZERO; n]);
    }
    let layout = Layout::array::<T>(n).map_err(|_| out_of_memory::<T>(what, n))?;
    // SAFETY: the layout has a nonzero size (n > 0 elements of a sized T).
    let ptr = unsafe { alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(out_of_memory::<T>(what, n));
    }
    // SAFETY: `ptr` comes from the global allocator (the one `Vec` uses) with the layout
    // of `n` elements of `T`, which is the layout of a `Vec<T>` of capacity `n`; its `n`
    // elements are zero bytes, a valid `T` (`Zeroable`); and `Layout::array` checked
    // that the size fits `isize`.
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// Makes room for `additional` more elements (amortised growth, like `push`).
#[inline]
pub fn try_reserve<T>(v: &mut Vec<T>, additional: usize, what: &str) -> KernelResult<()> {
    if v.capacity() - v.len() >= additional {
        return Ok(());
    }
    grow(v, additional, what)
}

/// `v.push(x)`, growing `v` fallibly. As cheap as `push` where it does not grow, so it
/// can sit in a kernel's inner loop.
#[inline(always)]
pub fn try_push<T>(v: &mut Vec<T>, x: T, what: &str) -> KernelResult<()> {
    if v.len() == v.capacity() {
        grow(v, 1, what)?;
    }
    v.push(x);
    Ok(())
}

/// The growing half of [`try_reserve`] and [`try_push`], out of line so that their
/// common path (room left) stays small enough to inline into inner loops.
#[cold]
#[inline(never)]
fn grow<T>(v: &mut Vec<T>, additional: usize, what: &str) -> KernelResult<()> {
    let needed = v.len().saturating_add(additional);
    v.try_reserve(additional)
        .map_err(|_| out_of_memory::<T>(what, needed))
}

/// `iter.collect::<Vec<_>>()` for an iterator that knows its length (ranges, maps of
/// slices): one allocation of exactly that length, then a plain `extend`.
#[inline]
pub fn try_collect_exact<I: ExactSizeIterator>(iter: I, what: &str) -> KernelResult<Vec<I::Item>> {
    let mut v = try_with_capacity(iter.len(), what)?;
    v.extend(iter);
    Ok(v)
}

/// `iter.collect::<Vec<_>>()` for any iterator, growing fallibly.
pub fn try_collect<I: IntoIterator>(iter: I, what: &str) -> KernelResult<Vec<I::Item>> {
    let iter = iter.into_iter();
    let mut v = try_with_capacity(iter.size_hint().0, what)?;
    for x in iter {
        try_push(&mut v, x, what)?;
    }
    Ok(v)
}

/// `slice.to_vec()`, fallibly.
#[inline]
pub fn try_to_vec<T: Clone>(slice: &[T], what: &str) -> KernelResult<Vec<T>> {
    let mut v = try_with_capacity(slice.len(), what)?;
    v.extend_from_slice(slice);
    Ok(v)
}

/// Makes room in a hash map for `additional` more entries; call before inserting.
#[inline]
pub fn try_reserve_map<K: Eq + Hash, V, S: BuildHasher>(
    map: &mut HashMap<K, V, S>,
    additional: usize,
    what: &str,
) -> KernelResult<()> {
    map.try_reserve(additional)
        .map_err(|_| out_of_memory::<(K, V)>(what, map.len().saturating_add(additional)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_oom<T: std::fmt::Debug>(r: KernelResult<T>, what: &str) -> String {
        match r {
            Err(KernelError::OutOfMemory(m)) => {
                assert!(m.contains(what), "{m}");
                assert!(m.contains("bytes"), "{m}");
                m
            }
            other => panic!("expected OutOfMemory, got {other:?}"),
        }
    }

    #[test]
    fn absurd_sizes_are_errors_not_aborts() {
        // More bytes than an address space holds (capacity overflow) ...
        let m = is_oom(
            try_vec_filled(usize::MAX / 2, 0u64, "the test buffer"),
            "the test buffer",
        );
        assert!(
            m.contains(&format!("{} bytes", (usize::MAX / 2) as u128 * 8)),
            "{m}"
        );
        is_oom(try_with_capacity::<u32>(usize::MAX / 2, "runs"), "runs");
        // ... and a size the allocator itself refuses (2^60 bytes is a valid layout).
        is_oom(try_with_capacity::<u8>(1 << 60, "a slab"), "a slab");
        is_oom(try_collect_exact(0..usize::MAX / 2, "parents"), "parents");
        is_oom(try_vec_zeroed::<f64>(usize::MAX / 2, "areas"), "areas");
        is_oom(try_vec_zeroed::<u8>(1 << 60, "a table"), "a table");
        let mut v = vec![1u8];
        is_oom(try_reserve(&mut v, 1 << 60, "spans"), "spans");
        assert_eq!(v, [1]);
        let mut map: HashMap<u64, u64> = HashMap::new();
        is_oom(try_reserve_map(&mut map, usize::MAX / 2, "pairs"), "pairs");
    }

    #[test]
    fn helpers_match_the_infallible_constructors() {
        assert_eq!(try_vec_filled(3, 7u16, "x").unwrap(), vec![7u16; 3]);
        assert_eq!(try_vec_zeroed::<f64>(5, "x").unwrap(), vec![0.0; 5]);
        assert_eq!(try_vec_zeroed::<[u64; 3]>(2, "x").unwrap(), vec![[0; 3]; 2]);
        assert_eq!(try_vec_zeroed::<[u64; 0]>(2, "x").unwrap().len(), 2);
        assert!(try_vec_zeroed::<u32>(0, "x").unwrap().is_empty());
        let mut z = try_vec_zeroed::<usize>(3, "x").unwrap();
        z.push(4);
        assert_eq!(z, [0, 0, 0, 4]);
        assert_eq!(try_with_capacity::<u8>(5, "x").unwrap().capacity(), 5);
        let mut v = Vec::new();
        for i in 0..100 {
            try_push(&mut v, i, "x").unwrap();
        }
        assert_eq!(v, (0..100).collect::<Vec<_>>());
        assert_eq!(try_collect_exact(0..4u32, "x").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(
            try_collect((0..10).filter(|i| i % 3 == 0), "x").unwrap(),
            vec![0, 3, 6, 9]
        );
        assert_eq!(try_to_vec(&[1, 2], "x").unwrap(), vec![1, 2]);
        let mut map: HashMap<u8, u8> = HashMap::new();
        try_reserve_map(&mut map, 10, "x").unwrap();
        assert!(map.capacity() >= 10);
    }
}
