//! Region statistics in one pass over a label map: voxel counts, boxes, centroids,
//! second moments and intensity statistics, accumulated per run of equal label.
//!
//! Moments are summed as exact integers (a run contributes closed-form sums of `x`
//! and `x²`), so centroids and covariances carry no rounding from the order of
//! summation: results are identical for any number of threads and exact to the last
//! bit of the final division.

use std::collections::HashMap;

use ndarray::ArrayView3;
use rayon::prelude::*;

use crate::alloc::{
    try_collect, try_push, try_reserve, try_reserve_map, try_vec_filled, try_with_capacity,
};
use crate::ccl::{fixed_slabs, for_each_row, push_runs, Run};
use crate::error::KernelResult;
use crate::label::{Label, LabelIndex};

/// Exact integer moments of one region, in index coordinates `(z, y, x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moments {
    pub count: u64,
    /// Inclusive minimum and maximum index per axis.
    pub min: [u32; 3],
    pub max: [u32; 3],
    /// Σz, Σy, Σx.
    pub s1: [u128; 3],
    /// Σzz, Σyy, Σxx, Σzy, Σzx, Σyx.
    pub s2: [u128; 6],
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            count: 0,
            min: [u32::MAX; 3],
            max: [0; 3],
            s1: [0; 3],
            s2: [0; 6],
        }
    }
}

/// Σ i for i in `start..end`, and Σ i² for i in `start..end`.
///
/// In 64-bit arithmetic for rows shorter than 2^20 voxels (every real image): a
/// 128-bit division is a library call, and this runs once per run.
#[inline(always)]
fn run_sums(start: u32, end: u32) -> (u128, u128) {
    if end < (1 << 20) {
        let (s, e) = (start as u64, end as u64);
        // (e − s)(s + e − 1) is always even: one factor of the two is.
        let sum = (e - s) * (s + e - 1) / 2;
        let sq = |n: u64| {
            if n == 0 {
                0
            } else {
                (n - 1) * n * (2 * n - 1) / 6
            }
        };
        (sum as u128, (sq(e) - sq(s)) as u128)
    } else {
        let (s, e) = (start as u128, end as u128);
        let sum = (e - s) * (s + e - 1) / 2;
        let sq = |n: u128| {
            if n == 0 {
                0
            } else {
                (n - 1) * n * (2 * n - 1) / 6
            }
        };
        (sum, sq(e) - sq(s))
    }
}

impl Moments {
    #[inline(always)]
    fn add_run(&mut self, z: u32, y: u32, start: u32, end: u32) {
        let len = (end - start) as u128;
        let (zz, yy) = (z as u128, y as u128);
        let (sx, sxx) = run_sums(start, end);
        self.count += len as u64;
        self.min = [
            self.min[0].min(z),
            self.min[1].min(y),
            self.min[2].min(start),
        ];
        self.max = [
            self.max[0].max(z),
            self.max[1].max(y),
            self.max[2].max(end - 1),
        ];
        self.s1[0] += zz * len;
        self.s1[1] += yy * len;
        self.s1[2] += sx;
        self.s2[0] += zz * zz * len;
        self.s2[1] += yy * yy * len;
        self.s2[2] += sxx;
        self.s2[3] += zz * yy * len;
        self.s2[4] += zz * sx;
        self.s2[5] += yy * sx;
    }

    fn merge(&mut self, o: &Moments) {
        self.count += o.count;
        for a in 0..3 {
            self.min[a] = self.min[a].min(o.min[a]);
            self.max[a] = self.max[a].max(o.max[a]);
            self.s1[a] += o.s1[a];
        }
        for k in 0..6 {
            self.s2[k] += o.s2[k];
        }
    }

    /// Centroid in index coordinates.
    pub fn centroid(&self) -> [f64; 3] {
        let n = self.count as f64;
        [
            self.s1[0] as f64 / n,
            self.s1[1] as f64 / n,
            self.s1[2] as f64 / n,
        ]
    }

