//! Connected-component labelling by runs.
//!
//! A row is scanned once into runs of equal nonzero value; each run is unioned with
//! the runs it touches in the already-scanned neighbouring rows (the row above in the
//! same plane, and up to three rows of the previous plane). The volume is cut into
//! fixed slabs of whole planes (or of rows, for a single plane) that are scanned and
//! unioned in parallel, after which the seams between slabs are unioned serially.
//!
//! Union-find always links the larger run index under the smaller, so every
//! component's root is its first run in raster order whatever the order of unions,
//! and hence whatever the number of threads. Final labels `1..=N` follow the order
//! of each component's first voxel in the raster order of the view handed in
//! (C order of its shape).

use std::collections::HashMap;

use ndarray::{s, ArrayView3, ArrayViewMut3, Axis};
use rayon::prelude::*;

use crate::alloc::{
    try_collect_exact, try_push, try_reserve, try_vec_filled, try_vec_zeroed, try_with_capacity,
};
use crate::error::{KernelError, KernelResult};
use crate::label::{run_end, run_end_nonzero, skip_zeros, Label};

/// Which voxels count as neighbours.
///
/// 2D images are volumes with one plane, so 4-connectivity is `Face` and
/// 8-connectivity is `Vertex` (in a single plane `Edge` and `Vertex` coincide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Share a face: 6 neighbours in 3D, 4 in 2D.
    Face,
    /// Share a face or an edge: 18 neighbours in 3D.
    Edge,
    /// Share a face, edge or corner: 26 neighbours in 3D, 8 in 2D.
    Vertex,
}

impl Connectivity {
    /// Parses the neighbour count users pass (`4 | 8` for 2D, `6 | 18 | 26` for 3D).
    pub fn from_count(ndim: usize, count: u32) -> KernelResult<Self> {
        match (ndim, count) {
            (2, 4) | (3, 6) => Ok(Connectivity::Face),
            (3, 18) => Ok(Connectivity::Edge),
            (2, 8) | (3, 26) => Ok(Connectivity::Vertex),
            (2, c) => Err(KernelError::InvalidArgument(format!(
                "connectivity must be 4 or 8 for 2D, got {c}"
            ))),
            (3, c) => Err(KernelError::InvalidArgument(format!(
                "connectivity must be 6, 18 or 26 for 3D, got {c}"
            ))),
            (d, _) => Err(KernelError::InvalidArgument(format!(
                "masks must be 2D or 3D, got {d} dimensions"
            ))),
        }
    }

    /// The already-scanned neighbour rows of a row, as `(dz, dy, touches_diagonally)`.
    /// With `touches_diagonally` two runs join when they overlap or merely touch at a
    /// corner (their x ranges are adjacent); without it they must share a column.
    fn previous_rows(self) -> &'static [(isize, isize, bool)] {
        match self {
            Connectivity::Face => &[(0, -1, false), (-1, 0, false)],
            Connectivity::Edge => &[
                (0, -1, true),
                (-1, -1, false),
                (-1, 0, true),
                (-1, 1, false),
            ],
            Connectivity::Vertex => &[(0, -1, true), (-1, -1, true), (-1, 0, true), (-1, 1, true)],
        }
    }
}

/// A maximal run of equal nonzero values `value` in one row, columns `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Run<T> {
    pub start: u32,
    pub end: u32,
    pub value: T,
}

/// The runs of a contiguous block of rows.
#[derive(Debug, Clone)]
pub struct Slab<T> {
    /// Global index (`z * ny + y`) of the slab's first row.
    pub first_row: usize,
    /// `row_start[i]..row_start[i + 1]` are the runs of the slab's row `i`.
    pub row_start: Vec<u32>,
    pub runs: Vec<Run<T>>,
}

impl<T> Slab<T> {
    /// The runs of the slab's `i`-th row.
    #[inline]
    pub fn row(&self, i: usize) -> &[Run<T>] {
        &self.runs[self.row_start[i] as usize..self.row_start[i + 1] as usize]
    }

    /// Number of rows in the slab.
    pub fn n_rows(&self) -> usize {
        self.row_start.len() - 1
    }
}

