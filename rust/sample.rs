//! Evenly spaced voxels of each object of a volume, as numpy would pick them from the
//! object's box in C order (`np.flatnonzero(crop == id)[::stride]`), found in two walks
//! of the volume in its own memory order: a Fortran-ordered volume (as nibabel hands
//! them out) is never transposed.
//!
//! A voxel's rank in C order among its object's voxels is the count of the object's
//! voxels in earlier C rows (rows along the last axis, ordered by the first two) plus
//! those before it in its own row. The first walk counts the voxels of each row; their
//! running sum gives each row's first rank; the second walk hands out ranks within each
//! row, in which the last axis only ever grows whatever the memory order.

use ndarray::ArrayView3;

use crate::alloc::{try_vec_filled, try_vec_zeroed};
use crate::error::{KernelError, KernelResult};
use crate::label::{Label, LabelIndex};

/// One object's box `[lo0, lo1, lo2, hi0, hi1, hi2]` (hi exclusive), logical axes.
pub type Box3 = [usize; 6];

struct Object {
    lo: [usize; 3],
    hi: [usize; 3],
    /// Rows of the box: extent along the first two axes.
    rows: [usize; 2],
    /// Voxels per C row, then (after the first walk) each row's first rank.
    first: Vec<u64>,
    /// Voxels of the row handed a rank so far.
    seen: Vec<u32>,
    count: u64,
    stride: u64,
    out: Vec<[i64; 3]>,
}

impl Object {
    #[inline(always)]
    fn row(&self, i: usize, j: usize) -> usize {
        (i - self.lo[0]) * self.rows[1] + (j - self.lo[1])
    }
}

/// Calls `visit(slot, i, j, k)` for every voxel of a listed object, walking the view in
/// its memory order (lane by lane; background skipped in runs, one lookup per run).
fn walk<T: Label>(
    view: &ArrayView3<T>,
    reversed: bool,
    index: &LabelIndex<T>,
    mut visit: impl FnMut(usize, usize, usize, usize),
) {
    let (n0, n1, _) = view.dim();
    for a in 0..n0 {
        for b in 0..n1 {
            let lane = view.slice(ndarray::s![a, b, ..]);
            let mut last: Option<(T, Option<usize>)> = None;
            for (c, &v) in lane.iter().enumerate() {
                if v.is_zero() {
                    continue;
                }
                let slot = match last {
                    Some((w, s)) if w == v => s,
                    _ => {
                        let s = index.get(v);
                        last = Some((v, s));
                        s
                    }
                };
                if let Some(slot) = slot {
                    if reversed {
                        visit(slot, c, b, a);
                    } else {
                        visit(slot, a, b, c);
                    }
                }
            }
        }
    }
}

