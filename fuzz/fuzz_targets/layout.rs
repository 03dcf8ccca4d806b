//! The layout arithmetic of the bindings (`medground::layout`): which order an array is
//! walked in, and moments computed in that order put back in the caller's axis order.
//!
//! A fuzzed volume (sides 1..=12, 2D as one plane) is stored in C order and in Fortran
//! order; `region_stats` of the Fortran array walked as the bindings walk it (reversed
//! when `walk_reversed` says so), put back with `unreverse_moments`, must equal the
//! statistics of the C-ordered array exactly. `walk_reversed` must never panic on fuzzed
//! shapes and strides, must say "as it is" for every C-ordered array and "reversed" for
//! every Fortran-ordered one with two or more axes longer than one; `kernel_axis` and
//! `oriented_spacing` must agree with the axes of the walked view.
//!
//! Input: `[dtype, flags (bit 0: 2D), nz, ny, nx, palette, stride bytes (8)..., labels...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use medground::layout::{kernel_axis, oriented_spacing, unreverse_moments, walk_reversed};
use medground::regions::region_stats;
use medground_fuzz::{volume, with_elem, Bytes, Elem};
use ndarray::{Array3, ArrayViewD, Axis, ShapeBuilder};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let dtype = b.byte();
    let flags = b.byte();
    let mut shape = [
        1 + b.byte() as usize % 12,
        1 + b.byte() as usize % 12,
        1 + b.byte() as usize % 12,
    ];
    let palette = 2 + b.byte() as usize % 4;
    let strides: Vec<isize> = (0..4).map(|_| b.u16() as i16 as isize).collect();
    // Any shape and strides: a verdict, never a panic.
    let _ = walk_reversed(&shape[..(1 + flags as usize % 4).min(3)], &strides);
    let planar = flags & 1 == 1;
    if planar {
        shape[0] = 1;
    }
    let values = b.rest();
    with_elem!(dtype, T, {
        let c: Array3<T> = volume(shape, values, palette);
        check::<T>(&c, planar);
    });
});

fn check<T: Elem>(c: &Array3<T>, planar: bool) {
    let expected = region_stats(c.view(), None).unwrap().moments;
    let mut f = Array3::<T>::default(c.raw_dim().f());
    f.assign(c);
    // The caller's array: 3D, or the 2D image of a one-plane volume.
    let (cd, fd): (ArrayViewD<T>, ArrayViewD<T>) = if planar {
        (
            c.index_axis(Axis(0), 0).into_dyn(),
            f.index_axis(Axis(0), 0).into_dyn(),
        )
    } else {
        (c.view().into_dyn(), f.view().into_dyn())
    };
    let ndim = cd.ndim();
    assert!(
        !walk_reversed(cd.shape(), cd.strides()),
        "C order walked reversed"
    );
    let long = cd.shape().iter().filter(|&&n| n > 1).count();
    let reversed = walk_reversed(fd.shape(), fd.strides());
    assert_eq!(reversed, long >= 2, "Fortran order {:?}", fd.strides());
    // Walk the Fortran array as the bindings do: axes reversed, a unit axis in front of 2D.
    let walked = if reversed { fd.reversed_axes() } else { fd };
    let walked = if ndim == 2 {
        walked.insert_axis(Axis(0))
    } else {
        walked
    };
    let walked = walked.into_dimensionality::<ndarray::Ix3>().unwrap();
    let mut moments = region_stats(walked, None).unwrap().moments;
    unreverse_moments(&mut moments, ndim, reversed);
    assert_eq!(moments, expected);
    // The caller's axis `a` is the walked view's `kernel_axis(a)`, of the same length,
    // and the spacing follows it.
    let spacing: Vec<f64> = (0..ndim).map(|a| 1.0 + a as f64).collect();
    let oriented = oriented_spacing(&spacing, ndim, reversed);
    for (axis, &length) in cd.shape().iter().enumerate() {
        let k = kernel_axis(axis, ndim, reversed);
        assert_eq!(walked.shape()[k], length);
        assert_eq!(oriented[k], spacing[axis]);
    }
}
