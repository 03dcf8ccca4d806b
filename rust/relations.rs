//! Relations between regions: per-slice areas, which regions touch, and how two
//! label maps overlap. All work on runs, so cost follows the foreground.

use std::collections::HashMap;

use ndarray::ArrayView3;
use rayon::prelude::*;

use crate::ccl::{fixed_slabs, for_each_row, push_runs, Connectivity, Run};
use crate::label::{Label, LabelIndex};

/// A callback receiving `(z, y, runs)` for one row.
pub type RowRuns<'a> = dyn FnMut(usize, usize, &[Run<i128>]) + 'a;

/// A label map seen as rows of runs with labels widened to `i128`, so that two maps of
/// different dtypes can be walked together without a kernel per dtype pair.
pub trait KeyRows: Sync {
    /// `(nz, ny, nx)`.
    fn shape(&self) -> [usize; 3];
    /// Calls `f(z, y, runs)` for rows `first..last`.
    fn rows(&self, first: usize, last: usize, f: &mut RowRuns<'_>);
}

impl<T: Label> KeyRows for ArrayView3<'_, T> {
    fn shape(&self) -> [usize; 3] {
        [self.shape()[0], self.shape()[1], self.shape()[2]]
    }

    fn rows(&self, first: usize, last: usize, f: &mut RowRuns<'_>) {
        let mut runs: Vec<Run<T>> = Vec::new();
        let mut keyed: Vec<Run<i128>> = Vec::new();
        for_each_row(self, first, last, |z, y, row| {
            runs.clear();
            push_runs(row, false, &mut runs);
            keyed.clear();
            keyed.extend(runs.iter().map(|r| Run {
                start: r.start,
                end: r.end,
                value: r.value.key(),
            }));
            f(z, y, &keyed);
        });
    }
}

/// Sums per-slab pair counts and sorts them by pair.
fn merge_pairs(partial: Vec<HashMap<(i128, i128), u64>>) -> Vec<(i128, i128, u64)> {
    let mut total: HashMap<(i128, i128), u64> = HashMap::new();
    for map in partial {
        for (k, v) in map {
            *total.entry(k).or_insert(0) += v;
        }
    }
    let mut out: Vec<(i128, i128, u64)> = total.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    out.sort_unstable();
    out
}

/// Voxel count of every region in every slice along `axis` (0, 1 or 2):
/// `table[row * size + s]` for region row `row` of `index` and slice `s`, where
/// `size` is the volume's extent along `axis`.
///
/// Cost: one read of the map, O(runs) updates (a difference array per region for
/// axis 2), and `index.len() × size` memory per slab in flight.
pub fn slice_areas<T: Label>(
    labels: ArrayView3<T>,
    index: &LabelIndex<T>,
    axis: usize,
) -> Vec<u64> {
    let shape = [labels.shape()[0], labels.shape()[1], labels.shape()[2]];
    let size = shape[axis.min(2)];
    let n = index.len();
    if shape.contains(&0) || n == 0 {
        return vec![0; n * size];
    }
    // Along x a run covers several slices: mark +1 at its start and −1 past its end,
    // then one prefix sum per region gives the counts.
    let width = if axis == 2 { size + 1 } else { size };
    let partial: Vec<Vec<i64>> = fixed_slabs(shape)
        .par_iter()
        .map(|&(first, last)| {
            let mut table = vec![0i64; n * width];
            let mut runs: Vec<Run<T>> = Vec::new();
            for_each_row(&labels, first, last, |z, y, row| {
                runs.clear();
                push_runs(row, false, &mut runs);
                for run in &runs {
                    let Some(r) = index.get(run.value) else {
                        continue;
                    };
                    let len = (run.end - run.start) as i64;
                    match axis {
                        0 => table[r * width + z] += len,
                        1 => table[r * width + y] += len,
                        _ => {
                            table[r * width + run.start as usize] += 1;
                            table[r * width + run.end as usize] -= 1;
                        }
                    }
                }
            });
            table
        })
        .collect();
    let mut total = vec![0i64; n * width];
    for table in partial {
        for (t, v) in total.iter_mut().zip(table) {
            *t += v;
        }
    }
    let mut out = vec![0u64; n * size];
    for r in 0..n {
        let mut acc = 0i64;
        for s in 0..size {
            let v = total[r * width + s];
            out[r * size + s] = if axis == 2 {
                acc += v;
                acc as u64
            } else {
                v as u64
            };
        }
    }
    out
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

/// Which regions touch, and by how much: for every pair of distinct nonzero labels
/// `(a, b)` with `a < b` whose voxels are neighbours under `connectivity`, the number
/// of neighbouring voxel pairs (for `Face`, the number of shared faces: the contact
/// area in voxel faces). Sorted by `(a, b)`.
///
/// Cost: one read of the map plus one plane per slab re-read at the seams.
pub fn contacts(labels: &dyn KeyRows, connectivity: Connectivity) -> Vec<(i128, i128, u64)> {
    let shape = labels.shape();
    let [_, ny, _] = shape;
    if shape.contains(&0) {
        return Vec::new();
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
            let mut add = |a: i128, b: i128, n: u64| {
                if a != b && n > 0 {
                    *pairs.entry((a.min(b), a.max(b))).or_insert(0) += n;
                }
            };
            // Keep the runs of the rows a row can reach back to (one plane and a row).
            let window = ny + 1;
            let from = first.saturating_sub(window);
            let mut recent: Vec<Vec<Run<i128>>> = vec![Vec::new(); window + 1];
            labels.rows(from, last, &mut |z, y, runs| {
                let r = z * ny + y;
                recent[r % (window + 1)].clear();
                recent[r % (window + 1)].extend_from_slice(runs);
                if r < first {
                    return;
                }
                // Same row: runs that abut.
                for w in runs.windows(2) {
                    if w[0].end == w[1].start {
                        add(w[0].value, w[1].value, 1);
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
                            add(a.value, prev[k].value, adjacent_pairs(a, &prev[k], reach));
                            k += 1;
                        }
                    }
                }
            });
            pairs
        })
        .collect();
    merge_pairs(partial)
}