/// For each id, every `stride`-th of its voxels in C order within `boxes[n]`, where
/// `stride = max(1, count / sample)`: `(i, j, k)` in the logical axes. `reversed` says the
/// view's axes are the logical ones reversed (a Fortran-ordered volume seen as C).
pub fn c_order_samples<T: Label>(
    view: ArrayView3<T>,
    reversed: bool,
    ids: &[T],
    boxes: &[Box3],
    sample: u64,
) -> KernelResult<Vec<Vec<[i64; 3]>>> {
    if ids.len() != boxes.len() {
        return Err(KernelError::InvalidArgument(format!(
            "{} boxes for {} ids",
            boxes.len(),
            ids.len()
        )));
    }
    let index = LabelIndex::new(ids.to_vec())?;
    // The objects in the index's (sorted) order; `slot[row of index]` → position in `ids`.
    let mut objects: Vec<Object> = Vec::with_capacity(ids.len());
    let mut position = vec![usize::MAX; ids.len()];
    for (n, id) in ids.iter().enumerate() {
        let row = index.get(*id).ok_or_else(|| {
            KernelError::InvalidArgument("an id is missing from its own index".into())
        })?;
        position[row] = n;
    }
    for &n in &position {
        if n == usize::MAX {
            return Err(KernelError::InvalidArgument("ids must be distinct".into()));
        }
        let b = boxes[n];
        let rows = [b[3].saturating_sub(b[0]), b[4].saturating_sub(b[1])];
        objects.push(Object {
            lo: [b[0], b[1], b[2]],
            hi: [b[3], b[4], b[5]],
            rows,
            first: try_vec_zeroed(rows[0] * rows[1], "the rows of an object's box")?,
            seen: try_vec_zeroed(rows[0] * rows[1], "the rows of an object's box")?,
            count: 0,
            stride: 1,
            out: Vec::new(),
        });
    }
    let inside = |o: &Object, i: usize, j: usize, k: usize| {
        i >= o.lo[0] && i < o.hi[0] && j >= o.lo[1] && j < o.hi[1] && k >= o.lo[2] && k < o.hi[2]
    };
    // First walk: voxels per C row.
    walk(&view, reversed, &index, |slot, i, j, k| {
        let o = &mut objects[slot];
        if inside(o, i, j, k) {
            let row = o.row(i, j);
            o.first[row] += 1;
            o.count += 1;
        }
    });
    for o in objects.iter_mut() {
        let mut rank = 0u64;
        for slot in o.first.iter_mut() {
            let n = *slot;
            *slot = rank;
            rank += n;
        }
        o.stride = (o.count / sample.max(1)).max(1);
        let picks = o.count.div_ceil(o.stride) as usize;
        o.out = try_vec_filled(picks, [0i64; 3], "an object's sample")?;
    }
    // Second walk: ranks within each row (the last axis grows along every row walked).
    walk(&view, reversed, &index, |slot, i, j, k| {
        let o = &mut objects[slot];
        if inside(o, i, j, k) {
            let row = o.row(i, j);
            let rank = o.first[row] + o.seen[row] as u64;
            o.seen[row] += 1;
            if rank % o.stride == 0 {
                o.out[(rank / o.stride) as usize] = [i as i64, j as i64, k as i64];
            }
        }
    });
    // Back in the callers' order.
    let mut out: Vec<Vec<[i64; 3]>> = vec![Vec::new(); ids.len()];
    for (slot, o) in objects.into_iter().enumerate() {
        out[position[slot]] = o.out;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn reference(labels: &Array3<u8>, id: u8, b: Box3, sample: u64) -> Vec<[i64; 3]> {
        let mut all = Vec::new();
        for i in b[0]..b[3] {
            for j in b[1]..b[4] {
                for k in b[2]..b[5] {
                    if labels[[i, j, k]] == id {
                        all.push([i as i64, j as i64, k as i64]);
                    }
                }
            }
        }
        let stride = (all.len() as u64 / sample).max(1) as usize;
        all.into_iter().step_by(stride).collect()
    }

    #[test]
    fn samples_follow_c_order_in_either_memory_order() {
        let labels =
            Array3::from_shape_fn((7, 6, 9), |(i, j, k)| ((i * 7 + j * 3 + k * 5) % 4) as u8);
        let boxes = [[0, 0, 0, 7, 6, 9], [1, 2, 0, 6, 6, 8], [0, 0, 0, 7, 6, 9]];
        let ids = [1u8, 2, 3];
        for sample in [1u64, 5, 1000] {
            let c = c_order_samples(labels.view(), false, &ids, &boxes, sample).unwrap();
            // The same volume laid out in Fortran order, seen as C with axes reversed.
            let fortran = labels
                .view()
                .reversed_axes()
                .as_standard_layout()
                .into_owned();
            let f = c_order_samples(fortran.view(), true, &ids, &boxes, sample).unwrap();
            for (n, &id) in ids.iter().enumerate() {
                let expected = reference(&labels, id, boxes[n], sample);
                assert_eq!(c[n], expected, "id {id}, sample {sample}");
                assert_eq!(f[n], expected, "id {id}, sample {sample}, Fortran");
            }
        }
    }
}