    /// Population covariance of voxel-centre index coordinates, `[[zz, zy, zx], …]`,
    /// from the exact integer identity `N²·cov = N·Σab − Σa·Σb`.
    pub fn covariance(&self) -> [[f64; 3]; 3] {
        let n = self.count as i128;
        let s1 = self.s1.map(|v| v as i128);
        let s2 = self.s2.map(|v| v as i128);
        let c = |sab: i128, a: usize, b: usize| -> f64 {
            // N·Σab − Σa·Σb can exceed i128 only for volumes beyond 2^40 voxels a side.
            let num = n
                .saturating_mul(sab)
                .saturating_sub(s1[a].saturating_mul(s1[b]));
            num as f64 / (n as f64 * n as f64)
        };
        let (zz, yy, xx) = (c(s2[0], 0, 0), c(s2[1], 1, 1), c(s2[2], 2, 2));
        let (zy, zx, yx) = (c(s2[3], 0, 1), c(s2[4], 0, 2), c(s2[5], 1, 2));
        [[zz, zy, zx], [zy, yy, yx], [zx, yx, xx]]
    }
}

/// Running intensity statistics of one region (Chan et al.'s pairwise merge of mean
/// and squared deviations, so long sums of large values lose no precision).
#[derive(Debug, Clone, Copy)]
pub struct IntensityStats {
    pub count: u64,
    pub mean: f64,
    pub m2: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for IntensityStats {
    fn default() -> Self {
        IntensityStats {
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl IntensityStats {
    /// The statistics of `values` (taken twice: their mean, then the squared deviations
    /// from it with the extremes), merged into these.
    pub fn add_values<I: ExactSizeIterator<Item = f64> + Clone>(&mut self, values: I) {
        let count = values.len();
        if count == 0 {
            return;
        }
        let mean = values.clone().sum::<f64>() / count as f64;
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let m2 = values
            .map(|v| {
                lo = lo.min(v);
                hi = hi.max(v);
                (v - mean) * (v - mean)
            })
            .sum::<f64>();
        self.merge(&IntensityStats {
            count: count as u64,
            mean,
            m2,
            min: lo,
            max: hi,
        });
    }

    fn merge(&mut self, o: &IntensityStats) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *o;
            return;
        }
        let (na, nb) = (self.count as f64, o.count as f64);
        let n = na + nb;
        let delta = o.mean - self.mean;
        self.mean += delta * nb / n;
        self.m2 += o.m2 + delta * delta * na * nb / n;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Population standard deviation (divide by N), as numpy's `std`.
    pub fn std(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            (self.m2 / self.count as f64).max(0.0).sqrt()
        }
    }
}

/// A source of intensities as `f64`, whatever the intensity array's dtype.
pub trait IntensityRows: Sync {
    /// Merges the intensities of row `(z, y)` over `start..end` into `stats`.
    fn add_run(&self, stats: &mut IntensityStats, z: usize, y: usize, start: usize, end: usize);
}

/// Numeric element types an intensity image may have.
pub trait AsF64: Copy + Send + Sync {
    fn as_f64(self) -> f64;
}

macro_rules! impl_as_f64 {
    ($($t:ty),*) => {$(
        impl AsF64 for $t {
            #[inline(always)]
            fn as_f64(self) -> f64 { self as f64 }
        }
    )*};
}
impl_as_f64!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl AsF64 for bool {
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as u8 as f64
    }
}

impl<V: AsF64> IntensityRows for ArrayView3<'_, V> {
    /// Converts the run's values only (not its row), straight from the array.
    fn add_run(&self, stats: &mut IntensityStats, z: usize, y: usize, start: usize, end: usize) {
        let run = self.slice(ndarray::s![z, y, start..end]);
        match run.as_slice() {
            Some(values) => stats.add_values(values.iter().map(|v| v.as_f64())),
            None => stats.add_values(run.iter().map(|v| v.as_f64())),
        }
    }
}

/// The accumulated statistics of every region, one row per label in ascending order.
#[derive(Debug, Clone)]
pub struct RegionStats<T: Label> {
    pub index: LabelIndex<T>,
    pub moments: Vec<Moments>,
    /// Present when an intensity image was given.
    pub intensity: Option<Vec<IntensityStats>>,
}

/// Label values below this use a dense per-slab slot table; others a hash map.
const DENSE_LABELS: i128 = 1 << 24;

/// The regions met in one slab, in order of first appearance.
struct SlabRegions<T> {
    labels: Vec<T>,
    moments: Vec<Moments>,
    intensity: Vec<IntensityStats>,
}

