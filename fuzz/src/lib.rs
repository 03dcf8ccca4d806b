//! Shared pieces of medground's fuzz targets: turning fuzz bytes into small volumes
//! (optionally behind non-contiguous views), and plain reference implementations
//! (flood fill, brute-force moments, contacts, overlaps, slice areas) that the
//! targets compare the kernels against.

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;

use medground::ccl::Connectivity;
use medground::label::Label;
use ndarray::{s, Array3, ArrayView3, Axis, ShapeBuilder};

pub const CONNECTIVITIES: [Connectivity; 3] =
    [Connectivity::Face, Connectivity::Edge, Connectivity::Vertex];

/// Reads header bytes and values from the fuzz input; past its end it yields zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos.min(self.data.len())..]
    }
}

/// The header the `label`, `stats` and `shape` targets share:
/// `[dtype, flags, layout param, nz, ny, nx, palette]`, each side 0..=12 and
/// `flags` bit 0 making a 2D image (one plane).
pub struct Header {
    pub dtype: u8,
    pub flags: u8,
    pub param: u8,
    pub shape: [usize; 3],
    pub palette: usize,
}

impl Header {
    pub fn read(b: &mut Bytes<'_>) -> Self {
        let dtype = b.byte();
        let flags = b.byte();
        let param = b.byte();
        let mut shape = [
            b.byte() as usize % 13,
            b.byte() as usize % 13,
            b.byte() as usize % 13,
        ];
        if flags & 1 == 1 {
            shape[0] = 1;
        }
        let palette = 2 + b.byte() as usize % 4;
        Header {
            dtype,
            flags,
            param,
            shape,
            palette,
        }
    }
}

/// A mask element type the targets build volumes of.
pub trait Elem: Label + Default {
    const NAME: &'static str;
    /// `PALETTE[0]` is background; the others are a few label values, extremes included.
    const PALETTE: &'static [Self];
    /// A nonzero value outside the palette, written where a strided view must not look.
    const JUNK: Self;
}

impl Elem for u8 {
    const NAME: &'static str = "u8";
    const PALETTE: &'static [Self] = &[0, 1, 2, 255, 7];
    const JUNK: Self = 99;
}

impl Elem for u16 {
    const NAME: &'static str = "u16";
    const PALETTE: &'static [Self] = &[0, 1, 2, 65535, 300];
    const JUNK: Self = 999;
}

impl Elem for i32 {
    const NAME: &'static str = "i32";
    const PALETTE: &'static [Self] = &[0, 1, -1, i32::MIN, i32::MAX];
    const JUNK: Self = 12345;
}

impl Elem for bool {
    const NAME: &'static str = "bool";
    const PALETTE: &'static [Self] = &[false, true];
    const JUNK: Self = true;
}

/// Runs `$body` with `$T` bound to the element type that `$sel` picks.
#[macro_export]
macro_rules! with_elem {
    ($sel:expr, $T:ident, $body:block) => {
        match $sel % 4 {
            0 => {
                type $T = u8;
                $body
            }
            1 => {
                type $T = u16;
                $body
            }
            2 => {
                type $T = i32;
                $body
            }
            _ => {
                type $T = bool;
                $body
            }
        }
    };
}

/// Maps a byte to a palette value; `k` (2..) distinct values are in use.
#[inline]
pub fn pick<T: Elem>(byte: u8, k: usize) -> T {
    let k = k.clamp(2, T::PALETTE.len());
    T::PALETTE[byte as usize % k]
}

/// A C-ordered volume of `shape` whose voxels take palette values from `values`
/// (zero past its end).
pub fn volume<T: Elem>(shape: [usize; 3], values: &[u8], k: usize) -> Array3<T> {
    let nx = shape[2];
    let ny = shape[1];
    Array3::from_shape_fn((shape[0], shape[1], shape[2]), |(z, y, x)| {
        let i = (z * ny + y) * nx + x;
        pick(values.get(i).copied().unwrap_or(0), k)
    })
}

/// How the kernels see a volume: the same logical values, laid out differently.
#[derive(Debug, Clone, Copy)]
pub enum Layout {
    C,
    Fortran,
    /// Axes whose bit is set are stored reversed (negative strides in the view).
    Reversed(u8),
    /// Stored with axes permuted (index into `PERMS`), viewed back in logical order.
    Permuted(usize),
    /// Every `step`-th element from `offset` of a larger array full of junk.
    Stepped([usize; 3], [usize; 3]),
}

const PERMS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

