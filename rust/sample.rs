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

use crate::alloc::{try_collect_exact, try_vec_filled, try_vec_zeroed, try_with_capacity};
use crate::ccl::fixed_slabs;
use crate::error::{KernelError, KernelResult};
use crate::label::{run_end, skip_zeros, Label, LabelIndex};
use rayon::prelude::*;

/// Rows a run across rows (a Fortran-ordered volume's) ranks at a time.
const PICK_BLOCK: usize = 16;

/// One object's box `[lo0, lo1, lo2, hi0, hi1, hi2]` (hi exclusive), logical axes.
pub type Box3 = [usize; 6];

struct Object {
    lo: [usize; 3],
    hi: [usize; 3],
    /// Rows of the box: extent along the first two axes.
    rows: [usize; 2],
    /// Per C row (stored so that a lane of the walk reads consecutive entries): its
    /// voxels, then (after the first walk) the rank its next voxel gets.
    first: Vec<u64>,
    /// Per C row, after the first walk: the next rank to keep (a multiple of the stride).
    next: Vec<u64>,
    count: u64,
    stride: u64,
    /// The walk's lanes run along the first axis (a Fortran-ordered volume).
    reversed: bool,
}

impl Object {
    /// Where C row (i, j) is stored.
    #[inline(always)]
    fn row(&self, i: usize, j: usize) -> usize {
        if self.reversed {
            (j - self.lo[1]) * self.rows[0] + (i - self.lo[0])
        } else {
            (i - self.lo[0]) * self.rows[1] + (j - self.lo[1])
        }
    }

    /// The part `[from, to)` of a run of this object's label along a lane at (`a`, `b`)
    /// that lies in the box, as (i, j, k) of its first voxel and its length. Lanes run
    /// along k, at (i, j) = (a, b); reversed, along i, at (k, j) = (a, b).
    #[inline(always)]
    fn clip(&self, a: usize, b: usize, from: usize, to: usize) -> Option<([usize; 3], usize)> {
        let (fixed, lane_axis) = if self.reversed {
            ([a, b], 0)
        } else {
            ([a, b], 2)
        };
        let (other0, other1) = if self.reversed { (2, 1) } else { (0, 1) };
        if fixed[0] < self.lo[other0] || fixed[0] >= self.hi[other0] {
            return None;
        }
        if fixed[1] < self.lo[other1] || fixed[1] >= self.hi[other1] {
            return None;
        }
        let start = from.max(self.lo[lane_axis]);
        let end = to.min(self.hi[lane_axis]);
        if start >= end {
            return None;
        }
        let first = if self.reversed {
            [start, b, a]
        } else {
            [a, b, start]
        };
        Some((first, end - start))
    }

    /// First walk: counts the run's voxels into their rows.
    fn count_run(&mut self, a: usize, b: usize, from: usize, to: usize) {
        let Some(([i, j, _], n)) = self.clip(a, b, from, to) else {
            return;
        };
        let row = self.row(i, j);
        if self.reversed {
            for slot in &mut self.first[row..row + n] {
                *slot += 1;
            }
        } else {
            self.first[row] += n as u64;
        }
        self.count += n as u64;
    }

    /// Second walk: ranks the run's voxels and hands every `stride`-th to `keep`, with
    /// its place among the object's picks.
    fn rank_run(
        &mut self,
        a: usize,
        b: usize,
        from: usize,
        to: usize,
        mut keep: impl FnMut(usize, [usize; 3]),
    ) {
        let Some(([i, j, k], n)) = self.clip(a, b, from, to) else {
            return;
        };
        let row = self.row(i, j);
        if self.reversed {
            // One voxel in each of n consecutive rows (i, i + 1, ...): their ranks moved on
            // a block at a time, and only a block holding a pick looked at row by row.
            let stride = self.stride;
            let ranks = self.first[row..row + n].chunks_mut(PICK_BLOCK);
            let picks = self.next[row..row + n].chunks_mut(PICK_BLOCK);
            for (block, (ranks, picks)) in ranks.zip(picks).enumerate() {
                let due = ranks
                    .iter()
                    .zip(picks.iter())
                    .fold(false, |due, (r, p)| due | (r == p));
                if due {
                    for (step, (rank, pick)) in ranks.iter_mut().zip(picks.iter_mut()).enumerate() {
                        if *rank == *pick {
                            *pick += stride;
                            keep(
                                (*rank / stride) as usize,
                                [i + block * PICK_BLOCK + step, j, k],
                            );
                        }
                    }
                }
                for rank in ranks.iter_mut() {
                    *rank += 1;
                }
            }
        } else {
            // n voxels of one row: ranks rank0..rank0 + n, k growing with them.
            let rank0 = self.first[row];
            self.first[row] += n as u64;
            let mut rank = rank0.div_ceil(self.stride) * self.stride;
            while rank < rank0 + n as u64 {
                let at = k + (rank - rank0) as usize;
                keep((rank / self.stride) as usize, [i, j, at]);
                rank += self.stride;
            }
        }
    }