/// Slot lookup for one slab: a dense table over a window of label values starting at
/// the first label the slab meets (label maps and component labels cluster, so the
/// window stays small), and a hash map for values outside it.
struct Slots {
    base: Option<i128>,
    dense: Vec<u32>,
    sparse: HashMap<i128, u32>,
}

impl Slots {
    fn new() -> Self {
        Slots {
            base: None,
            dense: Vec::new(),
            sparse: HashMap::new(),
        }
    }

    #[inline(always)]
    fn get_or_insert(&mut self, key: i128, next: u32) -> KernelResult<(u32, bool)> {
        // Start the window a little below the first label: neighbours numbered just
        // before it are common at slab seams.
        let base = *self.base.get_or_insert(key.saturating_sub(1024));
        let off = key.wrapping_sub(base);
        if (0..DENSE_LABELS).contains(&off) {
            let k = off as usize;
            if k >= self.dense.len() {
                self.grow_dense(k)?;
            }
            let slot = self.dense[k];
            if slot == u32::MAX {
                self.dense[k] = next;
                Ok((next, true))
            } else {
                Ok((slot, false))
            }
        } else {
            match self.sparse.get(&key) {
                Some(&slot) => Ok((slot, false)),
                None => {
                    try_reserve_map(&mut self.sparse, 1, "the label lookup of a slab")?;
                    self.sparse.insert(key, next);
                    Ok((next, true))
                }
            }
        }
    }

    /// Grows the dense window to cover offset `k` (rarely: it doubles).
    #[cold]
    fn grow_dense(&mut self, k: usize) -> KernelResult<()> {
        let len = (k + 1).next_power_of_two();
        let more = len - self.dense.len();
        try_reserve(&mut self.dense, more, "the label lookup of a slab")?;
        self.dense.resize(len, u32::MAX);
        Ok(())
    }
}

/// Accumulates the statistics of every distinct nonzero label of `labels`, with
/// intensity statistics when `intensity` is given (same shape, checked by the
/// caller).
///
/// Cost: one read of the label map (and of the intensity rows that hold foreground),
/// O(runs) arithmetic, O(regions) memory per slab in flight. Parallel over slabs.
/// Errors with [`crate::error::KernelError::OutOfMemory`] if a buffer cannot be allocated.
pub fn region_stats<T: Label>(
    labels: ArrayView3<T>,
    intensity: Option<&dyn IntensityRows>,
) -> KernelResult<RegionStats<T>> {
    let shape = [labels.shape()[0], labels.shape()[1], labels.shape()[2]];
    if shape.contains(&0) {
        return Ok(RegionStats {
            index: LabelIndex::new(Vec::new())?,
            moments: Vec::new(),
            intensity: intensity.map(|_| Vec::new()),
        });
    }
    let bounds = fixed_slabs(shape);
    let slabs: Vec<SlabRegions<T>> = bounds
        .par_iter()
        .map(|&(first, last)| scan_stats(&labels, intensity, first, last))
        .collect::<KernelResult<_>>()?;

    let all_labels: Vec<T> = try_collect(
        slabs.iter().flat_map(|s| s.labels.iter().copied()),
        "the labels of every slab",
    )?;
    let index = LabelIndex::new(all_labels)?;
    let mut moments = try_vec_filled(index.len(), Moments::default(), "the region moments")?;
    let mut stats = match intensity {
        Some(_) => Some(try_vec_filled(
            index.len(),
            IntensityStats::default(),
            "the region intensity statistics",
        )?),
        None => None,
    };
    for slab in &slabs {
        for (i, &label) in slab.labels.iter().enumerate() {
            // Every slab label went into the index just above.
            let Some(row) = index.get(label) else {
                continue;
            };
            moments[row].merge(&slab.moments[i]);
            if let Some(stats) = stats.as_mut() {
                stats[row].merge(&slab.intensity[i]);
            }
        }
    }
    Ok(RegionStats {
        index,
        moments,
        intensity: stats,
    })
}

