//! A volume's plane on an image's grid (`render.SliceMap`): each row and column of the
//! image shows one line of the plane, or, where the image is smaller than the plane
//! along that axis, the mean of a run of consecutive lines (an area average, so that a
//! shrunk view is not aliased).
//!
//! The plane is usually a strided view of a volume (a coronal plane of a Fortran-ordered
//! CT steps half a megabyte between rows): a gather reads its rows in place where each is
//! contiguous, and otherwise — and for means — the plane is read once, in its memory
//! order, into a row-major copy the image is made from. numpy's two fancy-indexing passes
//! walked the strided plane in the image's order instead.
//!
//! Means are taken over integer intensities of at most 32 bits, where every sum is an
//! exact integer and so equals numpy's float64 sum in any order; they are rounded half to
//! even (`np.rint`) and clipped to the type's range.

use ndarray::ArrayView2;

use crate::alloc::{try_vec_filled, try_with_capacity};
use crate::error::{KernelError, KernelResult};

/// Where the lines of one image axis come from, along the same axis of the plane.
#[derive(Debug, Clone, Copy)]
pub enum Lines<'a> {
    /// Image line `i` shows plane line `index[i]`.
    Each(&'a [usize]),
    /// Image line `i` shows the mean of plane lines `start[i]..end[i]`.
    Mean(&'a [usize], &'a [usize]),
}

impl Lines<'_> {
    fn len(&self) -> usize {
        match self {
            Lines::Each(index) => index.len(),
            Lines::Mean(start, _) => start.len(),
        }
    }

    fn check(&self, n: usize, axis: &str) -> KernelResult<()> {
        match *self {
            Lines::Each(index) => match index.iter().find(|&&i| i >= n) {
                Some(i) => Err(KernelError::InvalidArgument(format!(
                    "{axis} index {i} is outside the plane's {n} {axis}s"
                ))),
                None => Ok(()),
            },
            Lines::Mean(start, end) => {
                if start.len() != end.len() {
                    return Err(KernelError::InvalidArgument(format!(
                        "{} {axis} starts for {} ends",
                        start.len(),
                        end.len()
                    )));
                }
                match start.iter().zip(end).find(|&(&s, &e)| s >= e || e > n) {
                    Some((s, e)) => Err(KernelError::InvalidArgument(format!(
                        "{axis} run {s}..{e} is empty or outside the plane's {n} {axis}s"
                    ))),
                    None => Ok(()),
                }
            }
        }
    }
}

/// An intensity type whose means the kernel takes: its values widen exactly to `i64`,
/// and a rounded mean comes back clipped to the type's range.
pub trait Level: Copy + Send + Sync {
    fn wide(self) -> i64;
    /// `clip(rint(mean), MIN, MAX)` in this type.
    fn from_mean(mean: f64) -> Self;
}

/// `x` rounded half to even (`np.rint`), for |x| < 2^51: adding and taking away 2^52
/// leaves no fraction bits, and IEEE addition rounds ties to even. (`f64::round_ties_even`
/// is a library call on x86-64 without SSE4.1, a third of the kernel's time.)
fn rint(x: f64) -> f64 {
    const SHIFT: f64 = 4_503_599_627_370_496.0; // 2^52
    if x.abs() >= SHIFT / 2.0 {
        return x.round_ties_even();
    }
    let shift = SHIFT.copysign(x);
    (x + shift) - shift
}

macro_rules! level {
    ($($t:ty),+) => {$(
        impl Level for $t {
            fn wide(self) -> i64 {
                self as i64
            }
            fn from_mean(mean: f64) -> Self {
                rint(mean).clamp(<$t>::MIN as f64, <$t>::MAX as f64) as $t
            }
        }
    )+};
}
level!(i8, u8, i16, u16, i32, u32);

/// The plane's rows as slices: its own memory where each row is contiguous (axial and
/// coronal planes of either memory order), else a row-major copy read in the plane's
/// memory order (the axis of the smaller stride innermost).
enum Rows<'a, T> {
    Direct(ArrayView2<'a, T>),
    Copied(Vec<T>, usize),
}

impl<'a, T: Copy> Rows<'a, T> {
    fn of(plane: ArrayView2<'a, T>) -> KernelResult<Self> {
        let w = plane.dim().1;
        if w <= 1 || plane.strides()[1] == 1 {
            return Ok(Rows::Direct(plane));
        }
        Self::copied(plane)
    }

