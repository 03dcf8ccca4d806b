//! Memory-layout arithmetic between a caller's array and the kernels' 3D view.
//!
//! The kernels walk a C-ordered `(z, y, x)` view. A caller's array is handed over as it
//! lies in memory: one whose first axis varies fastest (Fortran order, as nibabel gives
//! NIfTI data) is walked with its axes reversed instead of being copied, and a 2D image
//! gets a unit axis in front. What the kernels compute in that walking order comes back
//! to the caller's axis order through the functions here: which order to walk, the
//! spacing and axis as the kernels see them, and moments with their axes swapped back.
//! Pure arithmetic, no Python: unit-tested below and fuzzed (`fuzz_targets/layout.rs`).

use crate::error::KernelError;
use crate::regions::Moments;

/// Whether an array of `shape` and (element) `strides` is better walked with its axes
/// reversed: its first axis (of more than one element) varies faster in memory than its
/// last. Length-1 axes are ignored, since their stride says nothing about layout; a
/// C-ordered array, and any array with fewer than two long axes, is walked as it is.
/// Cost: O(ndim).
pub fn walk_reversed(shape: &[usize], strides: &[isize]) -> bool {
    let used: Vec<usize> = strides
        .iter()
        .zip(shape)
        .filter(|(_, &n)| n > 1)
        .map(|(&s, _)| s.unsigned_abs())
        .collect();
    used.len() >= 2 && used[0] < used[used.len() - 1]
}

/// Checks a spacing: one finite, positive value per axis.
pub fn check_spacing(spacing: &[f64], ndim: usize) -> Result<(), KernelError> {
    if spacing.len() != ndim {
        return Err(KernelError::InvalidArgument(format!(
            "spacing must have one value per axis ({ndim}), got {} values: {spacing:?}",
            spacing.len()
        )));
    }
    if let Some(bad) = spacing.iter().find(|s| !s.is_finite() || **s <= 0.0) {
        return Err(KernelError::InvalidArgument(format!(
            "spacing values must be finite and > 0, got {bad} in {spacing:?}"
        )));
    }
    Ok(())
}

/// The spacing of a 2D or 3D array (`ndim` values, caller's axis order) as the kernels'
/// `(z, y, x)` view sees it: reversed with the axes, and 1 for a 2D image's unit axis.
/// `spacing` must have `ndim` values (see [`check_spacing`]).
pub fn oriented_spacing(spacing: &[f64], ndim: usize, reversed: bool) -> [f64; 3] {
    let mut s: Vec<f64> = spacing.to_vec();
    if reversed {
        s.reverse();
    }
    if ndim == 2 {
        [1.0, s[0], s[1]]
    } else {
        [s[0], s[1], s[2]]
    }
}

/// The kernels' axis (0..3 of the `(z, y, x)` view) of the caller's `axis` of an
/// `ndim`-dimensional array walked `reversed` or not. `axis` must be below `ndim`.
pub fn kernel_axis(axis: usize, ndim: usize, reversed: bool) -> usize {
    (if reversed { ndim - 1 - axis } else { axis }) + (3 - ndim)
}

/// Swaps two axes of a region's moments.
pub fn swap_moment_axes(m: &mut Moments, a: usize, b: usize) {
    m.min.swap(a, b);
    m.max.swap(a, b);
    m.s1.swap(a, b);
    // s2 = [zz, yy, xx, zy, zx, yx]; the squares swap with the axes, and so do the
    // two cross terms that pair each swapped axis with the third.
    m.s2.swap(a, b);
    let cross = |i: usize, j: usize| match (i.min(j), i.max(j)) {
        (0, 1) => 3,
        (0, 2) => 4,
        _ => 5,
    };
    let third = 3 - a - b;
    m.s2.swap(cross(a, third), cross(b, third));
}