/// The run decomposition of a volume and the component label of every run.
#[derive(Debug, Clone)]
pub struct RunLabels<T> {
    pub shape: [usize; 3],
    pub slabs: Vec<Slab<T>>,
    /// `labels[slab_offset[k] + i]` is the label (1..=n) of run `i` of slab `k`.
    pub labels: Vec<u32>,
    pub slab_offset: Vec<usize>,
    /// Number of components.
    pub n: u32,
}

/// Below this many voxels a volume is labelled on one thread: splitting costs more
/// than it saves.
const PARALLEL_MIN_VOXELS: usize = 1 << 18;

/// The object of every component (`values[c]`: its label, entry 0 the background's) under
/// `policy[label]`: 1 one object for all the label's components, 2 an object per component,
/// anything else (or a label without a rule) none. Objects are numbered `1..` in ascending
/// label, then component, order; returns `(owners, number of objects)` with `owners[0]` = 0.
pub fn group_components<T: Label>(
    values: &[T],
    policy: &HashMap<i128, u8>,
) -> KernelResult<(Vec<u32>, u64)> {
    let mut order: Vec<u32> = try_collect_exact(1..values.len() as u32, "the components' order")?;
    order.sort_unstable_by_key(|&c| (values[c as usize].key(), c));
    let mut owners = try_vec_zeroed::<u32>(values.len(), "the components' objects")?;
    let (mut objects, mut last): (u32, Option<i128>) = (0, None);
    for c in order {
        let key = values[c as usize].key();
        let rule = policy.get(&key).copied().unwrap_or(0);
        match rule {
            1 if last == Some(key) => owners[c as usize] = objects,
            1 | 2 => {
                objects += 1;
                owners[c as usize] = objects;
            }
            _ => {}
        }
        last = Some(key);
    }
    Ok((owners, objects as u64))
}

/// Number of slabs the row sequence is cut into: several per thread for balance.
fn slab_count(shape: [usize; 3]) -> usize {
    let voxels = shape.iter().product::<usize>();
    if voxels < PARALLEL_MIN_VOXELS {
        return 1;
    }
    let units = if shape[0] > 1 { shape[0] } else { shape[1] };
    (rayon::current_num_threads() * 4).clamp(1, units.max(1))
}

/// Cuts the `nz * ny` rows of a volume into at most `n` contiguous blocks: on whole
/// planes for volumes, on rows for a single plane. Never returns an empty list for a
/// volume with rows.
pub fn slab_bounds(shape: [usize; 3], n: usize) -> Vec<(usize, usize)> {
    let [nz, ny, _] = shape;
    let (unit, units) = if nz > 1 { (ny, nz) } else { (1, nz * ny) };
    let n = n.clamp(1, units.max(1));
    let bounds: Vec<(usize, usize)> = (0..n)
        .map(|k| (k * units / n * unit, (k + 1) * units / n * unit))
        .filter(|(a, b)| a < b)
        .collect();
    if bounds.is_empty() {
        vec![(0, nz * ny)]
    } else {
        bounds
    }
}

/// Slabs for kernels that merge floating-point or hashed partial results: a fixed
/// count (16 for volumes of 2^20 voxels or more, else 1) that does not depend on the
/// thread count, so results are identical on any machine.
pub fn fixed_slabs(shape: [usize; 3]) -> Vec<(usize, usize)> {
    let n = if shape.iter().product::<usize>() < (1 << 20) {
        1
    } else {
        16
    };
    slab_bounds(shape, n)
}

/// Appends the runs of one row. In `binary` mode every nonzero value joins one run
/// (stored with the first value seen); otherwise a run holds one value.
/// `runs` grows fallibly, by the amortised doubling of `Vec::push`.
#[inline]
pub fn push_runs<T: Label>(row: &[T], binary: bool, runs: &mut Vec<Run<T>>) -> KernelResult<()> {
    let n = row.len();
    let mut x = skip_zeros(row, 0);
    while x < n {
        let value = row[x];
        let start = x;
        x += 1;
        x = if binary {
            run_end_nonzero(row, x)
        } else {
            run_end(row, x, value)
        };
        try_push(
            runs,
            Run {
                start: start as u32,
                end: x as u32,
                value,
            },
            "the runs of the mask",
        )?;
        if x < n && row[x].is_zero() {
            x = skip_zeros(row, x);
        }
    }
    Ok(())
}

