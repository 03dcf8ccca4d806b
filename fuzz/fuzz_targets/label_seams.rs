//! Connected-component labelling on the parallel path: a small fuzzed pattern
//! (`nz × ny × px`, sides 1..=12) sits at column `x0` of rows padded with zeros to
//! at least 2^18 voxels, so `label_runs` cuts the volume into slabs (planes, or
//! rows for a single plane) and unions across the seams. Labelled under rayon pools
//! of 1..=8 threads and compared with a flood fill of the pattern alone.
//!
//! Input: `[dtype, threads/flags, nz, ny, px, x0, palette, values...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medground::ccl::label_runs;
use medground_fuzz::{flood_fill, pool, volume, with_elem, Bytes, Elem, CONNECTIVITIES};
use ndarray::{s, Array3, Axis};

/// `label_runs` goes parallel from this many voxels on.
const PARALLEL_MIN_VOXELS: usize = 1 << 18;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let dtype = b.byte();
    let flags = b.byte();
    let threads = 1 + (flags & 7) as usize;
    let (rev_z, rev_y) = (flags >> 3 & 1 == 1, flags >> 4 & 1 == 1);
    let nz = 1 + b.byte() as usize % 12;
    let ny = 1 + b.byte() as usize % 12;
    let px = 1 + b.byte() as usize % 12;
    let x0 = b.byte() as usize;
    let palette = 2 + b.byte() as usize % 4;
    let values = b.rest();
    with_elem!(dtype, T, {
        let pattern: Array3<T> = volume([nz, ny, px], values, palette);
        check::<T>(&pattern, x0, threads, rev_z, rev_y);
    });
});

fn check<T: Elem>(pattern: &Array3<T>, x0: usize, threads: usize, rev_z: bool, rev_y: bool) {
    let (nz, ny, px) = pattern.dim();
    let nx = PARALLEL_MIN_VOXELS.div_ceil(nz * ny).max(x0 + px);
    let mut big = Array3::from_elem((nz, ny, nx), T::ZERO);
    let mut stored = pattern.view();
    if rev_z {
        stored.invert_axis(Axis(0));
    }
    if rev_y {
        stored.invert_axis(Axis(1));
    }
    big.slice_mut(s![.., .., x0..x0 + px]).assign(&stored);
    let mut view = big.view();
    if rev_z {
        view.invert_axis(Axis(0));
    }
    if rev_y {
        view.invert_axis(Axis(1));
    }
    assert_eq!(
        view.slice(s![.., .., x0..x0 + px]),
        pattern.view(),
        "harness: pattern placement"
    );
    // The logical volume in C order: zeros but for the pattern.
    let mut flat = vec![T::ZERO; nz * ny * nx];
    for (r, row) in flat.chunks_mut(nx).enumerate() {
        for (x, v) in row[x0..x0 + px].iter_mut().enumerate() {
            *v = pattern[[r / ny, r % ny, x]];
        }
    }
    let zeros = vec![0u32; nx];
    // Buffers reused across the six labellings (fresh pages cost more than the work).
    let mut out = vec![0u32; nz * ny * nx];
    let (mut erased, mut want) = (flat.clone(), flat.clone());

    for binary in [false, true] {
        for conn in CONNECTIVITIES {
            let ctx = format!(
                "{} pattern {:?} at x0 {x0} of nx {nx}, {threads} threads, rev z/y {rev_z}/{rev_y}, {conn:?} binary={binary}",
                T::NAME,
                pattern.dim()
            );
            let rl = pool(threads)
                .install(|| label_runs(view, conn, binary))
                .expect("never overflows");
            let (reference, ref_n) = flood_fill(pattern, conn, binary);
            assert_eq!(rl.n, ref_n, "{ctx}: component count vs flood fill");
            out.fill(0);
            pool(threads).install(|| rl.write(&mut out, None));
            // Slice comparisons (memcmp) keep the checks of the padding cheap.
            for (r, row) in out.chunks(nx).enumerate() {
                let crop = &row[x0..x0 + px];
                assert_eq!(
                    crop,
                    &reference[r * px..(r + 1) * px],
                    "{ctx}: labels of row {r}"
                );
                assert!(
                    row[..x0] == zeros[..x0],
                    "{ctx}: label left of the pattern, row {r}"
                );
                assert!(
                    row[x0 + px..] == zeros[x0 + px..nx],
                    "{ctx}: label right of the pattern, row {r}"
                );
            }

            let sizes = rl.sizes().unwrap();
            let mut count = vec![0u64; ref_n as usize + 1];
            for &l in &reference {
                count[l as usize] += 1;
            }
            count[0] = 0;
            assert_eq!(sizes, count, "{ctx}: sizes");

            let keep: Vec<bool> = (0..=rl.n as usize).map(|l| l % 2 == 1).collect();
            erased.copy_from_slice(&flat);
            pool(threads).install(|| rl.erase(&mut erased, &keep));
            want.copy_from_slice(&flat);
            for (r, row) in want.chunks_mut(nx).enumerate() {
                for (x, v) in row[x0..x0 + px].iter_mut().enumerate() {
                    if !keep[reference[r * px + x] as usize] {
                        *v = T::ZERO;
                    }
                }
            }
            assert!(erased == want, "{ctx}: erase");
        }
    }
}