/// Moments computed on a view walked `reversed` put back in the caller's axis order: a
/// reversed 3D view swapped axes 0 and 2; a reversed 2D image (unit axis in front)
/// swapped axes 1 and 2.
pub fn unreverse_moments(moments: &mut [Moments], ndim: usize, reversed: bool) {
    if !reversed {
        return;
    }
    let (a, b) = if ndim == 3 { (0, 2) } else { (1, 2) };
    moments.iter_mut().for_each(|m| swap_moment_axes(m, a, b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regions::region_stats;
    use ndarray::{Array3, Axis, ShapeBuilder};

    #[test]
    fn c_and_fortran_orders() {
        // C order (12, 4, 1) of shape (2, 3, 4): walked as it is.
        assert!(!walk_reversed(&[2, 3, 4], &[12, 4, 1]));
        // Fortran order (1, 2, 6): reversed.
        assert!(walk_reversed(&[2, 3, 4], &[1, 2, 6]));
        // Negative strides (flipped views) count by their size.
        assert!(walk_reversed(&[2, 3, 4], &[-1, 2, -6]));
        // Length-1 axes say nothing: a (1, 5) row and a (5, 1) column are not reversed,
        // and a Fortran array with a unit first axis still is.
        assert!(!walk_reversed(&[1, 5], &[5, 1]));
        assert!(!walk_reversed(&[5, 1], &[1, 5]));
        assert!(walk_reversed(&[1, 3, 4], &[1, 1, 3]));
        // One dimension, empty strides, zero strides (broadcast): never reversed.
        assert!(!walk_reversed(&[7], &[1]));
        assert!(!walk_reversed(&[], &[]));
        assert!(!walk_reversed(&[3, 4], &[0, 0]));
    }

    #[test]
    fn spacing_and_axes_as_the_kernels_see_them() {
        assert_eq!(
            oriented_spacing(&[1.0, 2.0, 3.0], 3, false),
            [1.0, 2.0, 3.0]
        );
        assert_eq!(oriented_spacing(&[1.0, 2.0, 3.0], 3, true), [3.0, 2.0, 1.0]);
        assert_eq!(oriented_spacing(&[2.0, 3.0], 2, false), [1.0, 2.0, 3.0]);
        assert_eq!(oriented_spacing(&[2.0, 3.0], 2, true), [1.0, 3.0, 2.0]);
        assert_eq!(
            (0..3).map(|a| kernel_axis(a, 3, false)).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(
            (0..3).map(|a| kernel_axis(a, 3, true)).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(
            (0..2).map(|a| kernel_axis(a, 2, false)).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            (0..2).map(|a| kernel_axis(a, 2, true)).collect::<Vec<_>>(),
            [2, 1]
        );
        assert!(check_spacing(&[1.0, 2.0], 2).is_ok());
        assert!(check_spacing(&[1.0], 2).is_err());
        assert!(check_spacing(&[1.0, 0.0], 2).is_err());
        assert!(check_spacing(&[1.0, f64::NAN], 2).is_err());
    }

    /// A small label volume with uneven regions in every direction.
    fn volume() -> Array3<u8> {
        Array3::from_shape_fn((4, 5, 6), |(z, y, x)| ((z * 7 + y * 3 + x * x) % 4) as u8)
    }

    #[test]
    fn moments_of_a_reversed_walk_come_back_in_the_callers_order() {
        let c = volume();
        let expected = region_stats(c.view(), None).unwrap().moments;
        // The same values in Fortran order, walked reversed as the bindings do.
        let mut f = Array3::<u8>::zeros(c.raw_dim().f());
        f.assign(&c);
        let shape = f.shape().to_vec();
        assert!(walk_reversed(&shape, f.strides()));
        let mut moments = region_stats(f.view().reversed_axes(), None)
            .unwrap()
            .moments;
        unreverse_moments(&mut moments, 3, true);
        assert_eq!(moments, expected);
    }

    #[test]
    fn moments_of_a_reversed_image_come_back_in_the_callers_order() {
        let image = volume().index_axis_move(Axis(0), 1);
        let expected = region_stats(image.view().insert_axis(Axis(0)), None)
            .unwrap()
            .moments;
        let reversed = image.view().reversed_axes().insert_axis(Axis(0));
        let mut moments = region_stats(reversed, None).unwrap().moments;
        unreverse_moments(&mut moments, 2, true);
        assert_eq!(moments, expected);
    }

    #[test]
    fn swapping_axes_twice_is_the_identity() {
        let original = region_stats(volume().view(), None).unwrap().moments;
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            let mut moments = original.clone();
            moments.iter_mut().for_each(|m| swap_moment_axes(m, a, b));
            assert_ne!(moments, original);
            moments.iter_mut().for_each(|m| swap_moment_axes(m, a, b));
            assert_eq!(moments, original);
        }
    }
}
