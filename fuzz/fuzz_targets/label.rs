//! Connected-component labelling of small volumes (each side 0..=12), checked
//! against a breadth-first flood fill.
//!
//! Input: `[dtype, flags, layout param, nz, ny, nx, palette, k, values...]`.
//! `flags` bit 0 makes a 2D image (nz = 1); `flags >> 1` picks the view layout
//! (C, Fortran, reversed axes, permuted axes, stepped slice of a junk-filled array).
#![no_main]

use libfuzzer_sys::fuzz_target;
use medground::ccl::{label_runs, largest_k_map, Connectivity};
use medground_fuzz::{
    flood_fill, forward_offsets, shape_of, step, volume, with_elem, Bytes, Elem, Header, Layout,
    Stored, CONNECTIVITIES,
};
use ndarray::Array3;

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let Header {
        dtype,
        flags,
        param,
        shape,
        palette,
    } = Header::read(&mut b);
    let kbyte = b.byte();
    let layout = Layout::from_bytes(flags >> 1, param);
    let values = b.rest();
    with_elem!(dtype, T, {
        let logical: Array3<T> = volume(shape, values, palette);
        let stored = Stored::new(&logical, layout, T::JUNK);
        check::<T>(&logical, &stored, kbyte);
    });
});

fn check<T: Elem>(logical: &Array3<T>, stored: &Stored<T>, kbyte: u8) {
    let view = stored.view();
    assert_eq!(
        view,
        logical.view(),
        "harness: the view must show the logical volume"
    );
    let shape = shape_of(logical);
    let flat: Vec<T> = logical.iter().copied().collect();
    let foreground = flat.iter().filter(|v| !v.is_zero()).count() as u64;
    let mut planar: Vec<Vec<u32>> = Vec::new();

    for binary in [false, true] {
        for conn in CONNECTIVITIES {
            let ctx = format!("{} {shape:?} {conn:?} binary={binary}", T::NAME);
            let rl = label_runs(view, conn, binary).expect("a small volume never overflows");
            assert_eq!(rl.shape, shape, "{ctx}: shape");
            let n = rl.n as usize;
            let mut out = vec![0u32; flat.len()];
            rl.write(&mut out, None);

            // Labels are 1..=n, each used; background is 0 exactly where the input is 0.
            let mut count = vec![0u64; n + 1];
            for (i, (&l, &v)) in out.iter().zip(&flat).enumerate() {
                assert!(l as usize <= n, "{ctx}: label {l} at {i} exceeds n = {n}");
                assert_eq!(
                    l == 0,
                    v.is_zero(),
                    "{ctx}: voxel {i} value {v:?} got label {l}"
                );
                count[l as usize] += 1;
            }
            for (l, &c) in count.iter().enumerate().skip(1) {
                assert!(c > 0, "{ctx}: label {l} of 1..={n} never written");
            }

            // Neighbours with equal (binary: any nonzero) values share a label.
            for ((z, y, x), &v) in logical.indexed_iter() {
                if v.is_zero() {
                    continue;
                }
                let i = (z * shape[1] + y) * shape[2] + x;
                for o in forward_offsets(conn) {
                    let Some(q) = step(shape, [z, y, x], o) else {
                        continue;
                    };
                    let w = logical[q];
                    if w.is_zero() || !(binary || w == v) {
                        continue;
                    }
                    let j = (q[0] * shape[1] + q[1]) * shape[2] + q[2];
                    assert_eq!(
                        out[i],
                        out[j],
                        "{ctx}: neighbours {:?} and {q:?} (offset {o:?}) split",
                        [z, y, x]
                    );
                }
            }

            // Component count, and the documented numbering (raster order of each
            // component's first voxel), match the flood fill.
            let (reference, ref_n) = flood_fill(logical, conn, binary);
            assert_eq!(rl.n, ref_n, "{ctx}: component count vs flood fill");
            assert_eq!(out, reference, "{ctx}: labels vs flood fill");

            // Sizes.
            let sizes = rl.sizes().unwrap();
            assert_eq!(sizes.len(), n + 1, "{ctx}: sizes length");
            assert_eq!(sizes[0], 0, "{ctx}: sizes[0]");
            assert_eq!(sizes[1..], count[1..], "{ctx}: sizes vs written labels");
            assert_eq!(sizes.iter().sum::<u64>(), foreground, "{ctx}: sizes sum");

            // largest_k_map is a prefix of the size ordering, and relabels through write.
            for k in [
                0,
                1,
                kbyte as usize % 8,
                n.saturating_sub(1),
                n,
                n + 1,
                usize::MAX,
            ] {
                let map = largest_k_map(&sizes, k).unwrap();
                check_largest_k(&sizes, k, &map, &ctx);
                let mut relabelled = vec![0u32; flat.len()];
                rl.write(&mut relabelled, Some(&map));
                for (i, (&r, &l)) in relabelled.iter().zip(&out).enumerate() {
                    assert_eq!(r, map[l as usize], "{ctx}: write with map at {i} (k = {k})");
                }
            }

            // Narrower output types write the same labels.
            let mut out16 = vec![0u16; flat.len()];
            rl.write(&mut out16, None);
            assert!(
                out16.iter().zip(&out).all(|(&a, &b)| a as u32 == b),
                "{ctx}: u16 output"
            );
            if n <= u8::MAX as usize {
                let mut out8 = vec![0u8; flat.len()];
                rl.write(&mut out8, None);
                assert!(
                    out8.iter().zip(&out).all(|(&a, &b)| a as u32 == b),
                    "{ctx}: u8 output"
                );
            }

            // erase keeps exactly the voxels of kept components.
            let keep: Vec<bool> = (0..=n)
                .map(|l| l > 0 && !(l + kbyte as usize).is_multiple_of(3))
                .collect();
            let mut erased = flat.clone();
            rl.erase(&mut erased, &keep);
            for (i, ((&e, &v), &l)) in erased.iter().zip(&flat).zip(&out).enumerate() {
                let want = if keep[l as usize] { v } else { T::ZERO };
                assert_eq!(e, want, "{ctx}: erase at {i}");
            }

            if shape[0] == 1 && !binary && conn != Connectivity::Face {
                planar.push(out);
            }
        }
    }
    // In a single plane Edge and Vertex coincide.
    if planar.len() == 2 {
        assert_eq!(planar[0], planar[1], "2D: Edge and Vertex labels differ");
    }
}