    /// How many voxels the second walk keeps.
    fn picks(&self) -> usize {
        self.count.div_ceil(self.stride) as usize
    }

    /// Turns the row counts into each row's first rank, C row after C row.
    fn rank_rows(&mut self, sample: u64) -> KernelResult<()> {
        let mut rank = 0u64;
        for i in self.lo[0]..self.hi[0] {
            for j in self.lo[1]..self.hi[1] {
                let row = self.row(i, j);
                let n = self.first[row];
                self.first[row] = rank;
                rank += n;
            }
        }
        self.stride = (self.count / sample.max(1)).max(1);
        let stride = self.stride;
        self.next = try_collect_exact(
            self.first.iter().map(|&r| r.div_ceil(stride) * stride),
            "the rows of an object's box",
        )?;
        Ok(())
    }
}

/// Calls `visit(slot, a, b, from, to)` for every run of one listed object's label along a
/// lane of the view (lanes along its last, fastest axis at (a, b)), walking the view in
/// memory order; background is skipped, and each run costs one label lookup.
fn walk<T: Label>(
    view: &ArrayView3<T>,
    index: &LabelIndex<T>,
    visit: impl FnMut(usize, usize, usize, usize, usize),
) {
    let (n0, n1, _) = view.dim();
    walk_lanes(view, index, 0..n0 * n1, visit);
}

/// [`walk`] over the lanes numbered `lanes` (lane r at (a, b) = (r / n1, r % n1)).
fn walk_lanes<T: Label>(
    view: &ArrayView3<T>,
    index: &LabelIndex<T>,
    lanes: std::ops::Range<usize>,
    mut visit: impl FnMut(usize, usize, usize, usize, usize),
) {
    let n1 = view.dim().1;
    if n1 == 0 {
        return;
    }
    for r in lanes {
        let (a, b) = (r / n1, r % n1);
        let lane = view.slice(ndarray::s![a, b, ..]);
        let lane = lane
            .as_slice()
            .expect("a standard-layout view has contiguous lanes");
        let mut c = skip_zeros(lane, 0);
        while c < lane.len() {
            let v = lane[c];
            let from = c;
            c = run_end(lane, c + 1, v);
            if let Some(slot) = index.get(v) {
                visit(slot, a, b, from, c);
            }
            c = skip_zeros(lane, c);
        }
    }
}

/// The objects of a sampling, in the order of their label index, ranked by the first
/// walk; `position[slot]` is the object's place in the callers' `ids`.
struct Sampling<'a, T: Label> {
    view: ArrayView3<'a, T>,
    index: LabelIndex<T>,
    objects: Vec<Object>,
    position: Vec<usize>,
}