fn scan_stats<T: Label>(
    labels: &ArrayView3<T>,
    intensity: Option<&dyn IntensityRows>,
    first: usize,
    last: usize,
) -> KernelResult<SlabRegions<T>> {
    let mut out = SlabRegions {
        labels: Vec::new(),
        moments: Vec::new(),
        intensity: Vec::new(),
    };
    let mut slots = Slots::new();
    let mut runs: Vec<Run<T>> = Vec::new();
    for_each_row(labels, first, last, |z, y, row| {
        runs.clear();
        push_runs(row, false, &mut runs)?;
        if runs.is_empty() {
            return Ok(());
        }
        for run in &runs {
            let (slot, new) = slots.get_or_insert(run.value.key(), out.labels.len() as u32)?;
            if new {
                try_push(&mut out.labels, run.value, "the labels of a slab")?;
                try_push(
                    &mut out.moments,
                    Moments::default(),
                    "the moments of a slab",
                )?;
                if intensity.is_some() {
                    try_push(
                        &mut out.intensity,
                        IntensityStats::default(),
                        "the intensity statistics of a slab",
                    )?;
                }
            }
            let slot = slot as usize;
            out.moments[slot].add_run(z as u32, y as u32, run.start, run.end);
            if let Some(src) = intensity {
                src.add_run(
                    &mut out.intensity[slot],
                    z,
                    y,
                    run.start as usize,
                    run.end as usize,
                );
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The distinct nonzero labels of a map, as an index (no statistics: one read of the
/// map and O(runs) lookups).
pub fn present_labels<T: Label>(labels: ArrayView3<T>) -> KernelResult<LabelIndex<T>> {
    let shape = [labels.shape()[0], labels.shape()[1], labels.shape()[2]];
    if shape.contains(&0) {
        return LabelIndex::new(Vec::new());
    }
    let found: Vec<Vec<T>> = fixed_slabs(shape)
        .par_iter()
        .map(|&(first, last)| {
            let mut slots = Slots::new();
            let mut seen = Vec::new();
            let mut runs: Vec<Run<T>> = Vec::new();
            for_each_row(&labels, first, last, |_, _, row| {
                runs.clear();
                push_runs(row, false, &mut runs)?;
                for run in &runs {
                    if slots.get_or_insert(run.value.key(), seen.len() as u32)?.1 {
                        try_push(&mut seen, run.value, "the labels of a slab")?;
                    }
                }
                Ok(())
            })?;
            Ok(seen)
        })
        .collect::<KernelResult<_>>()?;
    LabelIndex::new(try_collect(
        found.into_iter().flatten(),
        "the labels of every slab",
    )?)
}

/// Eigen-decomposition of a symmetric 3×3 matrix by cyclic Jacobi rotations.
///
/// Returns eigenvalues in descending order and the matching unit eigenvectors as
/// rows. Each eigenvector's sign is fixed so that its largest-magnitude component is
/// positive (the first such component on ties), so results are reproducible.
pub fn symmetric_eigen3(m: [[f64; 3]; 3]) -> ([f64; 3], [[f64; 3]; 3]) {
    let mut a = m;
    let mut v = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..50 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        let scale = a[0][0].abs() + a[1][1].abs() + a[2][2].abs();
        if off <= f64::EPSILON * 1e-3 * scale || off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A ← Jᵀ A J for the rotation J in the (p, q) plane: columns, then rows.
            for row in a.iter_mut() {
                let (akp, akq) = (row[p], row[q]);
                row[p] = c * akp - s * akq;
                row[q] = s * akp + c * akq;
            }
            let (rp, rq) = (a[p], a[q]);
            a[p] = std::array::from_fn(|k| c * rp[k] - s * rq[k]);
            a[q] = std::array::from_fn(|k| s * rp[k] + c * rq[k]);
            for row in v.iter_mut() {
                let (vp, vq) = (row[p], row[q]);
                row[p] = c * vp - s * vq;
                row[q] = s * vp + c * vq;
            }
        }
    }
    let mut order = [0usize, 1, 2];
    order.sort_by(|&i, &j| a[j][j].total_cmp(&a[i][i]));
    let values = order.map(|i| a[i][i]);
    let vectors = order.map(|i| {
        let mut e = [v[0][i], v[1][i], v[2][i]];
        let mut big = 0;
        for k in 1..3 {
            if e[k].abs() > e[big].abs() + 1e-12 {
                big = k;
            }
        }
        if e[big] < 0.0 {
            e = e.map(|c| -c);
        }
        e
    });
    (values, vectors)
}

/// Shape descriptors derived from second moments, in physical units.
#[derive(Debug, Clone, Copy)]
pub struct MomentShape {
    /// Eigenvalues of the physical covariance, descending (negative rounding clamped to 0).
    pub eigenvalues: [f64; 3],
    /// Unit eigenvectors as rows, matching `eigenvalues`, in array axis order.
    pub axes: [[f64; 3]; 3],
}

/// Eigen-analysis of a region's covariance after scaling index coordinates by
/// `spacing` (axis order `z, y, x`). With `planar`, the region lies in one `z`
/// plane and only the in-plane `(y, x)` block is analysed: its two axes come first
/// and the third eigenvalue is 0.
pub fn moment_shape(m: &Moments, spacing: [f64; 3], planar: bool) -> MomentShape {
    if m.count <= 1 {
        // A point has no extent; skip the eigen-solver (most regions of noisy masks).
        let axes = if planar {
            [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        } else {
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
        };
        return MomentShape {
            eigenvalues: [0.0; 3],
            axes,
        };
    }
    let cov = m.covariance();
    let mut phys = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            phys[i][j] = cov[i][j] * spacing[i] * spacing[j];
        }
    }
    if planar {
        // A negative variance along z sorts that axis last, after the in-plane ones.
        phys[0] = [-1.0, 0.0, 0.0];
        phys[1][0] = 0.0;
        phys[2][0] = 0.0;
    }
    let (values, axes) = symmetric_eigen3(phys);
    MomentShape {
        eigenvalues: values.map(|v| v.max(0.0)),
        axes,
    }
}

/// [`moment_shape`] of every region, in parallel.
pub fn moment_shapes(
    moments: &[Moments],
    spacing: [f64; 3],
    planar: bool,
) -> KernelResult<Vec<MomentShape>> {
    let blank = MomentShape {
        eigenvalues: [0.0; 3],
        axes: [[0.0; 3]; 3],
    };
    // Allocated here, fallibly, and filled in parallel (a rayon collect allocates
    // infallibly).
    let mut shapes = try_vec_filled(moments.len(), blank, "the region shapes")?;
    shapes
        .par_iter_mut()
        .zip(moments.par_iter())
        .for_each(|(s, m)| *s = moment_shape(m, spacing, planar));
    Ok(shapes)
}

/// The per-region columns of a region table, flattened row-major: `(n,)`, `(n, ndim)`
/// or `(n, ndim, ndim)` per column. Axes are the caller's array axes (a 2D table drops
/// the unit `z` axis).
#[derive(Debug, Clone, Default)]
pub struct RegionColumns {
    pub ndim: usize,
    pub voxel_count: Vec<i64>,
    pub bbox_min: Vec<i64>,
    pub bbox_max: Vec<i64>,
    pub centroid: Vec<f64>,
    pub volume: Vec<f64>,
    pub axis_lengths: Vec<f64>,
    pub principal_axes: Vec<f64>,
    pub elongation: Vec<f64>,
    /// NaN in 2D.
    pub flatness: Vec<f64>,
    /// 2D only (empty in 3D).
    pub eccentricity: Vec<f64>,
    /// 2D only (empty in 3D): angle from axis 0 (rows) to the major axis, in
    /// [-π/2, π/2], counter-clockwise, as scikit-image.
    pub orientation: Vec<f64>,
}

/// Turns moments and their eigen-analysis ([`moment_shapes`], same `spacing`) into
/// table columns. `spacing` is in `(z, y, x)` order; for `ndim == 2` the `z` axis is
/// the unit axis in front and is dropped. Cost: O(regions), no allocation per region;
/// every column is allocated once, fallibly, at its final length.
pub fn region_columns(
    moments: &[Moments],
    shapes: &[MomentShape],
    spacing: [f64; 3],
    ndim: usize,
) -> KernelResult<RegionColumns> {
    let n = moments.len();
    let first = 3 - ndim;
    let voxel_volume: f64 = spacing[first..].iter().product();
    let planar = if ndim == 2 { n } else { 0 };
    // n regions of at most 3 axes: no product here can overflow before the allocation
    // of `moments` itself would have failed.
    let mut c = RegionColumns {
        ndim,
        voxel_count: try_with_capacity(n, "the voxel_count column")?,
        bbox_min: try_with_capacity(n * ndim, "the bbox_min column")?,
        bbox_max: try_with_capacity(n * ndim, "the bbox_max column")?,
        centroid: try_with_capacity(n * ndim, "the centroid column")?,
        volume: try_with_capacity(n, "the volume column")?,
        axis_lengths: try_with_capacity(n * ndim, "the axis_lengths column")?,
        principal_axes: try_with_capacity(n * ndim * ndim, "the principal_axes column")?,
        elongation: try_with_capacity(n, "the elongation column")?,
        flatness: try_with_capacity(n, "the flatness column")?,
        eccentricity: try_with_capacity(planar, "the eccentricity column")?,
        orientation: try_with_capacity(planar, "the orientation column")?,
    };
    for (m, ms) in moments.iter().zip(shapes) {
        c.voxel_count.push(m.count as i64);
        c.volume.push(m.count as f64 * voxel_volume);
        c.bbox_min.extend(m.min[first..].iter().map(|&v| v as i64));
        c.bbox_max
            .extend(m.max[first..].iter().map(|&v| v as i64 + 1));
        c.centroid.extend_from_slice(&m.centroid()[first..]);
        for a in 0..ndim {
            c.axis_lengths.push(4.0 * ms.eigenvalues[a].sqrt());
            c.principal_axes.extend_from_slice(&ms.axes[a][first..]);
        }
        let major = ms.eigenvalues[0];
        let ratio = |minor: f64| {
            if major > 0.0 {
                (minor / major).sqrt()
            } else {
                0.0
            }
        };
        c.elongation.push(ratio(ms.eigenvalues[1]));
        if ndim == 3 {
            c.flatness.push(ratio(ms.eigenvalues[2]));
            continue;
        }
        c.flatness.push(f64::NAN);
        let ecc = if major > 0.0 {
            (1.0 - ms.eigenvalues[1] / major).max(0.0).sqrt()
        } else {
            0.0
        };
        c.eccentricity.push(ecc);
        let cov = m.covariance();
        let var_y = cov[1][1] * spacing[1] * spacing[1];
        let var_x = cov[2][2] * spacing[2] * spacing[2];
        let cov_yx = cov[1][2] * spacing[1] * spacing[2];
        // scikit-image's convention (the limit of the general formula when the two
        // variances are equal).
        c.orientation.push(if var_x == var_y {
            if cov_yx > 0.0 {
                std::f64::consts::FRAC_PI_4
            } else {
                -std::f64::consts::FRAC_PI_4
            }
        } else {
            0.5 * (2.0 * cov_yx).atan2(var_y - var_x)
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn run_sums_agree_in_both_widths() {
        for (s, e) in [
            (0, 1),
            (0, 7),
            (3, 4),
            (5, 100),
            ((1 << 20) - 3, (1 << 20) + 5),
            (1 << 30, (1 << 30) + 9),
        ] {
            let sum: u128 = (s as u128..e as u128).sum();
            let sq: u128 = (s as u128..e as u128).map(|i| i * i).sum();
            assert_eq!(run_sums(s, e), (sum, sq), "{s}..{e}");
        }
    }

    #[test]
    fn moments_of_a_box_are_exact() {
        let mut a = Array3::<u8>::zeros((4, 5, 6));
        a.slice_mut(ndarray::s![1..3, 1..4, 2..6]).fill(7);
        let st = region_stats(a.view(), None).unwrap();
        assert_eq!(st.index.labels(), &[7]);
        let m = st.moments[0];
        assert_eq!(m.count, 24);
        assert_eq!(m.min, [1, 1, 2]);
        assert_eq!(m.max, [2, 3, 5]);
        assert_eq!(m.centroid(), [1.5, 2.0, 3.5]);
        let cov = m.covariance();
        // Population variance of 2 consecutive integers is 1/4, of 3 is 2/3, of 4 is 5/4.
        assert_eq!(cov[0][0], 0.25);
        assert!((cov[1][1] - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(cov[2][2], 1.25);
        assert_eq!(cov[0][1], 0.0);
    }

    #[test]
    fn intensity_statistics_match_direct_computation() {
        let a = Array3::from_shape_fn((3, 4, 50), |(z, _, x)| ((x / 7 + z) % 3) as u16);
        let img = Array3::from_shape_fn((3, 4, 50), |(z, y, x)| {
            1000.0 + (z * 31 + y * 7 + x) as f64 * 0.5
        });
        let view = img.view();
        let st = region_stats(a.view(), Some(&view)).unwrap();
        let stats = st.intensity.unwrap();
        for (row, &label) in st.index.labels().iter().enumerate() {
            let vals: Vec<f64> = a
                .iter()
                .zip(img.iter())
                .filter(|(l, _)| **l == label)
                .map(|(_, v)| *v)
                .collect();
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            assert!((stats[row].mean - mean).abs() < 1e-9);
            assert!((stats[row].std() - var.sqrt()).abs() < 1e-9);
            assert_eq!(
                stats[row].min,
                vals.iter().cloned().fold(f64::INFINITY, f64::min)
            );
        }
    }

    #[test]
    fn negative_and_huge_labels() {
        let mut a = Array3::<i64>::zeros((1, 2, 3));
        a[[0, 0, 0]] = -5;
        a[[0, 1, 2]] = i64::MAX;
        let st = region_stats(a.view(), None).unwrap();
        assert_eq!(st.index.labels(), &[-5, i64::MAX]);
        assert_eq!(st.moments[1].centroid(), [0.0, 1.0, 2.0]);
    }

    #[test]
    fn columns_of_a_tilted_bar() {
        // A diagonal bar in one plane: major axis along (1, 1)/√2, orientation π/4.
        let a = Array3::from_shape_fn((1, 6, 6), |(_, y, x)| (y == x) as u8);
        let st = region_stats(a.view(), None).unwrap();
        let shapes = moment_shapes(&st.moments, [1.0, 1.0, 1.0], true).unwrap();
        let c = region_columns(&st.moments, &shapes, [1.0, 1.0, 1.0], 2).unwrap();
        assert_eq!(c.voxel_count, vec![6]);
        assert_eq!(
            (c.bbox_min.clone(), c.bbox_max.clone()),
            (vec![0, 0], vec![6, 6])
        );
        assert!((c.orientation[0] - std::f64::consts::FRAC_PI_4).abs() < 1e-12);
        assert!((c.eccentricity[0] - 1.0).abs() < 1e-12);
        assert_eq!(c.elongation, vec![0.0]);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        assert!((c.principal_axes[0] - s).abs() < 1e-12 && (c.principal_axes[1] - s).abs() < 1e-12);
        assert!(c.flatness[0].is_nan());
    }

    #[test]
    fn present_labels_across_slabs() {
        // Large enough to be cut into slabs; every label appears in a different one.
        let a = Array3::from_shape_fn(
            (64, 128, 130),
            |(z, y, _)| if y == 5 { (z / 4) as u16 * 3 } else { 0 },
        );
        let index = present_labels(a.view()).unwrap();
        let expected: Vec<u16> = (1..16).map(|k| k * 3).collect();
        assert_eq!(index.labels(), expected.as_slice());
    }

    #[test]
    fn jacobi_diagonalises() {
        let m = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 1.0]];
        let (w, v) = symmetric_eigen3(m);
        assert!(w[0] >= w[1] && w[1] >= w[2]);
        for k in 0..3 {
            for i in 0..3 {
                let mv: f64 = (0..3).map(|j| m[i][j] * v[k][j]).sum();
                assert!((mv - w[k] * v[k][i]).abs() < 1e-12);
            }
        }
        let (w, _) = symmetric_eigen3([[0.0; 3]; 3]);
        assert_eq!(w, [0.0; 3]);
    }

    #[test]
    fn statistics_do_not_depend_on_threads() {
        let a = Array3::from_shape_fn((64, 128, 129), |(z, y, x)| {
            ((z * 7 + y * 13 + x * 3) % 11 / 3) as u32
        });
        let img = Array3::from_shape_fn((64, 128, 129), |(z, y, x)| {
            (z as f32).sin() * 100.0 + (y * x) as f32
        });
        let run = |threads| {
            let view = img.view();
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    let st = region_stats(a.view(), Some(&view)).unwrap();
                    let i = st.intensity.unwrap();
                    (
                        st.moments.iter().map(|m| m.s2).collect::<Vec<_>>(),
                        i.iter().map(|s| (s.mean, s.m2)).collect::<Vec<_>>(),
                    )
                })
        };
        assert_eq!(run(1), run(2));
    }
}
