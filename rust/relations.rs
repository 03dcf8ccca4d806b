//! Relations between regions: per-slice areas, which regions touch, and how two
//! label maps overlap. All work on runs, so cost follows the foreground.

use std::collections::HashMap;

use ndarray::ArrayView3;
use rayon::prelude::*;

use crate::alloc::{
    try_collect_exact, try_reserve, try_reserve_map, try_to_vec, try_vec_filled, try_vec_zeroed,
};
use crate::ccl::{fixed_slabs, for_each_row, push_runs, Connectivity, Run};
use crate::error::KernelResult;
use crate::label::{Label, LabelIndex};

/// A callback receiving `(z, y, runs)` for one row; an error stops the walk.
pub type RowRuns<'a> = dyn FnMut(usize, usize, &[Run<i128>]) -> KernelResult<()> + 'a;

/// A label map seen as rows of runs with labels widened to `i128`, so that two maps of
/// different dtypes can be walked together without a kernel per dtype pair.
pub trait KeyRows: Sync {
    /// `(nz, ny, nx)`.
    fn shape(&self) -> [usize; 3];
    /// Calls `f(z, y, runs)` for rows `first..last`, stopping at the first error.
    fn rows(&self, first: usize, last: usize, f: &mut RowRuns<'_>) -> KernelResult<()>;
}

impl<T: Label> KeyRows for ArrayView3<'_, T> {
    fn shape(&self) -> [usize; 3] {
        [self.shape()[0], self.shape()[1], self.shape()[2]]
    }

    fn rows(&self, first: usize, last: usize, f: &mut RowRuns<'_>) -> KernelResult<()> {
        let mut runs: Vec<Run<T>> = Vec::new();
        let mut keyed: Vec<Run<i128>> = Vec::new();
        for_each_row(self, first, last, |z, y, row| {
            runs.clear();
            push_runs(row, false, &mut runs)?;
            keyed.clear();
            try_reserve(&mut keyed, runs.len(), "the runs of a row")?;
            keyed.extend(runs.iter().map(|r| Run {
                start: r.start,
                end: r.end,
                value: r.value.key(),
            }));
            f(z, y, &keyed)
        })
    }
}

/// Adds `n` to the count of pair `key`, growing the map fallibly: when it is full it
/// grows here (out of line), so `entry` never has to (it would, infallibly, for a new
/// pair in a full map).
#[inline(always)]
fn add_pair(pairs: &mut HashMap<(i128, i128), u64>, key: (i128, i128), n: u64) -> KernelResult<()> {
    if pairs.len() >= pairs.capacity() {
        grow_pairs(pairs)?;
    }
    *pairs.entry(key).or_insert(0) += n;
    Ok(())
}

#[cold]
#[inline(never)]
fn grow_pairs(pairs: &mut HashMap<(i128, i128), u64>) -> KernelResult<()> {
    try_reserve_map(pairs, 1, "the label pairs")
}

/// Sums per-slab pair counts and sorts them by pair.
fn merge_pairs(partial: Vec<HashMap<(i128, i128), u64>>) -> KernelResult<Vec<(i128, i128, u64)>> {
    let mut total: HashMap<(i128, i128), u64> = HashMap::new();
    for map in partial {
        for (k, v) in map {
            add_pair(&mut total, k, v)?;
        }
    }
    let mut out: Vec<(i128, i128, u64)> = try_collect_exact(
        total.into_iter().map(|((a, b), n)| (a, b, n)),
        "the label pairs",
    )?;
    out.sort_unstable();
    Ok(out)
}

/// Voxel count of every region in every slice along `axis` (0, 1 or 2):
/// `table[row * size + s]` for region row `row` of `index` and slice `s`, where
/// `size` is the volume's extent along `axis`.
///
/// Cost: one read of the map, O(runs) updates (a difference array per region for
/// axis 2), and `index.len() × size` memory per slab in flight (allocated fallibly).
pub fn slice_areas<T: Label>(
    labels: ArrayView3<T>,
    index: &LabelIndex<T>,
    axis: usize,
) -> KernelResult<Vec<u64>> {
    let mut tables = slice_areas_along(labels, index, &[axis])?;
    Ok(tables.pop().unwrap_or_default())
}

