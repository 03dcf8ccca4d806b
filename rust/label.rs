//! The element types a mask or label map may have, and a lookup from label value to
//! region row.

use std::collections::HashMap;
use std::fmt::Debug;

use crate::alloc::{try_reserve_map, try_vec_filled};
use crate::error::KernelResult;

/// An element type of a mask or label map: any numpy bool or integer dtype.
///
/// `key` is an order-preserving widening to `i128`, so regions of any dtype sort
/// by numeric label value and can be looked up in one table type.
pub trait Label: Copy + PartialEq + Send + Sync + Debug + 'static {
    /// The background value.
    const ZERO: Self;
    /// Whether this is background.
    #[inline(always)]
    fn is_zero(self) -> bool {
        self == Self::ZERO
    }
    /// Numeric value, widened without loss.
    fn key(self) -> i128;
}

macro_rules! impl_label_int {
    ($($t:ty),*) => {$(
        impl Label for $t {
            const ZERO: Self = 0;
            #[inline(always)]
            fn key(self) -> i128 { self as i128 }
        }
    )*};
}
impl_label_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Label for bool {
    const ZERO: Self = false;
    #[inline(always)]
    fn key(self) -> i128 {
        self as i128
    }
}

/// Elements a scan of a row checks at a time (a branch-free reduction over each block,
/// which the compiler vectorises).
const SCAN_BLOCK: usize = 32;

/// The first position at or after `from` whose element does not satisfy `keep` (or
/// `row.len()`), a block at a time: the scans through background and through runs.
#[inline(always)]
fn scan_while<T: Label>(row: &[T], mut from: usize, keep: impl Fn(T) -> bool) -> usize {
    while from + SCAN_BLOCK <= row.len() {
        let block = &row[from..from + SCAN_BLOCK];
        if block.iter().fold(false, |stop, &v| stop | !keep(v)) {
            break;
        }
        from += SCAN_BLOCK;
    }
    while from < row.len() && keep(row[from]) {
        from += 1;
    }
    from
}

/// The first position at or after `from` whose element is nonzero (or `row.len()`).
#[inline]
pub fn skip_zeros<T: Label>(row: &[T], from: usize) -> usize {
    scan_while(row, from, |v| v.is_zero())
}

/// The first position at or after `from` whose element is not `value` (or `row.len()`):
/// the end of a run.
#[inline]
pub fn run_end<T: Label>(row: &[T], from: usize, value: T) -> usize {
    scan_while(row, from, |v| v == value)
}

/// The first position at or after `from` whose element is zero (or `row.len()`): the end
/// of a run of any nonzero values.
#[inline]
pub fn run_end_nonzero<T: Label>(row: &[T], from: usize) -> usize {
    scan_while(row, from, |v| !v.is_zero())
}

/// Largest span of label values looked up through a dense table rather than a hash map.
const DENSE_SPAN: i128 = 1 << 24;

/// Maps the label values present in a volume to their region rows `0..len()`, in
/// ascending label order. Dense table when the values span at most 2^24, hash map
/// otherwise; a lookup is O(1) either way.
#[derive(Debug, Clone)]
pub struct LabelIndex<T: Label> {
    labels: Vec<T>,
    min_key: i128,
    dense: Vec<u32>,
    sparse: HashMap<i128, u32>,
}

const ABSENT: u32 = u32::MAX;

impl<T: Label> LabelIndex<T> {
    /// Builds the index from distinct nonzero labels in any order; they are sorted here.
    /// Errors with [`crate::error::KernelError::OutOfMemory`] if the lookup table cannot
    /// be allocated.
    pub fn new(mut labels: Vec<T>) -> KernelResult<Self> {
        // `key` is injective, so equal keys are equal labels and the unstable sort (which,
        // unlike the stable one, allocates nothing) gives the same order.
        labels.sort_unstable_by_key(|v| v.key());
        labels.dedup_by_key(|v| v.key());
        let min_key = labels.first().map_or(0, |v| v.key());
        let max_key = labels.last().map_or(0, |v| v.key());
        let mut index = LabelIndex {
            labels,
            min_key,
            dense: Vec::new(),
            sparse: HashMap::new(),
        };
        if max_key - min_key < DENSE_SPAN {
            index.dense = try_vec_filled(
                (max_key - min_key + 1) as usize,
                ABSENT,
                "the label lookup table",
            )?;
            for (row, v) in index.labels.iter().enumerate() {
                index.dense[(v.key() - min_key) as usize] = row as u32;
            }
        } else {
            try_reserve_map(
                &mut index.sparse,
                index.labels.len(),
                "the label lookup table",
            )?;
            for (row, v) in index.labels.iter().enumerate() {
                index.sparse.insert(v.key(), row as u32);
            }
        }
        Ok(index)
    }

