//! Region statistics and relations on the slabbed path: a small fuzzed pattern
//! (`nz × ny × px`, sides 1..=12) sits at column `x0` of rows padded with zeros to
//! at least 2^20 voxels, so `region_stats`, `slice_areas`, `contacts` and `overlap`
//! cut the volume into slabs and merge them. Compared with brute force on the
//! pattern, shifted by `x0`; the pool has 1..=8 threads.
//!
//! Input: `[dtype, threads, nz, ny, px, x0, palette, intensity flags,
//! labels (one byte a voxel)..., intensities (two bytes a voxel)...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medground::regions::{region_stats, IntensityRows, IntensityStats};
use medground::relations::{contacts, overlap, slice_areas};
use medground_fuzz::{
    check_intensity, intensities, pool, ref_contacts, ref_regions, ref_slice_areas, volume,
    with_elem, Bytes, Elem, CONNECTIVITIES,
};
use ndarray::{s, Array3};

/// Region and relation kernels use 16 slabs from this many voxels on.
const SLABBED_VOXELS: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let dtype = b.byte();
    let threads = 1 + (b.byte() & 7) as usize;
    let nz = 1 + b.byte() as usize % 12;
    let ny = 1 + b.byte() as usize % 12;
    let px = 1 + b.byte() as usize % 12;
    let x0 = b.byte() as usize;
    let palette = 2 + b.byte() as usize % 4;
    let iflags = b.byte();
    let rest = b.rest();
    let (labels, ibytes) = rest.split_at((nz * ny * px).min(rest.len()));
    let intensity = intensities([nz, ny, px], ibytes, iflags);
    with_elem!(dtype, T, {
        let pattern: Array3<T> = volume([nz, ny, px], labels, palette);
        pool(threads).install(|| check::<T>(&pattern, &intensity, x0, threads));
    });
});

/// Intensities of the padded volume: the pattern's values at `x0..x0 + px`,
/// NaN elsewhere (the kernels must only read values under foreground runs).
struct PaddedRows<'a> {
    values: &'a Array3<f64>,
    x0: usize,
}

impl IntensityRows for PaddedRows<'_> {
    fn add_run(&self, stats: &mut IntensityStats, z: usize, y: usize, start: usize, end: usize) {
        let px = self.values.shape()[2];
        let run: Vec<f64> = (start..end)
            .map(|x| match x.checked_sub(self.x0) {
                Some(at) if at < px => self.values[[z, y, at]],
                _ => f64::NAN,
            })
            .collect();
        stats.add_values(run.iter().copied());
    }
}

fn check<T: Elem>(pattern: &Array3<T>, intensity: &Array3<f64>, x0: usize, threads: usize) {
    let (nz, ny, px) = pattern.dim();
    let nx = SLABBED_VOXELS.div_ceil(nz * ny).max(x0 + px);
    let mut big = Array3::from_elem((nz, ny, nx), T::ZERO);
    big.slice_mut(s![.., .., x0..x0 + px]).assign(pattern);
    let view = big.view();
    let ctx = format!(
        "{} pattern {:?} at x0 {x0} of nx {nx}, {threads} threads",
        T::NAME,
        pattern.dim()
    );
    let reference = ref_regions(pattern, Some(intensity));
    let keys: Vec<i128> = reference.keys().copied().collect();

    let rows = PaddedRows {
        values: intensity,
        x0,
    };
    let st = region_stats(view, Some(&rows)).unwrap();
    let got_keys: Vec<i128> = st.index.labels().iter().map(|v| v.key()).collect();
    assert_eq!(got_keys, keys, "{ctx}: index labels");
    let stats = st.intensity.as_ref().expect("intensity statistics");
    let small = region_stats(pattern.view(), None).unwrap();
    let (x0w, x0u) = (x0 as u128, x0 as u32);
    for (row, (key, (rm, values, _))) in reference.iter().enumerate() {
        let ctx = format!("{ctx} label {key}");
        let m = &st.moments[row];
        let c = rm.count as u128;
        assert_eq!(m.count, rm.count, "{ctx}: count");
        assert_eq!(
            m.min,
            [rm.min[0], rm.min[1], rm.min[2] + x0u],
            "{ctx}: bbox min"
        );
        assert_eq!(
            m.max,
            [rm.max[0], rm.max[1], rm.max[2] + x0u],
            "{ctx}: bbox max"
        );
        let [sz, sy, sx] = rm.s1;
        assert_eq!(m.s1, [sz, sy, sx + x0w * c], "{ctx}: first moments");
        let s2 = rm.s2;
        let want = [
            s2[0],
            s2[1],
            s2[2] + 2 * x0w * sx + x0w * x0w * c,
            s2[3],
            s2[4] + x0w * sz,
            s2[5] + x0w * sy,
        ];
        assert_eq!(m.s2, want, "{ctx}: second moments");
        // N²·cov is an exact integer that does not move with the region.
        assert_eq!(
            m.covariance(),
            small.moments[row].covariance(),
            "{ctx}: covariance vs the pattern's"
        );
        check_intensity(&stats[row], values, &ctx);
    }

    for axis in 0..3 {
        let areas = slice_areas(view, &st.index, axis).unwrap();
        let want = if axis < 2 {
            ref_slice_areas(pattern, &keys, axis)
        } else {
            let crop = ref_slice_areas(pattern, &keys, 2);
            let mut w = vec![0u64; keys.len() * nx];
            for r in 0..keys.len() {
                w[r * nx + x0..r * nx + x0 + px].copy_from_slice(&crop[r * px..(r + 1) * px]);
            }
            w
        };
        assert_eq!(areas, want, "{ctx}: slice_areas axis {axis}");
    }

    for conn in CONNECTIVITIES {
        assert_eq!(
            contacts(&view, conn).unwrap(),
            ref_contacts(pattern, conn),
            "{ctx}: contacts {conn:?}"
        );
    }

    let diag: Vec<(i128, i128, u64)> = reference
        .iter()
        .map(|(&k, (rm, _, _))| (k, k, rm.count))
        .collect();
    assert_eq!(
        overlap(&view, &view).unwrap(),
        diag,
        "{ctx}: overlap with itself"
    );
}