impl Layout {
    pub fn from_bytes(mode: u8, param: u8) -> Layout {
        match mode % 5 {
            0 => Layout::C,
            1 => Layout::Fortran,
            2 => Layout::Reversed(1 + param % 7),
            3 => Layout::Permuted(1 + param as usize % 5),
            _ => {
                let step = [
                    1 + (param % 3) as usize,
                    1 + (param / 3 % 3) as usize,
                    1 + (param / 9 % 3) as usize,
                ];
                let offset = [
                    (param / 27 % 2) as usize % step[0],
                    (param / 54 % 2) as usize % step[1],
                    (param / 108 % 2) as usize % step[2],
                ];
                Layout::Stepped(step, offset)
            }
        }
    }
}

/// Storage for a logical volume in some layout; `view()` shows the logical volume.
pub struct Stored<T> {
    data: Array3<T>,
    layout: Layout,
    shape: [usize; 3],
}

fn c_copy<T: Copy>(v: ArrayView3<T>) -> Array3<T> {
    let dim = v.raw_dim();
    Array3::from_shape_vec(dim, v.iter().copied().collect()).expect("shape matches")
}

fn inverse(p: [usize; 3]) -> [usize; 3] {
    let mut q = [0; 3];
    for (k, &a) in p.iter().enumerate() {
        q[a] = k;
    }
    q
}

impl<T: Copy> Stored<T> {
    pub fn new(logical: &Array3<T>, layout: Layout, junk: T) -> Self {
        let sh = logical.shape();
        let shape = [sh[0], sh[1], sh[2]];
        let data = match layout {
            Layout::C => logical.clone(),
            Layout::Fortran => {
                let mut d = Array3::from_elem((shape[0], shape[1], shape[2]).f(), junk);
                d.assign(logical);
                d
            }
            Layout::Reversed(mask) => {
                let mut v = logical.view();
                for ax in 0..3 {
                    if mask >> ax & 1 == 1 {
                        v.invert_axis(Axis(ax));
                    }
                }
                c_copy(v)
            }
            Layout::Permuted(p) => c_copy(logical.view().permuted_axes(PERMS[p])),
            Layout::Stepped(step, off) => {
                let big = [0, 1, 2].map(|a| off[a] + shape[a] * step[a]);
                let mut d = Array3::from_elem((big[0], big[1], big[2]), junk);
                d.slice_mut(s![
                    off[0]..big[0];step[0],
                    off[1]..big[1];step[1],
                    off[2]..big[2];step[2]
                ])
                .assign(logical);
                d
            }
        };
        Stored {
            data,
            layout,
            shape,
        }
    }

    pub fn view(&self) -> ArrayView3<'_, T> {
        match self.layout {
            Layout::C | Layout::Fortran => self.data.view(),
            Layout::Reversed(mask) => {
                let mut v = self.data.view();
                for ax in 0..3 {
                    if mask >> ax & 1 == 1 {
                        v.invert_axis(Axis(ax));
                    }
                }
                v
            }
            Layout::Permuted(p) => self.data.view().permuted_axes(inverse(PERMS[p])),
            Layout::Stepped(step, off) => {
                let end = [0, 1, 2].map(|a| off[a] + self.shape[a] * step[a]);
                self.data.slice(s![
                    off[0]..end[0];step[0],
                    off[1]..end[1];step[1],
                    off[2]..end[2];step[2]
                ])
            }
        }
    }
}

/// Offsets of the neighbours of a voxel under `conn`, as `(dz, dy, dx)`.
pub fn offsets(conn: Connectivity) -> Vec<[isize; 3]> {
    let max_nonzero = match conn {
        Connectivity::Face => 1,
        Connectivity::Edge => 2,
        Connectivity::Vertex => 3,
    };
    let mut out = Vec::new();
    for dz in -1isize..=1 {
        for dy in -1isize..=1 {
            for dx in -1isize..=1 {
                let k = (dz != 0) as usize + (dy != 0) as usize + (dx != 0) as usize;
                if k >= 1 && k <= max_nonzero {
                    out.push([dz, dy, dx]);
                }
            }
        }
    }
    out
}

/// Offsets that come later in raster order, so each neighbour pair is met once.
pub fn forward_offsets(conn: Connectivity) -> Vec<[isize; 3]> {
    offsets(conn)
        .into_iter()
        .filter(|o| *o > [0, 0, 0])
        .collect()
}