/// Calls `f(z, y, row)` for each row `first..last` of the view (global row index
/// `z * ny + y`), as a contiguous slice; rows that are not contiguous in memory are
/// copied into a reusable buffer first. Stops at the first error `f` returns.
pub fn for_each_row<T: Label, F: FnMut(usize, usize, &[T]) -> KernelResult<()>>(
    view: &ArrayView3<T>,
    first: usize,
    last: usize,
    mut f: F,
) -> KernelResult<()> {
    let ny = view.shape()[1];
    if ny == 0 {
        return Ok(());
    }
    let mut buf: Vec<T> = Vec::new();
    for r in first..last {
        let (z, y) = (r / ny, r % ny);
        let row = view.slice(s![z, y, ..]);
        match row.as_slice() {
            Some(slice) => f(z, y, slice)?,
            None => {
                buf.clear();
                try_reserve(&mut buf, row.len(), "a copy of a row")?;
                buf.extend(row.iter().copied());
                f(z, y, &buf)?;
            }
        }
    }
    Ok(())
}

/// Scans rows `first..last` into a slab of runs.
fn scan_slab<T: Label>(
    view: &ArrayView3<T>,
    first: usize,
    last: usize,
    binary: bool,
) -> KernelResult<Slab<T>> {
    let mut row_start = try_with_capacity(last - first + 1, "the row index of a slab")?;
    let mut runs = Vec::new();
    row_start.push(0u32);
    for_each_row(view, first, last, |_, _, row| {
        push_runs(row, binary, &mut runs)?;
        // Overflow is checked by the caller once the total is known; saturate here.
        row_start.push(u32::try_from(runs.len()).unwrap_or(u32::MAX));
        Ok(())
    })?;
    Ok(Slab {
        first_row: first,
        row_start,
        runs,
    })
}

#[inline]
fn find(parent: &mut [u32], mut i: u32) -> u32 {
    while parent[i as usize] != i {
        let p = parent[i as usize];
        let gp = parent[p as usize];
        parent[i as usize] = gp;
        i = gp;
    }
    i
}

/// Links the sets of `a` and `b`, keeping the smaller root, so a root is always the
/// first run of its component in raster order.
#[inline]
fn union(parent: &mut [u32], a: u32, b: u32) {
    let ra = find(parent, a);
    let rb = find(parent, b);
    if ra < rb {
        parent[rb as usize] = ra;
    } else if rb < ra {
        parent[ra as usize] = rb;
    }
}

/// Unions every run of `cur` with the runs of `prev` that it touches.
/// `cur_base`/`prev_base` are the parent-array indices of each slice's first run.
#[inline]
fn union_rows<T: Label>(
    parent: &mut [u32],
    cur: &[Run<T>],
    cur_base: u32,
    prev: &[Run<T>],
    prev_base: u32,
    diagonal: bool,
    binary: bool,
) {
    let reach = diagonal as u32;
    let mut j = 0;
    for (i, a) in cur.iter().enumerate() {
        while j < prev.len() && prev[j].end + reach <= a.start {
            j += 1;
        }
        let mut k = j;
        while k < prev.len() && prev[k].start < a.end + reach {
            if binary || prev[k].value == a.value {
                union(parent, cur_base + i as u32, prev_base + k as u32);
            }
            k += 1;
        }
    }
}

/// The global index of the neighbour row `(z + dz, y + dy)`, if inside the volume.
#[inline]
fn neighbour_row(row: usize, ny: usize, dz: isize, dy: isize) -> Option<usize> {
    let (z, y) = ((row / ny) as isize, (row % ny) as isize);
    let (nz_, ny_) = (z + dz, y + dy);
    (nz_ >= 0 && ny_ >= 0 && (ny_ as usize) < ny).then(|| nz_ as usize * ny + ny_ as usize)
}