/// Voxel count of every co-occurring pair of nonzero labels `(a, b)`, `a` from
/// `labels_a` and `b` from `labels_b` at the same voxel (both maps of one shape,
/// checked by the caller). Sorted by `(a, b)`.
///
/// Cost: one read of each map; work proportional to their runs.
pub fn overlap(labels_a: &dyn KeyRows, labels_b: &dyn KeyRows) -> Vec<(i128, i128, u64)> {
    let shape = labels_a.shape();
    if shape.contains(&0) {
        return Vec::new();
    }
    let [_, ny, _] = shape;
    let partial: Vec<HashMap<(i128, i128), u64>> = fixed_slabs(shape)
        .par_iter()
        .map(|&(first, last)| {
            // Rows of `a` are buffered per slab, then walked with the rows of `b`.
            let mut a_rows: Vec<Vec<Run<i128>>> = vec![Vec::new(); last - first];
            labels_a.rows(first, last, &mut |z, y, runs| {
                a_rows[z * ny + y - first] = runs.to_vec();
            });
            let mut pairs: HashMap<(i128, i128), u64> = HashMap::new();
            labels_b.rows(first, last, &mut |z, y, b_runs| {
                let a_runs = &a_rows[z * ny + y - first];
                let (mut i, mut j) = (0, 0);
                while i < a_runs.len() && j < b_runs.len() {
                    let (a, b) = (&a_runs[i], &b_runs[j]);
                    let lo = a.start.max(b.start);
                    let hi = a.end.min(b.end);
                    if hi > lo {
                        *pairs.entry((a.value, b.value)).or_insert(0) += (hi - lo) as u64;
                    }
                    if a.end <= b.end {
                        i += 1;
                    } else {
                        j += 1;
                    }
                }
            });
            pairs
        })
        .collect();
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
        let index = LabelIndex::new(vec![1u8, 2]);
        assert_eq!(slice_areas(a.view(), &index, 1), vec![2, 1, 0, 1, 2, 0]);
        assert_eq!(
            slice_areas(a.view(), &index, 2),
            vec![1, 2, 0, 0, 0, 0, 2, 1]
        );
        assert_eq!(slice_areas(a.view(), &index, 0), vec![3, 3]);
    }

    #[test]
    fn contacts_count_shared_faces_and_corners() {
        let a = plane(&["1120", "0122", "3000"]);
        let face = contacts(&a.view(), Connectivity::Face);
        // 1|2 in row 0, 1|2 in row 1, 2 above 2 is same label, 1 above 1 likewise.
        assert_eq!(face, vec![(1, 2, 2)]);
        let all = contacts(&a.view(), Connectivity::Vertex);
        // Diagonals: (0,1)-(1,2) 1-2, (0,2)-(1,1) 2-1, plus (1,1)-(2,0) 1-3.
        assert_eq!(all, vec![(1, 2, 4), (1, 3, 1)]);
    }

    #[test]
    fn overlap_counts_co_occurring_pairs() {
        let a = plane(&["1111", "1111"]);
        let b = plane(&["0220", "0033"]);
        assert_eq!(overlap(&a.view(), &b.view()), vec![(1, 2, 2), (1, 3, 2)]);
    }
}