    /// Always the row-major copy: the means read each row once or twice, in the order of
    /// their runs (descending for a flipped axis), faster from a copy in cache than from
    /// rows half a megabyte apart in the volume (0.8 against 1.0 ms a coronal CT view).
    fn copied(plane: ArrayView2<'a, T>) -> KernelResult<Self> {
        let (h, w) = plane.dim();
        let mut out = try_with_capacity(h * w, "a plane's copy")?;
        let strides = plane.strides();
        if strides[1].unsigned_abs() <= strides[0].unsigned_abs() {
            for row in plane.rows() {
                out.extend(row.iter().copied());
            }
        } else if h * w > 0 {
            out.resize(h * w, plane[[0, 0]]);
            for (x, column) in plane.columns().into_iter().enumerate() {
                for (y, &v) in column.iter().enumerate() {
                    out[y * w + x] = v;
                }
            }
        }
        Ok(Rows::Copied(out, w))
    }

    fn line(&self, r: usize) -> &[T] {
        match self {
            Rows::Direct(plane) => plane
                .row(r)
                .to_slice()
                .expect("rows of unit stride are contiguous"),
            Rows::Copied(flat, w) => &flat[r * w..(r + 1) * w],
        }
    }
}

/// The image of `plane` whose rows and columns show the plane's lines `rows` and `cols`
/// (no means): row-major, `rows.len()` × `cols.len()`.
pub fn gather<T: Copy>(
    plane: ArrayView2<T>,
    rows: &[usize],
    cols: &[usize],
) -> KernelResult<Vec<T>> {
    let (h, w) = plane.dim();
    Lines::Each(rows).check(h, "row")?;
    Lines::Each(cols).check(w, "column")?;
    if rows.is_empty() || cols.is_empty() {
        return Ok(Vec::new());
    }
    let lines = Rows::of(plane)?;
    let mut out = try_with_capacity(rows.len() * cols.len(), "an image")?;
    for &r in rows {
        let line = lines.line(r);
        out.extend(cols.iter().map(|&c| line[c]));
    }
    Ok(out)
}