/// [`slice_areas`] along each of `axes`, in the one read of the map: a run adds its
/// length to one slice of the two axes across it and one voxel to each slice it covers
/// along its own.
pub fn slice_areas_along<T: Label>(
    labels: ArrayView3<T>,
    index: &LabelIndex<T>,
    axes: &[usize],
) -> KernelResult<Vec<Vec<u64>>> {
    let shape = [labels.shape()[0], labels.shape()[1], labels.shape()[2]];
    let axes: Vec<usize> = axes.iter().map(|&a| a.min(2)).collect();
    if axes.is_empty() {
        return Ok(Vec::new());
    }
    let n = index.len();
    // A count past usize is a table no allocator gives: usize::MAX fails below.
    let cells = |width: usize| n.saturating_mul(width);
    if shape.contains(&0) || n == 0 {
        return axes
            .iter()
            .map(|&a| try_vec_zeroed(cells(shape[a]), "the slice area table"))
            .collect();
    }
    // Along x a run covers several slices: mark +1 at its start and −1 past its end,
    // then one prefix sum per region gives the counts.
    let widths: Vec<usize> = axes
        .iter()
        .map(|&a| if a == 2 { shape[2] + 1 } else { shape[a] })
        .collect();
    let partial: Vec<Vec<Vec<i64>>> = fixed_slabs(shape)
        .par_iter()
        .map(|&(first, last)| {
            let mut tables = widths
                .iter()
                .map(|&w| try_vec_zeroed::<i64>(cells(w), "the slice area table of a slab"))
                .collect::<KernelResult<Vec<_>>>()?;
            let mut runs: Vec<Run<T>> = Vec::new();
            for_each_row(&labels, first, last, |z, y, row| {
                runs.clear();
                push_runs(row, false, &mut runs)?;
                for run in &runs {
                    let Some(r) = index.get(run.value) else {
                        continue;
                    };
                    let len = (run.end - run.start) as i64;
                    for ((table, &axis), &width) in tables.iter_mut().zip(&axes).zip(&widths) {
                        match axis {
                            0 => table[r * width + z] += len,
                            1 => table[r * width + y] += len,
                            _ => {
                                table[r * width + run.start as usize] += 1;
                                table[r * width + run.end as usize] -= 1;
                            }
                        }
                    }
                }
                Ok(())
            })?;
            Ok(tables)
        })
        .collect::<KernelResult<_>>()?;
    let mut out = Vec::with_capacity(axes.len());
    for (t, (&axis, &width)) in axes.iter().zip(&widths).enumerate() {
        let size = shape[axis];
        let mut total = try_vec_zeroed::<i64>(cells(width), "the slice area table")?;
        for tables in &partial {
            for (acc, v) in total.iter_mut().zip(&tables[t]) {
                *acc += v;
            }
        }
        let mut table = try_vec_zeroed::<u64>(cells(size), "the slice area table")?;
        for r in 0..n {
            let mut acc = 0i64;
            for s in 0..size {
                let v = total[r * width + s];
                table[r * size + s] = if axis == 2 {
                    acc += v;
                    acc as u64
                } else {
                    v as u64
                };
            }
        }
        out.push(table);
    }
    Ok(out)
}

/// Number of voxel pairs `(p, q)` with `p` in run `a`, `q` in run `b` of an adjacent
/// row, and `q.x − p.x` in `-reach..=reach`.
#[inline]
fn adjacent_pairs(a: &Run<i128>, b: &Run<i128>, reach: u32) -> u64 {
    let mut pairs = 0u64;
    for shift in -(reach as i64)..=(reach as i64) {
        let lo = (a.start as i64).max(b.start as i64 - shift);
        let hi = (a.end as i64).min(b.end as i64 - shift);
        if hi > lo {
            pairs += (hi - lo) as u64;
        }
    }
    pairs
}

