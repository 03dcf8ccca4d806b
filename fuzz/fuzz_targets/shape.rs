//! Marching-cubes surface areas (`surface::surface_areas`) and 2D shape measures
//! (`shape2d::shape2d`) of small label maps (each side 0..=12), under the same view
//! layouts as the other targets. Checked: finite and nonnegative, positive exactly
//! for present labels and 0 for absent ones; a region alone measures what it
//! measures in the map; surfaces unchanged by a reflection or an axis permutation
//! (spacing permuted to match); in 2D, bit-identical results for the transposed
//! image with swapped spacing (documented), perimeter at most the pixel-edge
//! perimeter, convex area between the pixel area and the bounding box, and Feret
//! diameter between the box's longer side and its diagonal.
//!
//! Input: `[dtype, flags, layout param, nz, ny, nx, palette, spacing, selector,
//! values...]`; `flags` bit 0 makes a 2D image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medground::label::LabelIndex;
use medground::shape2d::shape2d;
use medground::surface::surface_areas;
use medground_fuzz::{
    close, ref_regions, shape_of, volume, with_elem, Bytes, Elem, Header, Layout, Stored,
};
use ndarray::{Array3, ArrayView3, Axis};

const SPACINGS: [f64; 5] = [1.0, 0.25, 0.5, 2.0, 3.3];

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let Header {
        dtype,
        flags,
        param,
        shape,
        palette,
    } = Header::read(&mut b);
    let sp = b.byte() as usize;
    let spacing = [
        SPACINGS[sp % 5],
        SPACINGS[sp / 5 % 5],
        SPACINGS[sp / 25 % 5],
    ];
    let sel = b.byte();
    let layout = Layout::from_bytes(flags >> 1, param);
    let values = b.rest();
    with_elem!(dtype, T, {
        let logical: Array3<T> = volume(shape, values, palette);
        let stored = Stored::new(&logical, layout, T::JUNK);
        let view = stored.view();
        assert_eq!(
            view,
            logical.view(),
            "harness: the view must show the logical volume"
        );
        check_shape::<T>(&logical, view, spacing, sel);
    });
});

/// Relative closeness for sums whose order may differ.
fn near(a: f64, b: f64) -> bool {
    close(a, b, 1e-9 * a.abs().max(b.abs()))
}