/// Labels the connected components of `view`: voxels of equal nonzero value that
/// touch under `connectivity` (any nonzero voxels when `binary`).
///
/// Returns the runs of the volume with the label of each; write them out with
/// [`RunLabels::write`]. Cost: one read of the volume, O(runs) memory and
/// near-linear union-find work in the number of runs. Errors with
/// [`KernelError::Overflow`] if the volume has 2^32 − 1 runs or more, and with
/// [`KernelError::OutOfMemory`] if its runs or union-find arrays cannot be allocated.
pub fn label_runs<T: Label>(
    view: ArrayView3<T>,
    connectivity: Connectivity,
    binary: bool,
) -> KernelResult<RunLabels<T>> {
    let shape = [view.shape()[0], view.shape()[1], view.shape()[2]];
    let [nz, ny, nx] = shape;
    if nx >= u32::MAX as usize {
        return Err(KernelError::Overflow(format!(
            "rows of {nx} voxels are longer than the labeller supports (2^32 - 2)"
        )));
    }
    let n_rows = nz * ny;
    if n_rows == 0 || nx == 0 {
        return Ok(RunLabels {
            shape,
            slabs: vec![Slab {
                first_row: 0,
                row_start: try_vec_zeroed(n_rows + 1, "the row index of a slab")?,
                runs: Vec::new(),
            }],
            labels: Vec::new(),
            slab_offset: vec![0],
            n: 0,
        });
    }
    let bounds = slab_bounds(shape, slab_count(shape));

    // Scan and union inside each slab in parallel, with a slab-local parent array.
    let neighbours = connectivity.previous_rows();
    let scanned: Vec<(Slab<T>, Vec<u32>)> = bounds
        .par_iter()
        .map(|&(first, last)| {
            let slab = scan_slab(&view, first, last, binary)?;
            let mut parent: Vec<u32> = try_collect_exact(
                0..slab.runs.len() as u32,
                "the union-find parents of a slab",
            )?;
            for r in first..last {
                let cur = slab.row(r - first);
                if cur.is_empty() {
                    continue;
                }
                let cur_base = slab.row_start[r - first];
                for &(dz, dy, diagonal) in neighbours {
                    if let Some(p) = neighbour_row(r, ny, dz, dy).filter(|&p| p >= first) {
                        let prev = slab.row(p - first);
                        let prev_base = slab.row_start[p - first];
                        union_rows(
                            &mut parent,
                            cur,
                            cur_base,
                            prev,
                            prev_base,
                            diagonal,
                            binary,
                        );
                    }
                }
            }
            Ok((slab, parent))
        })
        .collect::<KernelResult<_>>()?;

    let total: usize = scanned.iter().map(|(s, _)| s.runs.len()).sum();
    if total >= u32::MAX as usize {
        return Err(KernelError::Overflow(format!(
            "the mask has {total} runs of foreground; the labeller supports fewer than 2^32 - 1"
        )));
    }

    // One global parent array, slab-local indices shifted by each slab's offset.
    let mut slab_offset = Vec::with_capacity(scanned.len());
    let mut parent: Vec<u32> = try_with_capacity(total, "the union-find parents")?;
    let mut slabs = Vec::with_capacity(scanned.len());
    for (slab, local) in scanned {
        let base = parent.len() as u32;
        slab_offset.push(parent.len());
        parent.extend(local.iter().map(|&p| p + base));
        slabs.push(slab);
    }

    // Seams: rows of slab k whose neighbours lie in earlier slabs.
    for k in 1..slabs.len() {
        let first = slabs[k].first_row;
        let last = first + slabs[k].n_rows();
        for r in first..last.min(first + ny + 1) {
            let cur = slabs[k].row(r - first);
            if cur.is_empty() {
                continue;
            }
            let cur_base = (slab_offset[k] + slabs[k].row_start[r - first] as usize) as u32;
            for &(dz, dy, diagonal) in neighbours {
                let Some(p) = neighbour_row(r, ny, dz, dy).filter(|&p| p < first) else {
                    continue;
                };
                let j = slabs.partition_point(|s| s.first_row <= p) - 1;
                let prev_slab = &slabs[j];
                let prev = prev_slab.row(p - prev_slab.first_row);
                let prev_base =
                    (slab_offset[j] + prev_slab.row_start[p - prev_slab.first_row] as usize) as u32;
                union_rows(
                    &mut parent,
                    cur,
                    cur_base,
                    prev,
                    prev_base,
                    diagonal,
                    binary,
                );
            }
        }
    }

    // Roots are first runs, and every parent precedes its child, so one forward pass
    // turns parents into labels numbered in order of first appearance.
    let mut n: u32 = 0;
    for i in 0..parent.len() {
        let p = parent[i] as usize;
        parent[i] = if p == i {
            n += 1;
            n
        } else {
            parent[p]
        };
    }

    Ok(RunLabels {
        shape,
        slabs,
        labels: parent,
        slab_offset,
        n,
    })
}