/// Counts `n` contacts between labels `a` and `b` (none between a label and itself).
/// Inlined into the scan's loop (as the closure it replaces was): most calls see one
/// label twice and return at once.
#[inline(always)]
fn add_contact(
    pairs: &mut HashMap<(i128, i128), u64>,
    a: i128,
    b: i128,
    n: u64,
) -> KernelResult<()> {
    if a != b && n > 0 {
        add_pair(pairs, (a.min(b), a.max(b)), n)
    } else {
        Ok(())
    }
}

/// Which regions touch, and by how much: for every pair of distinct nonzero labels
/// `(a, b)` with `a < b` whose voxels are neighbours under `connectivity`, the number
/// of neighbouring voxel pairs (for `Face`, the number of shared faces: the contact
/// area in voxel faces). Sorted by `(a, b)`.
///
/// Cost: one read of the map plus one plane per slab re-read at the seams.
pub fn contacts(
    labels: &dyn KeyRows,
    connectivity: Connectivity,
) -> KernelResult<Vec<(i128, i128, u64)>> {
    let shape = labels.shape();
    let [_, ny, _] = shape;
    if shape.contains(&0) {
        return Ok(Vec::new());
    }
    let neighbours: &[(isize, isize, u32)] = match connectivity {
        Connectivity::Face => &[(0, -1, 0), (-1, 0, 0)],
        Connectivity::Edge => &[(0, -1, 1), (-1, -1, 0), (-1, 0, 1), (-1, 1, 0)],
        Connectivity::Vertex => &[(0, -1, 1), (-1, -1, 1), (-1, 0, 1), (-1, 1, 1)],
    };
    let partial: Vec<HashMap<(i128, i128), u64>> = fixed_slabs(shape)
        .par_iter()
        .map(|&(first, last)| {
            let mut pairs: HashMap<(i128, i128), u64> = HashMap::new();
            // Keep the runs of the rows a row can reach back to (one plane and a row).
            let window = ny + 1;
            let from = first.saturating_sub(window);
            let mut recent: Vec<Vec<Run<i128>>> =
                try_vec_filled(window + 1, Vec::new(), "the runs of a plane")?;
            labels.rows(from, last, &mut |z, y, runs| {
                let r = z * ny + y;
                let slot = &mut recent[r % (window + 1)];
                slot.clear();
                try_reserve(slot, runs.len(), "the runs of a plane")?;
                slot.extend_from_slice(runs);
                if r < first {
                    return Ok(());
                }
                // Same row: runs that abut.
                for w in runs.windows(2) {
                    if w[0].end == w[1].start {
                        add_contact(&mut pairs, w[0].value, w[1].value, 1)?;
                    }
                }
                for &(dz, dy, reach) in neighbours {
                    let (pz, py) = (z as isize + dz, y as isize + dy);
                    if pz < 0 || py < 0 || py as usize >= ny {
                        continue;
                    }
                    let p = pz as usize * ny + py as usize;
                    let prev = &recent[p % (window + 1)];
                    let mut j = 0;
                    for a in runs {
                        while j < prev.len() && prev[j].end + reach <= a.start {
                            j += 1;
                        }
                        let mut k = j;
                        while k < prev.len() && prev[k].start < a.end + reach {
                            let n = adjacent_pairs(a, &prev[k], reach);
                            add_contact(&mut pairs, a.value, prev[k].value, n)?;
                            k += 1;
                        }
                    }
                }
                Ok(())
            })?;
            Ok(pairs)
        })
        .collect::<KernelResult<_>>()?;
    merge_pairs(partial)
}