impl<'a, T: Label> Sampling<'a, T> {
    /// Checks the arguments, and counts each object's voxels per C row (the first walk).
    fn new(
        view: ArrayView3<'a, T>,
        reversed: bool,
        ids: &[T],
        boxes: &[Box3],
        sample: u64,
    ) -> KernelResult<Self> {
        if ids.len() != boxes.len() {
            return Err(KernelError::InvalidArgument(format!(
                "{} boxes for {} ids",
                boxes.len(),
                ids.len()
            )));
        }
        if !view.is_standard_layout() {
            return Err(KernelError::InvalidArgument(
                "c_order_samples walks a volume in its memory order: C or Fortran contiguous"
                    .into(),
            ));
        }
        let index = LabelIndex::new(ids.to_vec())?;
        // `position[row of the index]` → position in `ids`.
        let mut position = try_vec_filled(ids.len(), usize::MAX, "the objects' order")?;
        for (n, id) in ids.iter().enumerate() {
            let row = index.get(*id).ok_or_else(|| {
                KernelError::InvalidArgument("an id is missing from its own index".into())
            })?;
            position[row] = n;
        }
        let mut objects: Vec<Object> = try_with_capacity(ids.len(), "the objects")?;
        for &n in &position {
            if n == usize::MAX {
                return Err(KernelError::InvalidArgument("ids must be distinct".into()));
            }
            let b = boxes[n];
            let hi = [b[3].max(b[0]), b[4].max(b[1]), b[5].max(b[2])];
            let rows = [hi[0] - b[0], hi[1] - b[1]];
            objects.push(Object {
                lo: [b[0], b[1], b[2]],
                hi,
                rows,
                first: try_vec_zeroed(rows[0] * rows[1], "the rows of an object's box")?,
                next: Vec::new(),
                count: 0,
                stride: 1,
                reversed,
            });
        }
        walk(&view, &index, |slot, a, b, from, to| {
            objects[slot].count_run(a, b, from, to)
        });
        for o in objects.iter_mut() {
            o.rank_rows(sample)?;
        }
        Ok(Sampling {
            view,
            index,
            objects,
            position,
        })
    }

    /// The second walk: `keep(slot, place, (i, j, k))` for every pick.
    fn pick(&mut self, mut keep: impl FnMut(usize, usize, [usize; 3])) {
        let objects = &mut self.objects;
        walk(&self.view, &self.index, |slot, a, b, from, to| {
            objects[slot].rank_run(a, b, from, to, |place, at| keep(slot, place, at))
        });
    }
}

/// For each id, every `stride`-th of its voxels in C order within `boxes[n]`, where
/// `stride = max(1, count / sample)`: `(i, j, k)` in the logical axes. `view` is in
/// standard layout; `reversed` says its axes are the logical ones reversed (a
/// Fortran-ordered volume seen as C).
pub fn c_order_samples<T: Label>(
    view: ArrayView3<T>,
    reversed: bool,
    ids: &[T],
    boxes: &[Box3],
    sample: u64,
) -> KernelResult<Vec<Vec<[i64; 3]>>> {
    let mut sampling = Sampling::new(view, reversed, ids, boxes, sample)?;
    let mut found: Vec<Vec<[i64; 3]>> = try_with_capacity(ids.len(), "the samples")?;
    for o in &sampling.objects {
        found.push(try_vec_filled(o.picks(), [0i64; 3], "an object's sample")?);
    }
    sampling.pick(|slot, place, [i, j, k]| {
        found[slot][place] = [i as i64, j as i64, k as i64];
    });
    // Back in the callers' order.
    let mut out: Vec<Vec<[i64; 3]>> = try_vec_filled(ids.len(), Vec::new(), "the samples")?;
    for (slot, picks) in found.into_iter().enumerate() {
        out[sampling.position[slot]] = picks;
    }
    Ok(out)
}

/// Which side of a midline a voxel lies on: its world x against the midline's x at its
/// world z, in numpy's arithmetic to the last bit (so that a share equals
/// `np.mean(x > np.interp(z, levels, mid))` over the same picks).
pub struct Midline {
    /// Coefficients of the logical axes used (the last `x.len() - 1`), then the offset:
    /// `x = ((c0 * x[0] + c1 * x[1]) + c2 * x[2]) + x[3]`, summed left to right as numpy
    /// sums arrays axis by axis.
    pub x: Vec<f64>,
    pub z: Vec<f64>,
    /// Ascending world z of the levels, and the midline's x at each.
    pub levels: Vec<f64>,
    pub mid: Vec<f64>,
}

impl Midline {
    /// A midline whose rows and levels are checked (see [`Midline::axes`]).
    pub fn new(x: Vec<f64>, z: Vec<f64>, levels: Vec<f64>, mid: Vec<f64>) -> KernelResult<Self> {
        let midline = Midline { x, z, levels, mid };
        midline.axes()?;
        Ok(midline)
    }