/// The image of `plane` with rows and columns from `rows` and `cols`, at least one of
/// them means (at most one: the means of means would be sums of fractions, whose value
/// depends on their order): row-major.
pub fn area_mean<T: Level>(plane: ArrayView2<T>, rows: Lines, cols: Lines) -> KernelResult<Vec<T>> {
    let (h, w) = plane.dim();
    rows.check(h, "row")?;
    cols.check(w, "column")?;
    let (height, width) = (rows.len(), cols.len());
    if height == 0 || width == 0 {
        return Ok(Vec::new());
    }
    let lines = Rows::copied(plane)?;
    let pw = w;
    let mut out = try_with_capacity(height * width, "an image")?;
    match (rows, cols) {
        (Lines::Mean(start, end), Lines::Each(index)) => {
            // Each plane column's mean once, then the image's columns gathered from them
            // (an enlarged axis shows a column several times).
            let mut sums: Vec<i64> = try_vec_filled(pw, 0, "a row of sums")?;
            let mut means: Vec<T> = try_with_capacity(pw, "a row of means")?;
            for (&s, &e) in start.iter().zip(end) {
                if e - s == 1 {
                    // A run of one line: its mean is the line itself (rint and the clip
                    // give a stored value back unchanged).
                    let line = lines.line(s);
                    out.extend(index.iter().map(|&c| line[c]));
                    continue;
                }
                sums.fill(0);
                for r in s..e {
                    for (sum, &v) in sums.iter_mut().zip(lines.line(r)) {
                        *sum += v.wide();
                    }
                }
                let count = (e - s) as f64;
                means.clear();
                means.extend(sums.iter().map(|&sum| T::from_mean(sum as f64 / count)));
                out.extend(index.iter().map(|&c| means[c]));
            }
        }
        (Lines::Each(index), Lines::Mean(start, end)) => {
            // Running sums along the row: each column's sum is a difference of two.
            let mut running: Vec<i64> = try_vec_filled(pw + 1, 0, "a row of sums")?;
            for &r in index {
                let line = lines.line(r);
                for (j, &v) in line.iter().enumerate() {
                    running[j + 1] = running[j] + v.wide();
                }
                out.extend(start.iter().zip(end).map(|(&s, &e)| {
                    if e - s == 1 {
                        line[s] // a run of one column: its value
                    } else {
                        T::from_mean((running[e] - running[s]) as f64 / (e - s) as f64)
                    }
                }));
            }
        }
        _ => {
            return Err(KernelError::InvalidArgument(
                "means along exactly one axis (the other gathered)".into(),
            ))
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    fn plane(h: usize, w: usize, fortran: bool) -> Array2<i16> {
        Array2::from_shape_fn((h, w).set_f(fortran), |(y, x)| (y * 10 + x) as i16 - 40)
    }

    #[test]
    fn gathers_in_any_memory_order() {
        for fortran in [false, true] {
            let p = plane(4, 5, fortran);
            let out = gather(p.view(), &[3, 0, 0], &[4, 1]).unwrap();
            assert_eq!(
                out,
                vec![
                    p[[3, 4]],
                    p[[3, 1]],
                    p[[0, 4]],
                    p[[0, 1]],
                    p[[0, 4]],
                    p[[0, 1]]
                ]
            );
        }
    }

    #[test]
    fn means_round_half_to_even_and_clip() {
        // Rows 0..2 of column 0: (-40 + -30) / 2 = -35; rows 1..3 of column 1: (-29 + -19) / 2 = -24.
        let p = plane(4, 5, false);
        let out = area_mean(
            p.view(),
            Lines::Mean(&[0, 1], &[2, 3]),
            Lines::Each(&[0, 1]),
        )
        .unwrap();
        assert_eq!(out, vec![-35, -34, -25, -24]);
        let halves = Array2::from_shape_vec((1, 4), vec![1u8, 2, 3, 4]).unwrap();
        // 1.5 → 2, 3.5 → 4, 2.5 → 2 (ties to even).
        let out = area_mean(
            halves.view(),
            Lines::Each(&[0]),
            Lines::Mean(&[0, 2, 1], &[2, 4, 3]),
        )
        .unwrap();
        assert_eq!(out, vec![2, 4, 2]);
        let top = Array2::from_shape_vec((2, 1), vec![u32::MAX, u32::MAX]).unwrap();
        assert_eq!(
            area_mean(top.view(), Lines::Mean(&[0], &[2]), Lines::Each(&[0])).unwrap(),
            vec![u32::MAX]
        );
    }

    #[test]
    fn runs_of_one_line_are_the_line() {
        // Runs of one and of two lines side by side, along either axis, against the
        // same means taken one by one; the extremes of the type come back unchanged.
        let mut p = plane(4, 6, true);
        p[[0, 0]] = i16::MIN;
        p[[3, 5]] = i16::MAX;
        let rows = area_mean(
            p.view(),
            Lines::Mean(&[0, 1, 3], &[1, 3, 4]),
            Lines::Each(&[5, 0, 2]),
        )
        .unwrap();
        let mean2 = |a: i16, b: i16| i16::from_mean((a as f64 + b as f64) / 2.0);
        assert_eq!(
            rows,
            vec![
                p[[0, 5]],
                p[[0, 0]],
                p[[0, 2]],
                mean2(p[[1, 5]], p[[2, 5]]),
                mean2(p[[1, 0]], p[[2, 0]]),
                mean2(p[[1, 2]], p[[2, 2]]),
                p[[3, 5]],
                p[[3, 0]],
                p[[3, 2]]
            ]
        );
        let cols = area_mean(
            p.view(),
            Lines::Each(&[3, 0]),
            Lines::Mean(&[0, 4, 5], &[4, 5, 6]),
        )
        .unwrap();
        let mean4 = |r: usize| i16::from_mean((0..4).map(|c| p[[r, c]] as f64).sum::<f64>() / 4.0);
        assert_eq!(
            cols,
            vec![
                mean4(3),
                p[[3, 4]],
                p[[3, 5]],
                mean4(0),
                p[[0, 4]],
                p[[0, 5]]
            ]
        );
    }

    #[test]
    fn refuses_runs_and_indices_outside_the_plane() {
        let p = plane(3, 3, false);
        assert!(gather(p.view(), &[3], &[0]).is_err());
        assert!(area_mean(p.view(), Lines::Mean(&[1], &[1]), Lines::Each(&[0])).is_err());
        assert!(area_mean(p.view(), Lines::Mean(&[0], &[4]), Lines::Each(&[0])).is_err());
        assert!(area_mean(p.view(), Lines::Mean(&[0], &[1]), Lines::Mean(&[0], &[1])).is_err());
    }
}