    /// Number of regions (distinct nonzero labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no regions.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels, ascending; row `i` of every table is `labels()[i]`.
    pub fn labels(&self) -> &[T] {
        &self.labels
    }

    /// The labels, ascending, without the lookup table.
    pub fn into_labels(self) -> Vec<T> {
        self.labels
    }

    /// The region row of label `v`, or `None` for background and labels not present.
    #[inline(always)]
    pub fn get(&self, v: T) -> Option<usize> {
        if v.is_zero() {
            return None;
        }
        let k = v.key();
        if !self.dense.is_empty() || self.sparse.is_empty() {
            let off = k - self.min_key;
            if off < 0 || off >= self.dense.len() as i128 {
                return None;
            }
            let row = self.dense[off as usize];
            (row != ABSENT).then_some(row as usize)
        } else {
            self.sparse.get(&k).map(|&r| r as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_lookup_sorts_and_skips_background() {
        let idx = LabelIndex::new(vec![7u16, 3, 5, 3]).unwrap();
        assert_eq!(idx.labels(), &[3, 5, 7]);
        assert_eq!(idx.get(5), Some(1));
        assert_eq!(idx.get(4), None);
        assert_eq!(idx.get(0), None);
        assert_eq!(idx.get(9), None);
    }

    #[test]
    fn sparse_lookup_for_wide_spans_and_negatives() {
        let idx = LabelIndex::new(vec![i64::MAX, -4, 1]).unwrap();
        assert_eq!(idx.labels(), &[-4, 1, i64::MAX]);
        assert_eq!(idx.get(i64::MAX), Some(2));
        assert_eq!(idx.get(-4), Some(0));
        assert_eq!(idx.get(2), None);
    }

    #[test]
    fn empty_index() {
        let idx = LabelIndex::<u8>::new(vec![]).unwrap();
        assert!(idx.is_empty());
        assert_eq!(idx.get(1), None);
    }

    #[test]
    fn block_scans_stop_where_an_element_at_a_time_would() {
        // Rows of runs of every length around the block's, at every offset.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % n
        };
        for _ in 0..300 {
            let mut row: Vec<u16> = Vec::new();
            while row.len() < 200 {
                let value = if next(3) == 0 { 0 } else { 1 + next(3) as u16 };
                let length = [1, 2, 31, 32, 33, 64, 65, 100][next(8) as usize];
                row.extend(std::iter::repeat_n(value, length));
            }
            for from in 0..=row.len() {
                let naive_skip = (from..row.len())
                    .find(|&i| row[i] != 0)
                    .unwrap_or(row.len());
                assert_eq!(skip_zeros(&row, from), naive_skip);
                let naive_zero = (from..row.len())
                    .find(|&i| row[i] == 0)
                    .unwrap_or(row.len());
                assert_eq!(run_end_nonzero(&row, from), naive_zero);
                if from < row.len() {
                    let v = row[from];
                    let naive_end = (from..row.len())
                        .find(|&i| row[i] != v)
                        .unwrap_or(row.len());
                    assert_eq!(run_end(&row, from, v), naive_end);
                }
            }
        }
    }
}

/// Writes `lookup[v]` for every element `v` of `input` into `out` (of one length), in
/// parallel chunks: a label map renumbered through a table (components to objects). A
/// value that is negative or past the table's end is an error naming it.
pub fn relabel<T: Label, U: Copy + Send + Sync>(
    input: &[T],
    lookup: &[U],
    out: &mut [U],
) -> KernelResult<()> {
    use rayon::prelude::*;
    if input.len() != out.len() {
        return Err(crate::error::KernelError::ShapeMismatch(format!(
            "relabel: {} values but an output of {}",
            input.len(),
            out.len()
        )));
    }
    const CHUNK: usize = 1 << 18;
    input
        .par_chunks(CHUNK)
        .zip(out.par_chunks_mut(CHUNK))
        .try_for_each(|(from, to)| {
            for (o, &v) in to.iter_mut().zip(from) {
                // A negative key wraps to a huge index: out of the table either way.
                match lookup.get(v.key() as u128 as usize) {
                    Some(&x) if v.key() >= 0 => *o = x,
                    _ => {
                        return Err(crate::error::KernelError::InvalidArgument(format!(
                            "relabel: value {} has no entry in a table of {}",
                            v.key(),
                            lookup.len()
                        )))
                    }
                }
            }
            Ok(())
        })
}

#[cfg(test)]
mod relabel_tests {
    use super::relabel;

    #[test]
    fn values_go_through_the_table() {
        let mut out = [0u8; 5];
        relabel(&[0u16, 2, 1, 2, 0], &[0u8, 7, 9], &mut out).unwrap();
        assert_eq!(out, [0, 9, 7, 9, 0]);
        assert!(relabel(&[3u16], &[0u8, 1], &mut out[..1]).is_err());
        assert!(relabel(&[-1i32], &[0u8, 1], &mut out[..1]).is_err());
    }
}