/// An output element type for label images.
pub trait OutLabel: Copy + Send + Sync + Default {
    /// The largest label representable.
    const MAX: u64;
    fn from_u32(v: u32) -> Self;
}

macro_rules! impl_out_label {
    ($($t:ty),*) => {$(
        impl OutLabel for $t {
            const MAX: u64 = <$t>::MAX as u64;
            #[inline(always)]
            fn from_u32(v: u32) -> Self { v as $t }
        }
    )*};
}
impl_out_label!(u8, u16, u32, u64);

impl<T: Label> RunLabels<T> {
    /// Splits a C-ordered volume buffer into the part each slab covers.
    fn slab_chunks<'a, U>(&self, mut rest: &'a mut [U]) -> Vec<&'a mut [U]> {
        let nx = self.shape[2];
        let mut chunks = Vec::with_capacity(self.slabs.len());
        for slab in &self.slabs {
            let (head, tail) = rest.split_at_mut(slab.n_rows() * nx);
            chunks.push(head);
            rest = tail;
        }
        chunks
    }

    /// Writes the label image into `out`, C-ordered over `shape`, which must be
    /// zero-filled and hold at least `n` (checked by the caller). Relabels through
    /// `map` when given: `map[label]` replaces each component's label (0 erases it).
    /// Cost: one write per foreground voxel, parallel over slabs.
    pub fn write<U: OutLabel>(&self, out: &mut [U], map: Option<&[u32]>) {
        let nx = self.shape[2];
        self.slab_chunks(out)
            .into_par_iter()
            .zip(self.slabs.par_iter().zip(self.slab_offset.par_iter()))
            .for_each(|(chunk, (slab, &offset))| {
                for i in 0..slab.n_rows() {
                    let row = &mut chunk[i * nx..(i + 1) * nx];
                    let base = offset + slab.row_start[i] as usize;
                    for (j, run) in slab.row(i).iter().enumerate() {
                        let mut label = self.labels[base + j];
                        if let Some(map) = map {
                            label = map[label as usize];
                        }
                        let v = U::from_u32(label);
                        row[run.start as usize..run.end as usize].fill(v);
                    }
                }
            });
    }

    /// Voxel count of every component: entry `l` is the size of label `l` (entry 0 unused).
    pub fn sizes(&self) -> KernelResult<Vec<u64>> {
        let mut sizes = try_vec_zeroed::<u64>(self.n as usize + 1, "the component sizes")?;
        for (slab, &offset) in self.slabs.iter().zip(&self.slab_offset) {
            for (j, run) in slab.runs.iter().enumerate() {
                sizes[self.labels[offset + j] as usize] += (run.end - run.start) as u64;
            }
        }
        Ok(sizes)
    }

    /// The value of every component's voxels: entry `l` is label `l`'s (entry 0, the
    /// background's, is zero). Without `binary` all runs of a component share their value,
    /// so a label map's components say which label each belongs to without another pass.
    pub fn values(&self) -> KernelResult<Vec<T>> {
        let mut values = try_vec_filled(self.n as usize + 1, T::ZERO, "the component values")?;
        for (slab, &offset) in self.slabs.iter().zip(&self.slab_offset) {
            for (j, run) in slab.runs.iter().enumerate() {
                values[self.labels[offset + j] as usize] = run.value;
            }
        }
        Ok(values)
    }

    /// Which components [`dust`](RunLabels::erase) keeps: those of `threshold` voxels or
    /// more (with `invert`, those below it), indexed by label (entry 0 unused).
    pub fn keep_by_size(&self, threshold: u64, invert: bool) -> KernelResult<Vec<bool>> {
        try_collect_exact(
            self.sizes()?.iter().map(|&s| (s >= threshold) != invert),
            "the components to keep",
        )
    }

    /// Sets to zero every voxel of each component whose label maps to `false` in
    /// `keep`; the voxels of kept components keep their values. `out` holds the
    /// volume's values in C order over `shape`.
    pub fn erase(&self, out: &mut [T], keep: &[bool]) {
        if let Ok(view) = ArrayViewMut3::from_shape(self.shape, out) {
            self.erase_view(view, keep);
        }
    }

    /// [`RunLabels::erase`] on a view of the labelled volume itself, with any strides
    /// (the volume is edited in place). Parallel over slabs.
    pub fn erase_view(&self, view: ArrayViewMut3<T>, keep: &[bool]) {
        // Slabs cover whole planes of a volume, rows of a single plane.
        let along = if self.shape[0] > 1 { Axis(0) } else { Axis(1) };
        let per_unit = if along == Axis(0) { self.shape[1] } else { 1 };
        let mut parts = Vec::with_capacity(self.slabs.len());
        let mut rest = view;
        for slab in &self.slabs {
            let units = slab.n_rows().checked_div(per_unit).unwrap_or(0);
            let units = units.min(rest.len_of(along));
            let (head, tail) = rest.split_at(along, units);
            parts.push(head);
            rest = tail;
        }
        parts
            .into_par_iter()
            .zip(self.slabs.par_iter().zip(self.slab_offset.par_iter()))
            .for_each(|(mut part, (slab, &offset))| {
                let ny = part.shape()[1].max(1);
                for i in 0..slab.n_rows() {
                    let mut row = part.slice_mut(s![i / ny, i % ny, ..]);
                    let base = offset + slab.row_start[i] as usize;
                    for (j, run) in slab.row(i).iter().enumerate() {
                        if !keep[self.labels[base + j] as usize] {
                            row.slice_mut(s![run.start as usize..run.end as usize])
                                .fill(T::ZERO);
                        }
                    }
                }
            });
    }
}