/// The neighbour of `(z, y, x)` at `o`, if inside `shape`.
#[inline]
pub fn step(shape: [usize; 3], p: [usize; 3], o: [isize; 3]) -> Option<[usize; 3]> {
    let mut q = [0usize; 3];
    for a in 0..3 {
        let v = p[a] as isize + o[a];
        if v < 0 || v as usize >= shape[a] {
            return None;
        }
        q[a] = v as usize;
    }
    Some(q)
}

pub fn shape_of<T>(a: &Array3<T>) -> [usize; 3] {
    let s = a.shape();
    [s[0], s[1], s[2]]
}

/// Reference labelling by breadth-first flood fill: components numbered 1..=n in the
/// raster order of their first voxel. Returns the C-ordered labels and n.
pub fn flood_fill<T: Label>(a: &Array3<T>, conn: Connectivity, binary: bool) -> (Vec<u32>, u32) {
    let shape = shape_of(a);
    let [_, ny, nx] = shape;
    let offs = offsets(conn);
    let flat: Vec<T> = a.iter().copied().collect();
    let mut out = vec![0u32; flat.len()];
    let mut n = 0u32;
    let mut queue = VecDeque::new();
    for start in 0..flat.len() {
        if flat[start].is_zero() || out[start] != 0 {
            continue;
        }
        n += 1;
        out[start] = n;
        queue.push_back(start);
        while let Some(i) = queue.pop_front() {
            let p = [i / (ny * nx), i / nx % ny, i % nx];
            for &o in &offs {
                let Some(q) = step(shape, p, o) else { continue };
                let j = (q[0] * ny + q[1]) * nx + q[2];
                if out[j] == 0 && !flat[j].is_zero() && (binary || flat[j] == flat[i]) {
                    out[j] = n;
                    queue.push_back(j);
                }
            }
        }
    }
    (out, n)
}

/// Brute-force contacts: for each pair of distinct nonzero keys, the number of
/// neighbouring voxel pairs under `conn`.
pub fn ref_contacts<T: Label>(a: &Array3<T>, conn: Connectivity) -> Vec<(i128, i128, u64)> {
    let shape = shape_of(a);
    let offs = forward_offsets(conn);
    let mut map: BTreeMap<(i128, i128), u64> = BTreeMap::new();
    for ((z, y, x), &v) in a.indexed_iter() {
        if v.is_zero() {
            continue;
        }
        for &o in &offs {
            let Some(q) = step(shape, [z, y, x], o) else {
                continue;
            };
            let w = a[q];
            if w.is_zero() || w == v {
                continue;
            }
            let (ka, kb) = (v.key(), w.key());
            *map.entry((ka.min(kb), ka.max(kb))).or_insert(0) += 1;
        }
    }
    map.into_iter().map(|((a, b), n)| (a, b, n)).collect()
}

/// Brute-force overlap of two maps of one shape.
pub fn ref_overlap<A: Label, B: Label>(a: &Array3<A>, b: &Array3<B>) -> Vec<(i128, i128, u64)> {
    let mut map: BTreeMap<(i128, i128), u64> = BTreeMap::new();
    for (&u, &v) in a.iter().zip(b.iter()) {
        if !u.is_zero() && !v.is_zero() {
            *map.entry((u.key(), v.key())).or_insert(0) += 1;
        }
    }
    map.into_iter().map(|((a, b), n)| (a, b, n)).collect()
}

/// Exact integer moments of one label, computed voxel by voxel.
#[derive(Debug, Clone, PartialEq)]
pub struct RefMoments {
    pub count: u64,
    pub min: [u32; 3],
    pub max: [u32; 3],
    pub s1: [u128; 3],
    pub s2: [u128; 6],
}

impl Default for RefMoments {
    fn default() -> Self {
        RefMoments {
            count: 0,
            min: [u32::MAX; 3],
            max: [0; 3],
            s1: [0; 3],
            s2: [0; 6],
        }
    }
}

impl RefMoments {
    pub fn add(&mut self, p: [usize; 3]) {
        let [z, y, x] = p.map(|v| v as u128);
        self.count += 1;
        for (a, &v) in p.iter().enumerate() {
            self.min[a] = self.min[a].min(v as u32);
            self.max[a] = self.max[a].max(v as u32);
        }
        self.s1[0] += z;
        self.s1[1] += y;
        self.s1[2] += x;
        self.s2[0] += z * z;
        self.s2[1] += y * y;
        self.s2[2] += x * x;
        self.s2[3] += z * y;
        self.s2[4] += z * x;
        self.s2[5] += y * x;
    }
}

/// One region's moments, intensity values and voxels, in raster order.
pub type RefRegion = (RefMoments, Vec<f64>, Vec<[usize; 3]>);

