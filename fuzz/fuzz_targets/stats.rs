//! Region statistics and relations on small label maps (each side 0..=12), checked
//! against brute-force references: exact integer moments and boxes, centroids and
//! covariances, moment eigen-analysis, intensity statistics, the label index,
//! slice areas, contacts under each connectivity and overlaps.
//!
//! Input: `[dtype, flags, layout param, nz, ny, nx, palette, intensity flags,
//! intensity layout, spacing, labels (one byte a voxel)..., intensities (two bytes a
//! voxel)...]`; missing intensity bytes are filled from a hash of the voxel index.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medground::label::LabelIndex;
use medground::regions::{moment_shape, region_stats, IntensityRows, Moments};
use medground::relations::{contacts, overlap, slice_areas};
use medground_fuzz::{
    check_intensity, close, flood_fill, intensities, ref_contacts, ref_overlap, ref_regions,
    ref_slice_areas, shape_of, volume, with_elem, Bytes, Elem, Header, Layout, Stored,
    CONNECTIVITIES,
};
use ndarray::{Array3, ArrayView3};

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
    let iflags = b.byte();
    let iparam = b.byte();
    let sp = b.byte() as usize;
    let spacing = [
        SPACINGS[sp % 5],
        SPACINGS[sp / 5 % 5],
        SPACINGS[sp / 25 % 5],
    ];
    let layout = Layout::from_bytes(flags >> 1, param);
    let ilayout = Layout::from_bytes(iflags >> 5, iparam);
    let rest = b.rest();
    let nvox = shape.iter().product::<usize>();
    let (labels, ibytes) = rest.split_at(nvox.min(rest.len()));
    let intensity = intensities(shape, ibytes, iflags);
    with_elem!(dtype, T, {
        let logical: Array3<T> = volume(shape, labels, palette);
        let stored = Stored::new(&logical, layout, T::JUNK);
        let istored = Stored::new(&intensity, ilayout, f64::NAN);
        check::<T>(&logical, &stored, &intensity, &istored, spacing);
    });
});

fn same_moments(a: &Moments, b: &Moments) -> bool {
    a.count == b.count && a.min == b.min && a.max == b.max && a.s1 == b.s1 && a.s2 == b.s2
}