/// Marching-cubes surface areas and 2D shape measures: finite, nonnegative, zero
/// exactly for absent labels; the same for a region alone as inside the map; the
/// same under reflections and transpositions (with spacing permuted to match); and
/// in 2D within the documented bounds (perimeter at most the pixel-edge perimeter,
/// convex area between the pixel area and the box, Feret between the box's longer
/// side and its diagonal).
fn check_shape<T: Elem>(logical: &Array3<T>, view: ArrayView3<T>, spacing: [f64; 3], sel: u8) {
    let shape = shape_of(logical);
    let ctx = format!("{} {shape:?} spacing {spacing:?}", T::NAME);
    let ctx = ctx.as_str();
    let reference = ref_regions(logical, None);
    // Every palette value, present or not: absent labels must measure 0.
    let full = LabelIndex::new(
        T::PALETTE
            .iter()
            .copied()
            .filter(|v| !v.is_zero())
            .collect(),
    )
    .unwrap();
    let present = |l: T| reference.get(&l.key()).map(|(m, _, _)| m);

    let areas = surface_areas(view, spacing, &full).unwrap();
    assert_eq!(areas.len(), full.len(), "{ctx}: surface_areas len");
    for (row, &l) in full.labels().iter().enumerate() {
        let a = areas[row];
        assert!(
            a.is_finite() && a >= 0.0,
            "{ctx}: surface area {a} of {l:?}"
        );
        assert_eq!(
            a > 0.0,
            present(l).is_some(),
            "{ctx}: surface area {a} of {l:?} (present: {})",
            present(l).is_some()
        );
    }
    // A region alone measures what it measures in the map (one region an input:
    // each call rebuilds the configuration table, which is slow under the sanitizer).
    let rows: Vec<usize> = (0..full.len())
        .filter(|&r| present(full.labels()[r]).is_some())
        .collect();
    if let Some(&row) = rows.get(sel as usize % rows.len().max(1)) {
        let l = full.labels()[row];
        let alone = logical.mapv(|v| (v == l) as u8);
        let a =
            surface_areas(alone.view(), spacing, &LabelIndex::new(vec![1u8]).unwrap()).unwrap()[0];
        assert!(
            near(a, areas[row]),
            "{ctx}: surface of {l:?} alone {a} vs in the map {}",
            areas[row]
        );
    }
    // A reflection and an axis permutation, picked by the input.
    {
        let mask = 1 + (sel >> 2) % 7;
        let mut v = logical.view();
        for ax in 0..3 {
            if mask >> ax & 1 == 1 {
                v.invert_axis(Axis(ax));
            }
        }
        let got = surface_areas(v, spacing, &full).unwrap();
        for row in 0..full.len() {
            assert!(
                near(got[row], areas[row]),
                "{ctx}: surface of row {row} reflected ({mask:#b}) {} vs {}",
                got[row],
                areas[row]
            );
        }
    }
    {
        let perm = [[0, 2, 1], [1, 0, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]][(sel >> 5) as usize % 5];
        let v = logical.view().permuted_axes(perm);
        let got = surface_areas(v, perm.map(|a| spacing[a]), &full).unwrap();
        for row in 0..full.len() {
            assert!(
                near(got[row], areas[row]),
                "{ctx}: surface of row {row} permuted {perm:?} {} vs {}",
                got[row],
                areas[row]
            );
        }
    }

    if shape[0] != 1 {
        return;
    }
    let plane = view.index_axis(Axis(0), 0);
    let sp = [spacing[1], spacing[2]];
    let sh = shape2d(plane, sp, &full).unwrap();
    let lplane = logical.index_axis(Axis(0), 0);
    // Documented: bit-identical for the transposed image with swapped spacing.
    let tr = shape2d(lplane.t(), [sp[1], sp[0]], &full).unwrap();
    assert_eq!(sh, tr, "{ctx}: shape2d of the transposed image");
    for (row, &l) in full.labels().iter().enumerate() {
        let (p, ca, fe) = (
            sh.perimeter[row],
            sh.convex_area[row],
            sh.feret_diameter_max[row],
        );
        let ctx = format!("{ctx} 2D label {l:?} spacing {sp:?}");
        for (name, v) in [
            ("perimeter", p),
            ("convex_area", ca),
            ("feret_diameter_max", fe),
        ] {
            assert!(v.is_finite() && v >= 0.0, "{ctx}: {name} {v}");
        }
        let Some(m) = present(l) else {
            assert_eq!(
                (p, ca, fe),
                (0.0, 0.0, 0.0),
                "{ctx}: measures of an absent label"
            );
            continue;
        };
        // Documented: a region measures exactly what it would alone.
        let alone = lplane.mapv(|v| (v == l) as u8);
        let one = shape2d(alone.view(), sp, &LabelIndex::new(vec![1u8]).unwrap()).unwrap();
        assert_eq!(
            (
                one.perimeter[0],
                one.convex_area[0],
                one.feret_diameter_max[0]
            ),
            (p, ca, fe),
            "{ctx}: measures alone vs in the map"
        );
        // Pixel-edge (crack) perimeter: edges between the region and anything else.
        let (ny, nx) = (shape[1], shape[2]);
        let inside = |y: isize, x: isize| {
            y >= 0
                && x >= 0
                && (y as usize) < ny
                && (x as usize) < nx
                && lplane[[y as usize, x as usize]] == l
        };
        let mut crack = 0.0;
        for y in 0..ny as isize {
            for x in 0..nx as isize {
                if inside(y, x) {
                    crack += (!inside(y - 1, x) as u8 + !inside(y + 1, x) as u8) as f64 * sp[1];
                    crack += (!inside(y, x - 1) as u8 + !inside(y, x + 1) as u8) as f64 * sp[0];
                }
            }
        }
        assert!(
            p > 0.0 && p <= crack * (1.0 + 1e-12),
            "{ctx}: perimeter {p} vs pixel edges {crack}"
        );
        let (h, w) = (
            (m.max[1] - m.min[1] + 1) as f64 * sp[0],
            (m.max[2] - m.min[2] + 1) as f64 * sp[1],
        );
        let pixels = m.count as f64 * sp[0] * sp[1];
        assert!(
            ca >= pixels * (1.0 - 1e-12) && ca <= h * w * (1.0 + 1e-12),
            "{ctx}: convex area {ca} vs pixels {pixels}, box {h}x{w}"
        );
        let diag = (h * h + w * w).sqrt();
        assert!(
            fe >= h.max(w) * (1.0 - 1e-12) && fe <= diag * (1.0 + 1e-12),
            "{ctx}: Feret {fe} vs box {h}x{w}"
        );
    }
}