    /// How many logical axes the world rows use (1 to 3): each row holds one coefficient
    /// per axis and an offset; the levels are not empty and have as many x values.
    pub fn axes(&self) -> KernelResult<usize> {
        let axes = self.x.len().saturating_sub(1);
        if !(1..=3).contains(&axes) || self.z.len() != self.x.len() {
            return Err(KernelError::InvalidArgument(
                "the world rows need one coefficient per axis and an offset".into(),
            ));
        }
        if self.levels.is_empty() || self.levels.len() != self.mid.len() {
            return Err(KernelError::InvalidArgument(format!(
                "the midline needs levels and as many x values, got {} and {}",
                self.levels.len(),
                self.mid.len()
            )));
        }
        Ok(axes)
    }

    /// `row` applied to the index, summed axis by axis as numpy does.
    #[inline(always)]
    fn world(row: &[f64], at: [usize; 3]) -> f64 {
        let [i, j, k] = at.map(|c| c as f64);
        match *row {
            [c0, c1, c2, offset] => ((i * c0 + j * c1) + k * c2) + offset,
            [c1, c2, offset] => (j * c1 + k * c2) + offset,
            [c2, offset] => k * c2 + offset,
            _ => {
                unreachable!("the rows are checked to hold one to three coefficients and an offset")
            }
        }
    }

    /// `np.interp(z, levels, mid)`: constant beyond the ends, exact at a level.
    fn at(&self, z: f64) -> f64 {
        let (xp, fp) = (&self.levels, &self.mid);
        let last = xp.len() - 1;
        if last == 0 {
            return fp[0];
        }
        if z.is_nan() {
            return z;
        }
        let above = xp.partition_point(|&level| level <= z);
        if above == 0 {
            return fp[0];
        }
        let j = above - 1;
        if j >= last || xp[j] == z {
            return fp[j.min(last)];
        }
        let slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
        let value = slope * (z - xp[j]) + fp[j];
        if !value.is_nan() {
            return value;
        }
        let value = slope * (z - xp[j + 1]) + fp[j + 1];
        if value.is_nan() && fp[j] == fp[j + 1] {
            fp[j]
        } else {
            value
        }
    }

    /// Whether the voxel at `at` lies right of the midline. `last` holds the latest world z
    /// and the midline's x there: the picks of a run share their z whenever the affine
    /// does not tilt z along the run (every axis-aligned volume), and the same z gives the
    /// same x to the bit, so the search among the levels is skipped.
    #[inline(always)]
    fn right(&self, at: [usize; 3], last: &mut (f64, f64)) -> bool {
        let z = Self::world(&self.z, at);
        if z.to_bits() != last.0.to_bits() {
            *last = (z, self.at(z));
        }
        Self::world(&self.x, at) > last.1
    }
}

/// For each id, (picks right of the midline, picks) over the voxels [`c_order_samples`]
/// picks, without keeping them: two walks of the volume and no memory per voxel.
pub fn c_order_side_counts<T: Label>(
    view: ArrayView3<T>,
    reversed: bool,
    ids: &[T],
    boxes: &[Box3],
    sample: u64,
    midline: &Midline,
) -> KernelResult<Vec<(u64, u64)>> {
    midline.axes()?;
    let mut sampling = Sampling::new(view, reversed, ids, boxes, sample)?;
    let mut right = try_vec_zeroed::<u64>(ids.len(), "the side counts")?;
    // Nothing remembered yet: a NaN. Should the first z have exactly these bits, it is
    // NaN too, whose interpolation is NaN, so the remembered x is still right.
    let mut last = (f64::NAN, f64::NAN);
    sampling.pick(|slot, _, at| {
        if midline.right(at, &mut last) {
            right[slot] += 1;
        }
    });
    let mut out = try_vec_filled(ids.len(), (0u64, 0u64), "the side counts")?;
    for (slot, o) in sampling.objects.iter().enumerate() {
        out[sampling.position[slot]] =
            (right[slot], if o.count == 0 { 0 } else { o.picks() as u64 });
    }
    Ok(out)
}