fn check<T: Elem>(
    logical: &Array3<T>,
    stored: &Stored<T>,
    intensity: &Array3<f64>,
    istored: &Stored<f64>,
    spacing: [f64; 3],
) {
    let view = stored.view();
    let iview = istored.view();
    assert_eq!(view, logical.view(), "harness: label view");
    assert!(
        iview.iter().zip(intensity.iter()).all(|(a, b)| a == b),
        "harness: intensity view"
    );
    let shape = shape_of(logical);
    let ctx = format!("{} {shape:?}", T::NAME);
    let foreground = logical.iter().filter(|v| !v.is_zero()).count() as u64;
    let reference = ref_regions(logical, Some(intensity));
    let keys: Vec<i128> = reference.keys().copied().collect();

    // The label index: every present label, ascending, each mapped to its row.
    let st = region_stats(view, None).unwrap();
    assert!(st.intensity.is_none(), "{ctx}: intensity without an image");
    let index = &st.index;
    let got_keys: Vec<i128> = index.labels().iter().map(|v| v.key()).collect();
    assert_eq!(got_keys, keys, "{ctx}: index labels");
    assert_eq!(index.len(), keys.len(), "{ctx}: index len");
    assert_eq!(index.is_empty(), keys.is_empty(), "{ctx}: index is_empty");
    assert_eq!(st.moments.len(), keys.len(), "{ctx}: moments len");
    for (row, &l) in index.labels().iter().enumerate() {
        assert_eq!(index.get(l), Some(row), "{ctx}: index.get({l:?})");
    }
    for &v in T::PALETTE.iter().chain([T::JUNK].iter()) {
        if v.is_zero() || !keys.contains(&v.key()) {
            assert_eq!(
                index.get(v),
                None,
                "{ctx}: index.get({v:?}) of an absent label"
            );
        }
    }

    // Moments: exact against voxel-by-voxel sums.
    let mut total = 0u64;
    for (row, (key, (rm, _, voxels))) in reference.iter().enumerate() {
        let m = &st.moments[row];
        let ctx = format!("{ctx} label {key}");
        total += m.count;
        assert_eq!(m.count, rm.count, "{ctx}: count");
        assert_eq!((m.min, m.max), (rm.min, rm.max), "{ctx}: bbox");
        assert_eq!((m.s1, m.s2), (rm.s1, rm.s2), "{ctx}: moment sums");
        for p in voxels {
            for a in 0..3 {
                assert!(
                    m.min[a] as usize <= p[a] && p[a] <= m.max[a] as usize,
                    "{ctx}: {p:?} outside bbox"
                );
            }
        }
        let c = m.centroid();
        let n = voxels.len() as f64;
        let mut mean = [0.0; 3];
        for a in 0..3 {
            mean[a] = voxels.iter().map(|p| p[a] as f64).sum::<f64>() / n;
            assert!(
                m.min[a] as f64 <= c[a] && c[a] <= m.max[a] as f64,
                "{ctx}: centroid {c:?} outside bbox {:?}..{:?}",
                m.min,
                m.max
            );
            assert!(
                close(c[a], mean[a], 1e-12 * (1.0 + mean[a])),
                "{ctx}: centroid {c:?} vs {mean:?}"
            );
        }
        let cov = m.covariance();
        for a in 0..3 {
            assert!(cov[a][a] >= -1e-9, "{ctx}: covariance diagonal {cov:?}");
            for b in 0..3 {
                assert!(cov[a][b].is_finite(), "{ctx}: covariance {cov:?}");
                assert_eq!(
                    cov[a][b], cov[b][a],
                    "{ctx}: covariance not symmetric {cov:?}"
                );
                let want = voxels
                    .iter()
                    .map(|p| (p[a] as f64 - mean[a]) * (p[b] as f64 - mean[b]))
                    .sum::<f64>()
                    / n;
                assert!(
                    close(cov[a][b], want, 1e-9),
                    "{ctx}: covariance[{a}][{b}] {} vs {want}",
                    cov[a][b]
                );
            }
        }
        check_moment_shape(m, spacing, false, &ctx);
        if shape[0] == 1 {
            check_moment_shape(m, spacing, true, &ctx);
        }
    }
    assert_eq!(total, foreground, "{ctx}: counts sum");

    // With intensities: the same moments, and statistics of the values.
    let st_i = region_stats(view, Some(&iview as &dyn IntensityRows)).unwrap();
    assert_eq!(
        st_i.index.labels(),
        index.labels(),
        "{ctx}: index with intensity"
    );
    assert!(
        st_i.moments
            .iter()
            .zip(&st.moments)
            .all(|(a, b)| same_moments(a, b)),
        "{ctx}: moments change with an intensity image"
    );
    let stats = st_i.intensity.as_ref().expect("intensity statistics");
    assert_eq!(stats.len(), keys.len(), "{ctx}: intensity rows");
    for (row, (key, (_, values, _))) in reference.iter().enumerate() {
        check_intensity(&stats[row], values, &format!("{ctx} label {key}"));
    }

    // Slice areas: brute force on every axis, rows summing to the counts; also for
    // an index holding only some labels, and labels that are absent.
    let mut partial: Vec<T> = index.labels().iter().step_by(2).copied().collect();
    partial.extend(
        T::PALETTE
            .iter()
            .copied()
            .filter(|v| !v.is_zero() && !keys.contains(&v.key())),
    );
    let partial = LabelIndex::new(partial).unwrap();
    let partial_keys: Vec<i128> = partial.labels().iter().map(|v| v.key()).collect();
    for (axis, &size) in shape.iter().enumerate() {
        let areas = slice_areas(view, index, axis).unwrap();
        assert_eq!(
            areas,
            ref_slice_areas(logical, &keys, axis),
            "{ctx}: slice_areas axis {axis}"
        );
        for (row, m) in st.moments.iter().enumerate() {
            let sum: u64 = areas[row * size..(row + 1) * size].iter().sum();
            assert_eq!(sum, m.count, "{ctx}: slice_areas axis {axis} row {row} sum");
        }
        let areas = slice_areas(view, &partial, axis).unwrap();
        assert_eq!(
            areas,
            ref_slice_areas(logical, &partial_keys, axis),
            "{ctx}: slice_areas axis {axis} with index {partial_keys:?}"
        );
    }

    // Contacts: brute force under each connectivity.
    for conn in CONNECTIVITIES {
        let got = contacts(&view, conn).unwrap();
        assert_eq!(got, ref_contacts(logical, conn), "{ctx}: contacts {conn:?}");
    }

    // Overlap of a map with itself is diagonal with the voxel counts; with another
    // map (its 6-connected components, another dtype) it matches brute force.
    let diag: Vec<(i128, i128, u64)> = reference
        .iter()
        .map(|(&k, (rm, _, _))| (k, k, rm.count))
        .collect();
    assert_eq!(
        overlap(&view, &view).unwrap(),
        diag,
        "{ctx}: overlap with itself"
    );
    let (cc, _) = flood_fill(logical, CONNECTIVITIES[0], false);
    let cc = Array3::from_shape_vec((shape[0], shape[1], shape[2]), cc).expect("shape");
    let ccv: ArrayView3<u32> = cc.view();
    assert_eq!(
        overlap(&view, &ccv).unwrap(),
        ref_overlap(logical, &cc),
        "{ctx}: overlap with components"
    );
    assert_eq!(
        overlap(&ccv, &view).unwrap(),
        ref_overlap(&cc, logical),
        "{ctx}: overlap of components with map"
    );
}