/// Voxel count of every co-occurring pair of nonzero labels `(a, b)`, `a` from
/// `labels_a` and `b` from `labels_b` at the same voxel (both maps of one shape,
/// checked by the caller). Sorted by `(a, b)`.
///
/// Cost: one read of each map; work proportional to their runs.
pub fn overlap(
    labels_a: &dyn KeyRows,
    labels_b: &dyn KeyRows,
) -> KernelResult<Vec<(i128, i128, u64)>> {
    let shape = labels_a.shape();
    if shape.contains(&0) {
        return Ok(Vec::new());
    }
    let [_, ny, _] = shape;
    let partial: Vec<HashMap<(i128, i128), u64>> = fixed_slabs(shape)
        .par_iter()
        .map(|&(first, last)| {
            // Rows of `a` are buffered per slab, then walked with the rows of `b`.
            let mut a_rows: Vec<Vec<Run<i128>>> =
                try_vec_filled(last - first, Vec::new(), "the runs of a slab")?;
            labels_a.rows(first, last, &mut |z, y, runs| {
                a_rows[z * ny + y - first] = try_to_vec(runs, "the runs of a slab")?;
                Ok(())
            })?;
            let mut pairs: HashMap<(i128, i128), u64> = HashMap::new();
            labels_b.rows(first, last, &mut |z, y, b_runs| {
                let a_runs = &a_rows[z * ny + y - first];
                let (mut i, mut j) = (0, 0);
                while i < a_runs.len() && j < b_runs.len() {
                    let (a, b) = (&a_runs[i], &b_runs[j]);
                    let lo = a.start.max(b.start);
                    let hi = a.end.min(b.end);
                    if hi > lo {
                        add_pair(&mut pairs, (a.value, b.value), (hi - lo) as u64)?;
                    }
                    if a.end <= b.end {
                        i += 1;
                    } else {
                        j += 1;
                    }
                }
                Ok(())
            })?;
            Ok(pairs)
        })
        .collect::<KernelResult<_>>()?;
    merge_pairs(partial)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn plane(rows: &[&str]) -> Array3<u8> {
        Array3::from_shape_fn((1, rows.len(), rows[0].len()), |(_, y, x)| {
            rows[y].as_bytes()[x] - b'0'
        })
    }

    #[test]
    fn slice_areas_on_every_axis() {
        let a = plane(&["1120", "0122", "0000"]);
        let index = LabelIndex::new(vec![1u8, 2]).unwrap();
        let areas = |axis| slice_areas(a.view(), &index, axis).unwrap();
        assert_eq!(areas(1), vec![2, 1, 0, 1, 2, 0]);
        assert_eq!(areas(2), vec![1, 2, 0, 0, 0, 0, 2, 1]);
        assert_eq!(areas(0), vec![3, 3]);
        let along = slice_areas_along(a.view(), &index, &[0, 1, 2]).unwrap();
        assert_eq!(along, vec![areas(0), areas(1), areas(2)]);
    }

    #[test]
    fn contacts_count_shared_faces_and_corners() {
        let a = plane(&["1120", "0122", "3000"]);
        let face = contacts(&a.view(), Connectivity::Face).unwrap();
        // 1|2 in row 0, 1|2 in row 1, 2 above 2 is same label, 1 above 1 likewise.
        assert_eq!(face, vec![(1, 2, 2)]);
        let all = contacts(&a.view(), Connectivity::Vertex).unwrap();
        // Diagonals: (0,1)-(1,2) 1-2, (0,2)-(1,1) 2-1, plus (1,1)-(2,0) 1-3.
        assert_eq!(all, vec![(1, 2, 4), (1, 3, 1)]);
    }

    #[test]
    fn overlap_counts_co_occurring_pairs() {
        let a = plane(&["1111", "1111"]);
        let b = plane(&["0220", "0033"]);
        assert_eq!(
            overlap(&a.view(), &b.view()).unwrap(),
            vec![(1, 2, 2), (1, 3, 2)]
        );
    }
}