/// `map` sends the `min(k, n)` largest components (ties: lower label first) to
/// `1..=min(k, n)` in that order, and every other label to 0.
fn check_largest_k(sizes: &[u64], k: usize, map: &[u32], ctx: &str) {
    let n = sizes.len() - 1;
    assert_eq!(map.len(), sizes.len(), "{ctx}: largest_k_map length");
    assert_eq!(map[0], 0, "{ctx}: largest_k_map[0]");
    let kept = k.min(n);
    let mut by_rank = vec![0usize; kept + 1];
    for (l, &r) in map.iter().enumerate().skip(1) {
        assert!(r as usize <= kept, "{ctx}: rank {r} > {kept}");
        if r > 0 {
            assert_eq!(by_rank[r as usize], 0, "{ctx}: rank {r} given twice");
            by_rank[r as usize] = l;
        }
    }
    assert!(
        by_rank[1..].iter().all(|&l| l > 0),
        "{ctx}: ranks 1..={kept} not all used"
    );
    // Ranked labels in decreasing size (ties by label), and dropped ones not larger.
    for w in by_rank[1..].windows(2) {
        let (a, b) = (w[0], w[1]);
        assert!(
            sizes[a] > sizes[b] || (sizes[a] == sizes[b] && a < b),
            "{ctx}: largest_k order {a} (size {}) before {b} (size {})",
            sizes[a],
            sizes[b]
        );
    }
    if let Some(&last) = by_rank[1..].last() {
        for (l, &r) in map.iter().enumerate().skip(1) {
            if r == 0 {
                assert!(
                    sizes[l] < sizes[last] || (sizes[l] == sizes[last] && l > last),
                    "{ctx}: dropped label {l} (size {}) beats kept {last} (size {})",
                    sizes[l],
                    sizes[last]
                );
            }
        }
    }
}