/// Eigenvalues finite, nonnegative, descending, summing to the trace; unit axes that
/// are eigenvectors of the physical covariance. `planar` (asked for regions in one
/// plane) analyses the in-plane (y, x) block only: its axes first, then z with 0.
fn check_moment_shape(m: &Moments, spacing: [f64; 3], planar: bool, ctx: &str) {
    let ctx = format!("{ctx} planar={planar}");
    let ms = moment_shape(m, spacing, planar);
    let cov = m.covariance();
    let mut phys: [[f64; 3]; 3] =
        std::array::from_fn(|i| std::array::from_fn(|j| cov[i][j] * spacing[i] * spacing[j]));
    if planar {
        phys[0] = [0.0; 3];
        phys[1][0] = 0.0;
        phys[2][0] = 0.0;
    }
    let scale = 1.0 + phys.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max);
    let w = ms.eigenvalues;
    assert!(
        w.iter().all(|v| v.is_finite() && *v >= 0.0),
        "{ctx}: eigenvalues {w:?}"
    );
    assert!(
        w[0] >= w[1] && w[1] >= w[2],
        "{ctx}: eigenvalues not descending {w:?}"
    );
    let trace = phys[0][0] + phys[1][1] + phys[2][2];
    assert!(
        close(w.iter().sum(), trace, 1e-9 * scale),
        "{ctx}: eigenvalues {w:?} vs trace {trace}"
    );
    if planar {
        assert_eq!(w[2], 0.0, "{ctx}: third eigenvalue of a planar region");
        assert!(
            close(ms.axes[2][0].abs(), 1.0, 1e-9),
            "{ctx}: third axis {:?} is not z",
            ms.axes[2]
        );
        for k in 0..2 {
            assert!(
                ms.axes[k][0].abs() <= 1e-9,
                "{ctx}: in-plane axis {k} {:?} leaves the plane",
                ms.axes[k]
            );
        }
    }
    for (k, v) in ms.axes.iter().enumerate() {
        let norm = v.iter().map(|c| c * c).sum::<f64>().sqrt();
        assert!(close(norm, 1.0, 1e-9), "{ctx}: axis {k} {v:?} not unit");
        for i in 0..3 {
            let av: f64 = (0..3).map(|j| phys[i][j] * v[j]).sum();
            assert!(
                close(av, w[k] * v[i], 1e-8 * scale),
                "{ctx}: axis {k} {v:?} not an eigenvector of {phys:?} ({w:?})"
            );
        }
    }
}