/// For each id, (voxels right of the midline, voxels): every voxel of the object, in
/// one walk of the volume in its memory order, slab by slab on the kernel threads.
///
/// A run along a lane at one world z (the affine does not tilt z along the lane: every
/// axis-aligned volume) is counted without visiting its voxels: its world x, evaluated
/// as `Midline::world` does, never decreases (or never increases) along the lane,
/// since each rounded product and sum is monotone in the index, so the voxels right of
/// the midline are one end of the run, found by bisection on the same comparison a voxel
/// gets. A lane that tilts z is compared voxel by voxel. Either way each count equals
/// `(x > np.interp(z, levels, mid)).sum()` over the object's voxels in numpy's arithmetic.
pub fn side_counts<T: Label>(
    view: ArrayView3<T>,
    reversed: bool,
    ids: &[T],
    midline: &Midline,
) -> KernelResult<Vec<(u64, u64)>> {
    let axes = midline.axes()?;
    if !view.is_standard_layout() {
        return Err(KernelError::InvalidArgument(
            "side_counts walks a volume in its memory order: C or Fortran contiguous".into(),
        ));
    }
    let index = LabelIndex::new(ids.to_vec())?;
    // The lane's logical axis, and its coefficient in each world row (rows name the
    // last `axes` logical axes).
    let lane_axis: usize = if reversed { 0 } else { 2 };
    let coefficient = |row: &[f64]| -> f64 {
        match lane_axis.checked_sub(3 - axes) {
            Some(at) => row[at],
            None => 0.0, // an axis the rows do not use: the lane moves nothing
        }
    };
    // Bisection rests on finite rows (an infinite coefficient can give NaN at index 0).
    let finite = midline.x.iter().chain(&midline.z).all(|c| c.is_finite());
    let flat_z = finite && coefficient(&midline.z) == 0.0;
    let (n0, n1, n2) = view.dim();
    if n0 * n1 * n2 == 0 {
        return Ok(vec![(0, 0); ids.len()]);
    }
    let slabs = fixed_slabs([n0, n1, n2]);
    let partial: Vec<KernelResult<Vec<(u64, u64)>>> = slabs
        .par_iter()
        .map(|&(first, last)| {
            let mut counts =
                try_vec_filled(index.len(), (0u64, 0u64), "the side counts of a slab")?;
            let mut remembered = (f64::NAN, f64::NAN);
            // Slab bounds count lanes (rows of the standard-layout view).
            walk_lanes(&view, &index, first..last, |slot, a, b, from, to| {
                // Logical (i, j, k) of the lane's voxel at `c`.
                let at = |c: usize| if reversed { [c, b, a] } else { [a, b, c] };
                let right = if flat_z {
                    // One z along the run: one midline x, one monotone comparison.
                    let z = Midline::world(&midline.z, at(from));
                    if z.to_bits() != remembered.0.to_bits() {
                        remembered = (z, midline.at(z));
                    }
                    let mid = remembered.1;
                    let is_right = |l: usize| Midline::world(&midline.x, at(l)) > mid;
                    let (head, tail) = (is_right(from), is_right(to - 1));
                    if head == tail {
                        if head {
                            to - from
                        } else {
                            0
                        }
                    } else {
                        // First index whose answer differs from the head's.
                        let (mut lo, mut hi) = (from + 1, to - 1);
                        while lo < hi {
                            let m = lo + (hi - lo) / 2;
                            if is_right(m) == head {
                                lo = m + 1;
                            } else {
                                hi = m;
                            }
                        }
                        if head {
                            lo - from
                        } else {
                            to - lo
                        }
                    }
                } else {
                    (from..to)
                        .filter(|&l| midline.right(at(l), &mut remembered))
                        .count()
                };
                counts[slot].0 += right as u64;
                counts[slot].1 += (to - from) as u64;
            });
            Ok(counts)
        })
        .collect();
    let mut total = try_vec_filled(index.len(), (0u64, 0u64), "the side counts")?;
    for slab in partial {
        for (sum, (right, n)) in total.iter_mut().zip(slab?) {
            sum.0 += right;
            sum.1 += n;
        }
    }
    // Back in the callers' order.
    ids.iter()
        .map(|id| {
            index.get(*id).map(|slot| total[slot]).ok_or_else(|| {
                KernelError::InvalidArgument("an id is missing from its own index".into())
            })
        })
        .collect()
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

    #[test]
    fn side_counts_place_the_same_picks() {
        let labels =
            Array3::from_shape_fn((7, 6, 9), |(i, j, k)| ((i * 7 + j * 3 + k * 5) % 4) as u8);
        let boxes = [[0, 0, 0, 7, 6, 9], [1, 2, 0, 6, 6, 8], [0, 0, 0, 7, 6, 9]];
        let ids = [1u8, 2, 3];
        let fortran = labels
            .view()
            .reversed_axes()
            .as_standard_layout()
            .into_owned();
        // x = k - 4.5, right of a midline at x = 0 below z = 2, at x = 2 from z = 4 up; z
        // along the first axis (constant along C runs), then tilted (z changes within runs
        // in either memory order, so no remembered level may be reused).
        for (z_row, z_of) in [
            (
                vec![1.0, 0.0, 0.0, 0.0],
                (|p: &[i64; 3]| p[0] as f64) as fn(&[i64; 3]) -> f64,
            ),
            (vec![0.5, 0.0, 0.75, 0.0], |p: &[i64; 3]| {
                0.5 * p[0] as f64 + 0.75 * p[2] as f64
            }),
        ] {
            let midline = Midline {
                x: vec![0.0, 0.0, 1.0, -4.5],
                z: z_row,
                levels: vec![2.0, 4.0],
                mid: vec![0.0, 2.0],
            };
            let counts =
                c_order_side_counts(labels.view(), false, &ids, &boxes, 5, &midline).unwrap();
            let reversed =
                c_order_side_counts(fortran.view(), true, &ids, &boxes, 5, &midline).unwrap();
            let samples = c_order_samples(labels.view(), false, &ids, &boxes, 5).unwrap();
            for (n, picks) in samples.iter().enumerate() {
                let right = picks
                    .iter()
                    .filter(|p| {
                        let (x, z) = (p[2] as f64 - 4.5, z_of(p));
                        let mid = if z <= 2.0 {
                            0.0
                        } else if z >= 4.0 {
                            2.0
                        } else {
                            z - 2.0
                        };
                        x > mid
                    })
                    .count() as u64;
                assert_eq!(counts[n], (right, picks.len() as u64), "id {}", ids[n]);
                assert_eq!(reversed[n], counts[n], "id {}, Fortran", ids[n]);
            }
        }
    }

    #[test]
    fn exact_side_counts_are_every_voxel_compared() {
        // Runs long enough to cross the midline inside them, along either memory order's
        // lanes; x grows along k, falls along i.
        let labels = Array3::from_shape_fn((9, 5, 23), |(i, j, k)| {
            if (i + j) % 4 == 3 {
                0u16
            } else {
                1 + ((i / 3 + k / 8) % 3) as u16
            }
        });
        let fortran = labels
            .view()
            .reversed_axes()
            .as_standard_layout()
            .into_owned();
        let ids = [3u16, 1, 2, 7];
        let everything = [[0, 0, 0, 9, 5, 23]; 4];
        for (x_row, z_row) in [
            // z along j only: every lane of either order at one z (bisected runs).
            (vec![-0.7, 0.1, 0.9, -6.0], vec![0.0, 1.5, 0.0, 0.25]),
            // x constant along the lanes of the Fortran order.
            (vec![0.0, 0.3, 1.1, -12.0], vec![0.0, 2.0, 0.0, 0.0]),
            // z tilted along both lane axes: voxel by voxel.
            (vec![0.4, -0.2, 0.8, -7.0], vec![0.5, 1.0, 0.75, 0.0]),
        ] {
            let midline = Midline {
                x: x_row,
                z: z_row,
                levels: vec![1.0, 3.0, 6.5],
                mid: vec![0.5, -1.0, 2.25],
            };
            let expected =
                c_order_side_counts(labels.view(), false, &ids, &everything, u64::MAX, &midline)
                    .unwrap();
            assert!(expected
                .iter()
                .take(3)
                .all(|&(right, n)| right > 0 && right < n));
            assert_eq!(expected[3], (0, 0), "an absent id has no voxels");
            assert_eq!(
                side_counts(labels.view(), false, &ids, &midline).unwrap(),
                expected
            );
            assert_eq!(
                side_counts(fortran.view(), true, &ids, &midline).unwrap(),
                expected
            );
        }
    }
}