/// The `k` largest components, as a relabelling map from component label to
/// `1..=k` by decreasing size (ties: the component met first in raster order
/// first); every other component maps to 0.
pub fn largest_k_map(sizes: &[u64], k: usize) -> KernelResult<Vec<u32>> {
    let mut order: Vec<u32> = try_collect_exact(1..sizes.len() as u32, "the components by size")?;
    // No two labels compare equal, so the unstable sort (which, unlike the stable one,
    // allocates nothing) gives the one order there is.
    order.sort_unstable_by(|&a, &b| sizes[b as usize].cmp(&sizes[a as usize]).then(a.cmp(&b)));
    let mut map = try_vec_zeroed::<u32>(sizes.len(), "the relabelling map")?;
    for (rank, &label) in order.iter().take(k).enumerate() {
        map[label as usize] = rank as u32 + 1;
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, ShapeBuilder};

    fn label<T: Label>(a: &Array3<T>, c: Connectivity, binary: bool) -> (Vec<u32>, u32) {
        let rl = label_runs(a.view(), c, binary).unwrap();
        let mut out = vec![0u32; a.len()];
        rl.write(&mut out, None);
        (out, rl.n)
    }

    fn from_2d(rows: &[&str]) -> Array3<u8> {
        let ny = rows.len();
        let nx = rows[0].len();
        Array3::from_shape_fn((1, ny, nx), |(_, y, x)| {
            rows[y].as_bytes()[x].wrapping_sub(b'0') % 10
        })
    }

    #[test]
    fn components_grouped_into_objects() {
        // Components 1..=6 of labels 3, 1, 3, 2, 1, 7: label 1 one object, label 2 none,
        // label 3 one per component, label 7 past the table.
        let values = [0u8, 3, 1, 3, 2, 1, 7];
        let policy = HashMap::from([(1, 1), (2, 0), (3, 2)]);
        let (owners, n) = group_components(&values, &policy).unwrap();
        assert_eq!(owners, vec![0, 2, 1, 3, 0, 1, 0]);
        assert_eq!(n, 3);
        assert_eq!(group_components::<u8>(&[0], &policy).unwrap(), (vec![0], 0));
        // Labels past 2^63 (uint64 maps) have rules like any other.
        let huge = [0u64, u64::MAX, 5];
        let policy = HashMap::from([(u64::MAX as i128, 2), (5, 1)]);
        assert_eq!(
            group_components(&huge, &policy).unwrap(),
            (vec![0, 2, 1], 2)
        );
    }

    #[test]
    fn four_vs_eight_connectivity_in_a_plane() {
        let a = from_2d(&["1000", "0100", "0011"]);
        assert_eq!(label(&a, Connectivity::Face, false).1, 3);
        let (out, n) = label(&a, Connectivity::Vertex, false);
        assert_eq!(n, 1);
        assert_eq!(out.iter().filter(|&&v| v == 1).count(), 4);
    }

    #[test]
    fn multilabel_keeps_values_apart_unless_binary() {
        let a = from_2d(&["1122", "1122"]);
        assert_eq!(label(&a, Connectivity::Vertex, false).1, 2);
        assert_eq!(label(&a, Connectivity::Vertex, true).1, 1);
    }

    #[test]
    fn numbering_follows_first_voxel_in_raster_order() {
        // The U's right arm starts first but joins the left one further down.
        let a = from_2d(&["0101", "2101", "0111"]);
        let (out, n) = label(&a, Connectivity::Face, false);
        assert_eq!(n, 2);
        assert_eq!(out[1], 1); // first voxel of the U
        assert_eq!(out[4], 2); // the lone 2
        assert_eq!(out[3], 1);
    }

    #[test]
    fn three_d_connectivities() {
        // Two voxels touching at a corner, two at an edge.
        let mut a = Array3::<u8>::zeros((2, 3, 3));
        a[[0, 0, 0]] = 1;
        a[[1, 1, 1]] = 1; // corner contact with (0,0,0)
        a[[0, 2, 2]] = 1; // corner contact with (1,1,1)
        a[[1, 2, 1]] = 1; // face contact with (1,1,1), edge contact with (0,2,2)
        assert_eq!(label(&a, Connectivity::Face, false).1, 3);
        assert_eq!(label(&a, Connectivity::Edge, false).1, 2);
        assert_eq!(label(&a, Connectivity::Vertex, false).1, 1);
    }

    #[test]
    fn fortran_and_strided_views_label_like_contiguous() {
        let c = Array3::from_shape_fn((5, 6, 7), |(z, y, x)| {
            ((z * 7 + y * 3 + x * 5) % 4 == 0) as u8
        });
        let mut f = Array3::<u8>::zeros((5, 6, 7).f());
        f.assign(&c);
        assert_eq!(
            label(&c, Connectivity::Vertex, false),
            label(&f, Connectivity::Vertex, false)
        );
    }

    #[test]
    fn thread_count_does_not_change_labels() {
        let a = Array3::from_shape_fn((64, 64, 80), |(z, y, x)| {
            let h = (z * 73856093) ^ (y * 19349663) ^ (x * 83492791);
            ((h % 7) < 2) as u8 * (1 + (h % 3) as u8)
        });
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| label(&a, Connectivity::Vertex, false))
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn empty_and_zero_sized() {
        let a = Array3::<u8>::zeros((0, 4, 4));
        assert_eq!(label(&a, Connectivity::Vertex, false).1, 0);
        let a = Array3::<u8>::zeros((3, 0, 4));
        assert_eq!(label(&a, Connectivity::Vertex, false).1, 0);
        let a = Array3::<u8>::zeros((3, 4, 4));
        assert_eq!(label(&a, Connectivity::Vertex, false).1, 0);
    }

    #[test]
    fn sizes_dust_and_largest_k() {
        let a = from_2d(&["1101", "0001", "1001"]);
        let rl = label_runs(a.view(), Connectivity::Face, false).unwrap();
        assert_eq!(rl.sizes().unwrap(), vec![0, 2, 3, 1]);
        let map = largest_k_map(&rl.sizes().unwrap(), 2).unwrap();
        assert_eq!(map, vec![0, 2, 1, 0]);
        let mut kept = a.as_slice().unwrap().to_vec();
        rl.erase(&mut kept, &[false, true, true, false]);
        assert_eq!(kept, vec![1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
        // In place, through a Fortran-ordered array walked with reversed axes.
        let mut f = Array3::<u8>::zeros((1, 3, 4).f());
        f.assign(&a);
        let rl = label_runs(f.view().reversed_axes(), Connectivity::Face, false).unwrap();
        rl.erase_view(f.view_mut().reversed_axes(), &vec![true; rl.n as usize + 1]);
        assert_eq!(f, a);
        let small: Vec<bool> = rl.sizes().unwrap().iter().map(|&s| s >= 2).collect();
        rl.erase_view(f.view_mut().reversed_axes(), &small);
        assert_eq!(f.iter().filter(|&&v| v != 0).count(), 5);
    }

    #[test]
    fn connectivity_counts_are_validated() {
        assert!(Connectivity::from_count(2, 6).is_err());
        assert!(Connectivity::from_count(3, 8).is_err());
        assert!(Connectivity::from_count(4, 8).is_err());
        assert_eq!(
            Connectivity::from_count(2, 8).unwrap(),
            Connectivity::Vertex
        );
    }
}