/// Per key: moments, intensity values and voxels, in key order.
pub fn ref_regions<T: Label>(
    a: &Array3<T>,
    intensity: Option<&Array3<f64>>,
) -> BTreeMap<i128, RefRegion> {
    let mut map: BTreeMap<i128, RefRegion> = BTreeMap::new();
    for ((z, y, x), &v) in a.indexed_iter() {
        if v.is_zero() {
            continue;
        }
        let e = map.entry(v.key()).or_default();
        e.0.add([z, y, x]);
        if let Some(img) = intensity {
            e.1.push(img[[z, y, x]]);
        }
        e.2.push([z, y, x]);
    }
    map
}

/// Brute-force slice areas for `keys` (rows) along `axis`.
pub fn ref_slice_areas<T: Label>(a: &Array3<T>, keys: &[i128], axis: usize) -> Vec<u64> {
    let size = a.shape()[axis];
    let mut out = vec![0u64; keys.len() * size];
    for ((z, y, x), &v) in a.indexed_iter() {
        if v.is_zero() {
            continue;
        }
        if let Ok(r) = keys.binary_search(&v.key()) {
            out[r * size + [z, y, x][axis]] += 1;
        }
    }
    out
}

/// Rayon pools of 1..=8 threads, built once per process.
pub fn pool(threads: usize) -> &'static rayon::ThreadPool {
    static POOLS: OnceLock<Vec<rayon::ThreadPool>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| {
        (1..=8)
            .map(|n| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("thread pool")
            })
            .collect()
    });
    &pools[threads.clamp(1, 8) - 1]
}

/// Whether `|a - b|` is within `tol`, treating equal infinities as equal.
pub fn close(a: f64, b: f64, tol: f64) -> bool {
    a == b || (a - b).abs() <= tol
}

/// Intensity scales: from tiny to values whose squares overflow.
pub const SCALES: [f64; 8] = [1.0, 1e-3, 1e-30, 0.5, 1e6, 1e15, 1e100, 1e300];
/// Offsets added to every intensity, to test cancellation in the variance.
pub const OFFSETS: [f64; 4] = [0.0, 1e9, -1e12, 0.1];

/// Intensities `offset + i16 · scale` (scale and offset picked by `iflags`), two
/// bytes a voxel from `bytes`; past its end from a hash of the voxel index.
pub fn intensities(shape: [usize; 3], bytes: &[u8], iflags: u8) -> Array3<f64> {
    let scale = SCALES[iflags as usize % 8];
    let offset = OFFSETS[(iflags as usize >> 3) % 4];
    Array3::from_shape_fn((shape[0], shape[1], shape[2]), |(z, y, x)| {
        let i = (z * shape[1] + y) * shape[2] + x;
        let raw = match bytes.get(2 * i..2 * i + 2) {
            Some(&[lo, hi]) => i16::from_le_bytes([lo, hi]),
            _ => ((i as u32).wrapping_mul(2654435761) >> 16) as u16 as i16,
        };
        offset + raw as f64 * scale
    })
}

/// Checks one region's intensity statistics against its values.
pub fn check_intensity(s: &medground::regions::IntensityStats, values: &[f64], ctx: &str) {
    assert_eq!(s.count, values.len() as u64, "{ctx}: intensity count");
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!((s.min, s.max), (lo, hi), "{ctx}: intensity min/max");
    let big = lo.abs().max(hi.abs());
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    assert!(
        s.mean.is_finite(),
        "{ctx}: mean {} of finite values",
        s.mean
    );
    let tol = 1e-12 * big;
    assert!(
        lo - tol <= s.mean && s.mean <= hi + tol,
        "{ctx}: mean {} outside [{lo}, {hi}]",
        s.mean
    );
    assert!(
        close(s.mean, mean, 1e-9 * big),
        "{ctx}: mean {} vs {mean}",
        s.mean
    );
    let std = s.std();
    assert!(!std.is_nan() && std >= 0.0, "{ctx}: std {std}");
    // Squares of values past ~1e154 overflow, here as in numpy; check the rest.
    if big <= 1e100 {
        let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let want = var.sqrt();
        // Rounding in the means leaves about n·eps·|v| of noise in the deviations.
        let noise = 1e-11 * big;
        assert!(std.is_finite(), "{ctx}: std {std} of moderate values");
        assert!(
            std <= (hi - lo) + noise,
            "{ctx}: std {std} above the range {}",
            hi - lo
        );
        assert!(
            close(std, want, 1e-6 * (hi - lo) + noise),
            "{ctx}: std {std} vs {want}"
        );
    }
}
