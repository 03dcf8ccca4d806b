//! The Python face of the kernels: converts arrays, dispatches on dtype, releases the
//! GIL, and turns kernel errors and panics into Python exceptions. No geometry here.
//!
//! Arrays are walked as they lie in memory: an array whose first axis varies fastest
//! (Fortran order, as nibabel hands them out) is handed to the kernels with its axes
//! reversed, which makes it C-ordered, instead of being copied.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{Array2, ArrayView2, ArrayView3, ArrayViewD, Axis, Ix2, Ix3};
use numpy::{
    IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use crate::alloc::{try_collect_exact, try_with_capacity};
use crate::ccl::{group_components, label_runs, largest_k_map, Connectivity, OutLabel, RunLabels};
use crate::encode::png as png_kernel;
use crate::error::{KernelError, KernelResult};
use crate::label::{relabel as relabel_kernel, Label, LabelIndex};
use crate::layout::{
    check_spacing, kernel_axis, oriented_spacing, unreverse_moments, walk_reversed,
};
use crate::planar::{
    body_lines as body_lines_kernel, dilate_diamond, object_stats as object_stats_kernel,
    rle_by_label as rle_kernel, Ring,
};
use crate::regions::{
    moment_shapes, present_labels, region_columns, region_stats, IntensityRows, IntensityStats,
};
use crate::relations::{
    contacts as contacts_kernel, overlap as overlap_kernel,
    slice_areas_along as slice_areas_along_kernel,
};
use crate::resample::{area_mean, gather, Lines};
use crate::rle::{compress_counts, decode_window as decode_window_kernel, decompress_counts};
use crate::sample::{
    c_order_samples as samples_kernel, c_order_side_counts as side_counts_kernel,
    side_counts as exact_sides_kernel, Midline,
};
use crate::shape2d::shape2d as shape2d_kernel;
use crate::surface::surface_areas as surface_kernel;

impl From<KernelError> for PyErr {
    fn from(e: KernelError) -> PyErr {
        match e {
            KernelError::InvalidArgument(m) | KernelError::ShapeMismatch(m) => {
                PyValueError::new_err(m)
            }
            KernelError::Overflow(m) => PyOverflowError::new_err(m),
            KernelError::OutOfMemory(m) => PyMemoryError::new_err(m),
        }
    }
}

/// Every dtype a label map or mask may have: `(variant, element type, numpy name)`.
/// A callback macro gets the list after its own arguments and a `;`.
/// The enum, the dispatch macro and the messages below are all generated from it.
macro_rules! label_dtypes {
    ($callback:ident!($($args:tt)*)) => {
        $callback! {$($args)*;
            (Bool, bool, "bool"), (U8, u8, "uint8"), (U16, u16, "uint16"), (U32, u32, "uint32"),
            (U64, u64, "uint64"), (I8, i8, "int8"), (I16, i16, "int16"), (I32, i32, "int32"),
            (I64, i64, "int64")
        }
    };
}

/// Every dtype an intensity image may have (the label dtypes and floats).
macro_rules! value_dtypes {
    ($callback:ident!($($args:tt)*)) => {
        $callback! {$($args)*;
            (F64, f64, "float64"), (F32, f32, "float32"), (U8, u8, "uint8"), (U16, u16, "uint16"),
            (U32, u32, "uint32"), (U64, u64, "uint64"), (I8, i8, "int8"), (I16, i16, "int16"),
            (I32, i32, "int32"), (I64, i64, "int64"), (Bool, bool, "bool")
        }
    };
}

/// An enum of readonly arrays, one variant per dtype of a list.
macro_rules! array_enum {
    ($(#[$meta:meta])* $name:ident; $(($variant:ident, $t:ty, $dtype:literal)),+) => {
        $(#[$meta])*
        enum $name<'py> {
            $($variant(PyReadonlyArrayDyn<'py, $t>),)+
        }

        impl<'py> $name<'py> {
            /// The array as the variant of its dtype; None for anything else. The dtype is
            /// read once and only its variant extracted: trying the variants in turn made
            /// a failed extraction, and its error, per variant before the one that fits
            /// (50 µs of a call on an int32 map, more than some kernels take).
            fn of(obj: &Bound<'py, PyAny>) -> Option<Self> {
                let dtype = obj.cast::<PyUntypedArray>().ok()?.dtype();
                let py = obj.py();
                $(
                    if dtype.is_equiv_to(&numpy::dtype::<$t>(py)) {
                        return obj.extract::<PyReadonlyArrayDyn<'py, $t>>().ok().map(Self::$variant);
                    }
                )+
                None
            }
        }
    };
}

/// Binds `$v` to the array's view and evaluates `$body` once per dtype.
macro_rules! dispatch {
    ($enum:ident, $arr:expr, $v:ident, $body:expr; $(($variant:ident, $t:ty, $dtype:literal)),+) => {
        match $arr {
            $($enum::$variant(a) => {
                let $v = a.as_array();
                $body
            })+
        }
    };
}

/// The numpy names of a dtype list, for messages.
macro_rules! dtype_names {
    (; $(($variant:ident, $t:ty, $dtype:literal)),+) => {
        concat!($($dtype, ", ",)+)
    };
}

label_dtypes!(array_enum!(
    /// A label map or mask of any supported dtype.
    LabelArray));
value_dtypes!(array_enum!(
    /// An intensity image of any numeric dtype.
    ValueArray));

macro_rules! with_labels {
    ($arr:expr, $v:ident => $body:expr) => {
        label_dtypes!(dispatch!(LabelArray, $arr, $v, $body))
    };
}

macro_rules! with_values {
    ($arr:expr, $v:ident => $body:expr) => {
        value_dtypes!(dispatch!(ValueArray, $arr, $v, $body))
    };
}

/// The supported label dtypes, for messages ("bool, uint8, …, int64").
fn supported() -> &'static str {
    label_dtypes!(dtype_names!()).trim_end_matches(", ")
}

fn extract_labels<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<LabelArray<'py>> {
    LabelArray::of(obj).ok_or_else(|| {
        let dtype = obj
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_else(|_| obj.get_type().to_string());
        PyTypeError::new_err(format!(
            "{what} must be a numpy array of {}; got {dtype}",
            supported()
        ))
    })
}

/// How a view is handed to the kernels: as a 3D view in memory order.
struct Oriented<'a, T> {
    view: ArrayView3<'a, T>,
    /// The axes were reversed (Fortran-ordered input).
    reversed: bool,
    ndim: usize,
}

fn orient<'a, T>(view: ArrayViewD<'a, T>) -> PyResult<Oriented<'a, T>> {
    let ndim = view.ndim();
    if ndim != 2 && ndim != 3 {
        return Err(PyValueError::new_err(format!(
            "expected a 2D or 3D array, got {ndim} dimensions with shape {:?}",
            view.shape()
        )));
    }
    let reversed = walk_reversed(view.shape(), view.strides());
    Ok(Oriented {
        view: orient_like(view, reversed)?,
        reversed,
        ndim,
    })
}

/// A 2D or 3D view as the kernels walk it: axes reversed when `reversed`, then a unit
/// axis in front of a 2D view. Used to walk a second array (an intensity image, a
/// second label map) in the first one's orientation.
fn orient_like<S: ndarray::RawData>(
    view: ndarray::ArrayBase<S, ndarray::IxDyn>,
    reversed: bool,
) -> PyResult<ndarray::ArrayBase<S, Ix3>> {
    let view = if reversed { view.reversed_axes() } else { view };
    let view = if view.ndim() == 2 {
        view.insert_axis(Axis(0))
    } else {
        view
    };
    view.into_dimensionality::<Ix3>()
        .map_err(|e| PyRuntimeError::new_err(format!("internal error orienting array: {e}")))
}

/// How many threads kernels run on, as the caller set it.
#[derive(Clone)]
enum Threads {
    /// One per core (rayon's default: the cores, or `RAYON_NUM_THREADS`).
    All,
    /// One: the calling thread itself (see `OWN`).
    One,
    /// A pool of two or more threads.
    Pool(Arc<rayon::ThreadPool>),
}

static THREADS: Mutex<Threads> = Mutex::new(Threads::All);

/// The pool of `Threads::All` for a thread that is the worker of a pool of its own (`OWN`),
/// built when first used.
static ALL: OnceLock<rayon::ThreadPool> = OnceLock::new();

/// A one-thread pool for a caller that cannot have its own (`OWN`), built when first used.
static ONE: OnceLock<rayon::ThreadPool> = OnceLock::new();

thread_local! {
    /// This thread as the one worker of a pool of its own, built the first time it runs a
    /// kernel on one thread: the kernel and its parallel iterators then run here, in turn.
    /// Handing each call to a pool thread instead cost a wake-up of the other core per call
    /// (thousands a case: a real-size CT took 6.1 s on one thread against 4.6 s with the
    /// process pinned to one core). `Some(None)`: the pool could not be built; the calls go
    /// to `ONE`. The pool lives as long as the thread (rayon then leaks its small registry).
    static OWN: RefCell<Option<Option<rayon::ThreadPool>>> = const { RefCell::new(None) };

    /// This thread's kernels run on it alone, whatever `set_num_threads` says
    /// (`kernels_on_caller`): set by a thread whose calls would otherwise queue in the
    /// pool behind another thread's kernels.
    static ON_CALLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread's kernels run on it alone (true) or on the threads
/// `set_num_threads` sets (false, the default); returns the setting it replaces. The
/// setting belongs to the calling thread: other threads keep theirs.
#[pyfunction]
fn kernels_on_caller(on: bool) -> bool {
    ON_CALLER.with(|cell| cell.replace(on))
}

fn pool_error(e: rayon::ThreadPoolBuildError) -> PyErr {
    PyRuntimeError::new_err(format!("cannot start the kernels' threads: {e}"))
}

/// Limits the kernels to `n` threads (0: one per core, rayon's default).
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    let threads = match n {
        0 => Threads::All,
        1 => Threads::One,
        n => Threads::Pool(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map_err(pool_error)?,
        )),
    };
    *THREADS.lock().unwrap_or_else(|e| e.into_inner()) = threads;
    Ok(())
}

/// The pool kept in `cell`, built with `threads` threads (0: one per core) when first used.
fn lazy_pool(
    cell: &'static OnceLock<rayon::ThreadPool>,
    threads: usize,
) -> PyResult<&'static rayon::ThreadPool> {
    if let Some(pool) = cell.get() {
        return Ok(pool);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(pool_error)?;
    Ok(cell.get_or_init(|| pool))
}

/// The number of threads kernels run on.
#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    let threads = THREADS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(match threads {
        // rayon's global pool, unless this thread is the worker of a pool of its own.
        Threads::All if rayon::current_thread_index().is_none() => rayon::current_num_threads(),
        Threads::All => lazy_pool(&ALL, 0)?.current_num_threads(),
        Threads::One => 1,
        Threads::Pool(pool) => pool.current_num_threads(),
    })
}

/// `f` on this thread, as the one worker of its own pool (built the first time).
fn on_this_thread<T: Send, F: FnOnce() -> T + Send>(f: F) -> PyResult<T> {
    OWN.with(|own| {
        let mut own = own.borrow_mut();
        if own.is_none() {
            *own = Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .use_current_thread()
                    .build()
                    .ok(),
            );
        }
        match own.as_ref().and_then(Option::as_ref) {
            // This thread is the pool's worker: `install` runs `f` right here.
            Some(pool) => Ok(pool.install(f)),
            None => Ok(lazy_pool(&ONE, 1)?.install(f)),
        }
    })
}

/// Runs a kernel without the GIL on the threads set by `set_num_threads`, turning a panic
/// into a RuntimeError.
fn run<T: Send, F: FnOnce() -> T + Send>(py: Python<'_>, what: &str, f: F) -> PyResult<T> {
    let threads = if ON_CALLER.with(Cell::get) {
        Threads::One
    } else {
        THREADS.lock().unwrap_or_else(|e| e.into_inner()).clone()
    };
    py.detach(|| {
        catch_unwind(AssertUnwindSafe(|| match threads {
            // Here, its parallel iterators in rayon's global pool; from a thread that ran
            // kernels on one thread before (the worker of a pool of its own, whose
            // iterators would stay on it), in a pool of one thread per core.
            Threads::All if rayon::current_thread_index().is_none() => Ok(f()),
            Threads::All => lazy_pool(&ALL, 0).map(|pool| pool.install(f)),
            Threads::One => on_this_thread(f),
            Threads::Pool(pool) => Ok(pool.install(f)),
        }))
    })
    .map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        PyRuntimeError::new_err(format!("internal error in medground._core.{what}: {msg}"))
    })?
}

fn connectivity_for(ndim: usize, connectivity: u32) -> PyResult<Connectivity> {
    Ok(Connectivity::from_count(ndim, connectivity)?)
}

/// Allocates a zeroed output array shaped like the input, in the input's memory
/// order, and writes into it through `fill` without the GIL.
fn new_output<'py, U, F>(
    py: Python<'py>,
    shape: &[usize],
    fortran: bool,
    what: &str,
    fill: F,
) -> PyResult<Bound<'py, PyArrayDyn<U>>>
where
    U: numpy::Element + Send,
    F: FnOnce(&mut [U]) + Send,
{
    // numpy.zeros from Python, not PyArray::zeros: an allocation numpy cannot make is then
    // a MemoryError the case can report, not a panic on a null pointer.
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", numpy::dtype::<U>(py))?;
    kwargs.set_item("order", if fortran { "F" } else { "C" })?;
    let out = py
        .import("numpy")?
        .getattr("zeros")?
        .call((shape.to_vec(),), Some(&kwargs))?
        .cast_into::<PyArrayDyn<U>>()
        .map_err(PyErr::from)?;
    {
        let mut rw = out.readwrite();
        let slice = rw.as_slice_mut().map_err(|e| {
            PyRuntimeError::new_err(format!("internal error: output not contiguous: {e}"))
        })?;
        run(py, what, move || fill(slice))?;
    }
    Ok(out)
}

fn write_labels<'py, T: Label, U: OutLabel + numpy::Element>(
    py: Python<'py>,
    rl: &RunLabels<T>,
    shape: &[usize],
    fortran: bool,
    map: Option<&[u32]>,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(
        new_output::<U, _>(py, shape, fortran, "connected_components", |out| {
            rl.write(out, map)
        })?
        .into_any(),
    )
}

/// Writes run labels as the named unsigned dtype.
fn emit_labels<'py, T: Label>(
    py: Python<'py>,
    rl: &RunLabels<T>,
    n: u64,
    shape: &[usize],
    fortran: bool,
    out_dtype: Option<&str>,
    map: Option<&[u32]>,
) -> PyResult<Bound<'py, PyAny>> {
    let dtype = match out_dtype {
        Some(d) => d.to_string(),
        None if n <= u16::MAX as u64 => "uint16".into(),
        None if n <= u32::MAX as u64 => "uint32".into(),
        None => "uint64".into(),
    };
    let max = match dtype.as_str() {
        "uint8" => u8::MAX as u64,
        "uint16" => u16::MAX as u64,
        "uint32" => u32::MAX as u64,
        "uint64" => u64::MAX,
        other => {
            return Err(PyValueError::new_err(format!(
                "out_dtype must be uint8, uint16, uint32 or uint64, got {other}"
            )))
        }
    };
    if n > max {
        return Err(PyValueError::new_err(format!(
            "out_dtype {dtype} cannot hold {n} labels"
        )));
    }
    match dtype.as_str() {
        "uint8" => write_labels::<T, u8>(py, rl, shape, fortran, map),
        "uint16" => write_labels::<T, u16>(py, rl, shape, fortran, map),
        "uint32" => write_labels::<T, u32>(py, rl, shape, fortran, map),
        _ => write_labels::<T, u64>(py, rl, shape, fortran, map),
    }
}

/// Connected components of a 2D or 3D mask; returns `(labels, n)`.
#[pyfunction]
#[pyo3(signature = (mask, connectivity, binary, out_dtype=None))]
fn connected_components<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    connectivity: u32,
    binary: bool,
    out_dtype: Option<&str>,
) -> PyResult<(Bound<'py, PyAny>, u64)> {
    let arr = extract_labels(mask, "mask")?;
    with_labels!(arr, v => {
        let shape = v.shape().to_vec();
        let o = orient(v)?;
        let conn = connectivity_for(o.ndim, connectivity)?;
        let view = o.view;
        let rl = run(py, "connected_components", move || label_runs(view, conn, binary))??;
        let n = rl.n as u64;
        Ok((emit_labels(py, &rl, n, &shape, o.reversed, out_dtype, None)?, n))
    })
}

/// `object_components`' answer: the object map, the number of objects, each component's
/// value and each component's object.
type ObjectComponents<'py> = (Bound<'py, PyAny>, u64, Bound<'py, PyAny>, Bound<'py, PyAny>);

/// The objects of a label map from its components in one labelling pass: the rule
/// `rules[i]` says what the components of label `keys[i]` become (1: one object for all of
/// them; 2: an object each; any other rule, or a label without one: nothing). Objects are
/// numbered `1..` in ascending label, then component, order. Returns `(object map,
/// objects, values, owners)`: the map in the smallest unsigned dtype that holds the objects
/// (uint8 first), `values[c]` the label of component `c` and `owners[c]` its object (0:
/// none), both with entry 0 for the background.
#[pyfunction]
fn object_components<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    connectivity: u32,
    keys: PyReadonlyArrayDyn<'py, u64>,
    rules: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<ObjectComponents<'py>> {
    let (keys, rules) = (keys.as_array(), rules.as_array());
    if keys.len() != rules.len() {
        return Err(PyValueError::new_err(format!(
            "{} labels but {} rules",
            keys.len(),
            rules.len()
        )));
    }
    let policy: HashMap<i128, u8> = keys
        .iter()
        .map(|&k| k as i128)
        .zip(rules.iter().copied())
        .collect();
    let arr = extract_labels(mask, "mask")?;
    with_labels!(arr, v => {
        let shape = v.shape().to_vec();
        let o = orient(v)?;
        let conn = connectivity_for(o.ndim, connectivity)?;
        let view = o.view;
        let (rl, values, owners, n) = run(py, "object_components", move || {
            let rl = label_runs(view, conn, false)?;
            let values = rl.values()?;
            let (owners, n) = group_components(&values, &policy)?;
            Ok::<_, KernelError>((rl, values, owners, n))
        })??;
        let dtype = match n {
            n if n <= u8::MAX as u64 => "uint8",
            n if n <= u16::MAX as u64 => "uint16",
            n if n <= u32::MAX as u64 => "uint32",
            _ => "uint64",
        };
        let map = emit_labels(py, &rl, n, &shape, o.reversed, Some(dtype), Some(&owners))?;
        Ok((map, n, values.into_pyarray(py).into_any(), owners.into_pyarray(py).into_any()))
    })
}

/// The `k` largest components relabelled `1..=k` by decreasing size; returns `(labels, n)`.
#[pyfunction]
#[pyo3(signature = (mask, k, connectivity, binary, out_dtype=None))]
fn largest_k<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    k: usize,
    connectivity: u32,
    binary: bool,
    out_dtype: Option<&str>,
) -> PyResult<(Bound<'py, PyAny>, u64)> {
    let arr = extract_labels(mask, "mask")?;
    with_labels!(arr, v => {
        let shape = v.shape().to_vec();
        let o = orient(v)?;
        let conn = connectivity_for(o.ndim, connectivity)?;
        let view = o.view;
        let (rl, map) = run(py, "largest_k", move || {
            let rl = label_runs(view, conn, binary)?;
            let map = largest_k_map(&rl.sizes()?, k)?;
            Ok::<_, KernelError>((rl, map))
        })??;
        let n = (k as u64).min(rl.n as u64);
        Ok((emit_labels(py, &rl, n, &shape, o.reversed, out_dtype, Some(&map))?, n))
    })
}

/// Removes components with fewer than `threshold` voxels (or, with `invert`, with
/// `threshold` or more); other voxels keep their values and dtype.
#[pyfunction]
#[pyo3(signature = (mask, threshold, connectivity, binary, invert))]
fn dust<'py>(
    py: Python<'py>,
    mask: &Bound<'py, PyAny>,
    threshold: u64,
    connectivity: u32,
    binary: bool,
    invert: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = extract_labels(mask, "mask")?;
    with_labels!(arr, v => {
        let shape = v.shape().to_vec();
        let o = orient(v)?;
        let conn = connectivity_for(o.ndim, connectivity)?;
        let view = o.view;
        let (rl, keep) = run(py, "dust", move || {
            let rl = label_runs(view, conn, binary)?;
            let keep = rl.keep_by_size(threshold, invert)?;
            Ok::<_, KernelError>((rl, keep))
        })??;
        let out = new_output(py, &shape, o.reversed, "dust", move |out| {
            // The oriented view's logical order is the output's memory order.
            match view.as_slice() {
                Some(src) => out.copy_from_slice(src),
                None => out.iter_mut().zip(view.iter()).for_each(|(d, s)| *d = *s),
            }
            rl.erase(out, &keep);
        })?;
        Ok(out.into_any())
    })
}

type DustInPlace = fn(Python<'_>, &Bound<'_, PyAny>, u64, u32, bool, bool) -> PyResult<()>;

fn dust_in_place_typed<T: Label + numpy::Element>(
    py: Python<'_>,
    mask: &Bound<'_, PyAny>,
    threshold: u64,
    connectivity: u32,
    binary: bool,
    invert: bool,
) -> PyResult<()> {
    let array = mask.cast::<PyArrayDyn<T>>()?;
    let mut rw = array.try_readwrite().map_err(|e| {
        PyValueError::new_err(format!(
            "in_place needs a writeable array that nothing else borrows: {e}"
        ))
    })?;
    let view = rw.as_array_mut();
    let ndim = view.ndim();
    if ndim != 2 && ndim != 3 {
        return Err(PyValueError::new_err(format!(
            "expected a 2D or 3D array, got {ndim} dimensions"
        )));
    }
    let conn = connectivity_for(ndim, connectivity)?;
    let reversed = walk_reversed(view.shape(), view.strides());
    let view = orient_like(view, reversed)?;
    run(py, "dust", move || {
        let rl = label_runs(view.view(), conn, binary)?;
        let keep = rl.keep_by_size(threshold, invert)?;
        rl.erase_view(view, &keep);
        Ok::<(), KernelError>(())
    })??;
    Ok(())
}

/// [`dust`] editing `mask` itself.
#[pyfunction]
fn dust_in_place(
    py: Python<'_>,
    mask: &Bound<'_, PyAny>,
    threshold: u64,
    connectivity: u32,
    binary: bool,
    invert: bool,
) -> PyResult<()> {
    let dtype = mask
        .getattr("dtype")?
        .getattr("name")?
        .extract::<String>()?;
    // The typed function for the array's dtype, from the one list of label dtypes.
    macro_rules! typed {
        ($name:expr; $(($variant:ident, $t:ty, $dtype:literal)),+) => {
            match $name {
                $($dtype => dust_in_place_typed::<$t> as DustInPlace,)+
                other => {
                    return Err(PyTypeError::new_err(format!(
                        "mask must be a numpy array of {}; got {other}",
                        supported()
                    )))
                }
            }
        };
    }
    let f = label_dtypes!(typed!(dtype.as_str()));
    f(py, mask, threshold, connectivity, binary, invert)
}

fn region_rows<'py, T: Label + numpy::Element>(
    py: Python<'py>,
    o: Oriented<'_, T>,
    spacing: &[f64],
    intensity: Option<&dyn IntensityRows>,
) -> PyResult<Bound<'py, PyDict>> {
    let ndim = o.ndim;
    let view = o.view;
    let reversed = o.reversed;
    // Moments go back to the caller's axis order below, so spacing stays in it.
    let sp = oriented_spacing(spacing, ndim, false);
    let (labels, cols, stats) = run(py, "regionprops", move || -> KernelResult<_> {
        let st = region_stats(view, intensity)?;
        let mut moments = st.moments;
        unreverse_moments(&mut moments, ndim, reversed);
        let shapes = moment_shapes(&moments, sp, ndim == 2)?;
        let cols = region_columns(&moments, &shapes, sp, ndim)?;
        Ok((st.index.into_labels(), cols, st.intensity))
    })??;
    let n = labels.len();
    let shaped = |v: Vec<f64>, dims: &[usize]| -> PyResult<Bound<'py, PyAny>> {
        let a = ndarray::ArrayD::from_shape_vec(dims.to_vec(), v)
            .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?;
        Ok(a.into_pyarray(py).into_any())
    };
    let shaped_i64 = |v: Vec<i64>, dims: &[usize]| -> PyResult<Bound<'py, PyAny>> {
        let a = ndarray::ArrayD::from_shape_vec(dims.to_vec(), v)
            .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?;
        Ok(a.into_pyarray(py).into_any())
    };
    let d = PyDict::new(py);
    d.set_item("label", labels.into_pyarray(py))?;
    d.set_item("voxel_count", cols.voxel_count.into_pyarray(py))?;
    d.set_item("bbox_min", shaped_i64(cols.bbox_min, &[n, ndim])?)?;
    d.set_item("bbox_max", shaped_i64(cols.bbox_max, &[n, ndim])?)?;
    d.set_item("centroid", shaped(cols.centroid, &[n, ndim])?)?;
    d.set_item("volume", cols.volume.into_pyarray(py))?;
    d.set_item("axis_lengths", shaped(cols.axis_lengths, &[n, ndim])?)?;
    d.set_item(
        "principal_axes",
        shaped(cols.principal_axes, &[n, ndim, ndim])?,
    )?;
    d.set_item("elongation", cols.elongation.into_pyarray(py))?;
    d.set_item("flatness", cols.flatness.into_pyarray(py))?;
    if ndim == 2 {
        d.set_item("eccentricity", cols.eccentricity.into_pyarray(py))?;
        d.set_item("orientation", cols.orientation.into_pyarray(py))?;
    }
    if let Some(stats) = stats {
        let column = |value: fn(&IntensityStats) -> f64| -> PyResult<_> {
            let column = try_collect_exact(stats.iter().map(value), "an intensity column")?;
            Ok(column.into_pyarray(py))
        };
        d.set_item("intensity_mean", column(|s| s.mean)?)?;
        d.set_item("intensity_std", column(IntensityStats::std)?)?;
        d.set_item("intensity_min", column(|s| s.min)?)?;
        d.set_item("intensity_max", column(|s| s.max)?)?;
    }
    Ok(d)
}

/// Region statistics of a label map: a dict of columns, one row per nonzero label.
#[pyfunction]
#[pyo3(signature = (labels, spacing, intensity=None))]
fn regionprops<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    spacing: Vec<f64>,
    intensity: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let arr = extract_labels(labels, "labels")?;
    let values = match intensity {
        Some(obj) => Some(ValueArray::of(obj).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "intensity must be a numpy array of a real numeric dtype (float32/64, ints, bool); got {}",
                obj.getattr("dtype").map(|d| d.to_string()).unwrap_or_else(|_| obj.get_type().to_string())
            ))
        })?),
        None => None,
    };
    with_labels!(arr, v => {
        let ndim = v.ndim();
        let shape = v.shape().to_vec();
        let o = orient(v)?;
        check_spacing(&spacing, ndim)?;
        match values {
            None => region_rows(py, o, &spacing, None),
            Some(values) => with_values!(values, iv => {
                if iv.shape() != shape.as_slice() {
                    return Err(PyValueError::new_err(format!(
                        "intensity must have the shape of labels {:?}, got {:?}", shape, iv.shape()
                    )));
                }
                // Walk the intensity in the label map's orientation, whatever its own.
                let iv = orient_like(iv, o.reversed)?;
                region_rows(py, o, &spacing, Some(&iv))
            }),
        }
    })
}

fn label_index_from<T: Label + numpy::Element>(
    values: &Bound<'_, PyAny>,
) -> PyResult<LabelIndex<T>> {
    let arr: PyReadonlyArrayDyn<'_, T> = values
        .extract()
        .map_err(|_| PyTypeError::new_err("region labels must have the dtype of the label map"))?;
    let labels = try_collect_exact(arr.as_array().iter().copied(), "the region labels")?;
    Ok(LabelIndex::new(labels)?)
}

/// Marching-cubes surface area of each region in `region_labels` (3D only).
#[pyfunction]
fn surface_areas<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    spacing: Vec<f64>,
    region_labels: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let arr = extract_labels(labels, "labels")?;
    with_labels!(arr, v => {
        if v.ndim() != 3 {
            return Err(PyValueError::new_err(format!("surface_area needs a 3D label map, got {} dimensions", v.ndim())));
        }
        check_spacing(&spacing, 3)?;
        let index = label_index_from(region_labels)?;
        let o = orient(v)?;
        let sp = oriented_spacing(&spacing, 3, o.reversed);
        let view = o.view;
        let areas = run(py, "surface_areas", move || surface_kernel(view, sp, &index))??;
        Ok(areas.into_pyarray(py).into_any())
    })
}

/// Perimeter, convex area and maximum Feret diameter of each region (2D only).
#[pyfunction]
fn shape2d<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    spacing: Vec<f64>,
    region_labels: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let arr = extract_labels(labels, "labels")?;
    with_labels!(arr, v => {
        if v.ndim() != 2 {
            return Err(PyValueError::new_err(format!("2D shape measures need a 2D label map, got {} dimensions", v.ndim())));
        }
        check_spacing(&spacing, 2)?;
        let index = label_index_from(region_labels)?;
        let o = orient(v)?;
        let sp = oriented_spacing(&spacing, 2, o.reversed);
        let view = o.view.index_axis_move(Axis(0), 0);
        let sp = [sp[1], sp[2]];
        let s = run(py, "shape2d", move || shape2d_kernel(view, sp, &index))??;
        let d = PyDict::new(py);
        d.set_item("perimeter", s.perimeter.into_pyarray(py))?;
        d.set_item("convex_area", s.convex_area.into_pyarray(py))?;
        d.set_item("feret_diameter_max", s.feret_diameter_max.into_pyarray(py))?;
        Ok(d)
    })
}

/// Voxel counts per region per slice along `axis`: `(labels, (n, size) int64 table)`,
/// for the given region labels or, by default, every nonzero label in ascending order.
#[pyfunction]
#[pyo3(signature = (labels, axis, region_labels=None))]
fn slice_areas<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    axis: usize,
    region_labels: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let (found, mut tables) = slice_areas_along(py, labels, vec![axis], region_labels)?;
    let table = tables.pop().expect("one table per axis");
    Ok((found, table))
}

/// [`slice_areas`] along each of `axes` in one read of the map: `(labels, [tables])`.
#[pyfunction]
#[pyo3(signature = (labels, axes, region_labels=None))]
fn slice_areas_along<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    axes: Vec<usize>,
    region_labels: Option<&Bound<'py, PyAny>>,
) -> PyResult<(Bound<'py, PyAny>, Vec<Bound<'py, PyAny>>)> {
    let arr = extract_labels(labels, "labels")?;
    with_labels!(arr, v => {
        let ndim = v.ndim();
        if let Some(&axis) = axes.iter().find(|&&a| a >= ndim) {
            return Err(PyValueError::new_err(format!("axis must be in 0..{ndim} for a {ndim}D array, got {axis}")));
        }
        let sizes: Vec<usize> = axes.iter().map(|&a| v.shape()[a]).collect();
        let given = region_labels.map(label_index_from).transpose()?;
        let o = orient(v)?;
        let kernel_axes: Vec<usize> = axes.iter().map(|&a| kernel_axis(a, ndim, o.reversed)).collect();
        let view = o.view;
        let (index, tables) = run(py, "slice_areas", move || {
            let index = match given {
                Some(index) => index,
                None => present_labels(view)?,
            };
            let tables = slice_areas_along_kernel(view, &index, &kernel_axes)?;
            Ok::<_, KernelError>((index, tables))
        })??;
        let n = index.len();
        let mut out = Vec::with_capacity(tables.len());
        for (table, size) in tables.into_iter().zip(sizes) {
            // u64 to i64 of one size: the collect reuses the table's buffer, no allocation.
            let table = Array2::from_shape_vec((n, size), table.into_iter().map(|c| c as i64).collect())
                .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?;
            out.push(table.into_pyarray(py).into_any());
        }
        Ok((index.into_labels().into_pyarray(py).into_any(), out))
    })
}

/// Label pairs and counts as numpy columns `a`, `b`, `count`: labels as int64, or as
/// uint64 when some label is 2^63 or more (uint64 label maps).
fn pair_columns<'py>(
    py: Python<'py>,
    rows: Vec<(i128, i128, u64)>,
    what: &str,
) -> PyResult<Bound<'py, PyDict>> {
    /// A label column in the integer dtype `V`, if every label fits it.
    fn column<'py, V: numpy::Element + TryFrom<i128>>(
        py: Python<'py>,
        rows: &[(i128, i128, u64)],
        pick: fn(&(i128, i128, u64)) -> i128,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut values: Vec<V> = try_with_capacity(rows.len(), "a label column")?;
        for r in rows {
            match V::try_from(pick(r)) {
                Ok(v) => values.push(v),
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(values.into_pyarray(py).into_any()))
    }
    let pick_a: fn(&(i128, i128, u64)) -> i128 = |r| r.0;
    let pick_b: fn(&(i128, i128, u64)) -> i128 = |r| r.1;
    let (a, b) = match (column::<i64>(py, &rows, pick_a)?, column::<i64>(py, &rows, pick_b)?) {
        (Some(a), Some(b)) => (a, b),
        _ => match (column::<u64>(py, &rows, pick_a)?, column::<u64>(py, &rows, pick_b)?) {
            (Some(a), Some(b)) => (a, b),
            _ => {
                return Err(PyOverflowError::new_err(format!(
                    "{what}: the labels span negative values and values of 2^63 or more; no integer dtype holds both"
                )))
            }
        },
    };
    let d = PyDict::new(py);
    d.set_item("a", a)?;
    d.set_item("b", b)?;
    let count: Vec<i64> = try_collect_exact(rows.iter().map(|r| r.2 as i64), "the pair counts")?;
    d.set_item("count", count.into_pyarray(py))?;
    Ok(d)
}

/// Pairs of touching regions and their contact size.
#[pyfunction]
fn contacts<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    connectivity: u32,
) -> PyResult<Bound<'py, PyDict>> {
    let arr = extract_labels(labels, "labels")?;
    let rows = with_labels!(arr, v => {
        let o = orient(v)?;
        let conn = connectivity_for(o.ndim, connectivity)?;
        let view = o.view;
        run(py, "contacts", move || contacts_kernel(&view, conn))??
    });
    pair_columns(py, rows, "contacts")
}

/// Voxel counts of co-occurring nonzero label pairs of two maps of one shape.
#[pyfunction]
fn overlap<'py>(
    py: Python<'py>,
    labels_a: &Bound<'py, PyAny>,
    labels_b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyDict>> {
    let a = extract_labels(labels_a, "labels_a")?;
    let b = extract_labels(labels_b, "labels_b")?;
    let rows = with_labels!(a, va => {
        with_labels!(b, vb => {
            if va.shape() != vb.shape() {
                return Err(PyValueError::new_err(format!(
                    "labels_a and labels_b must have one shape, got {:?} and {:?}", va.shape(), vb.shape()
                )));
            }
            // Walk both in the first map's memory order.
            let oa = orient(va)?;
            let vb = orient_like(vb, oa.reversed)?;
            let view_a = oa.view;
            run(py, "overlap", move || overlap_kernel(&view_a, &vb))??
        })
    });
    pair_columns(py, rows, "overlap")
}

/// Rows of an `(n, N)` int64 table of box corners (negative values read as 0), or a
/// ValueError naming `what`.
fn box_rows<const N: usize>(
    boxes: &PyReadonlyArrayDyn<'_, i64>,
    what: &str,
) -> PyResult<Vec<[usize; N]>> {
    let boxes = boxes.as_array();
    if boxes.ndim() != 2 || boxes.shape()[1] != N {
        return Err(PyValueError::new_err(format!(
            "{what} must be (n, {N}) boxes, got shape {:?}",
            boxes.shape()
        )));
    }
    let mut out = try_with_capacity(boxes.shape()[0], what)?;
    for row in boxes.outer_iter() {
        let mut b = [0usize; N];
        for (slot, &v) in b.iter_mut().zip(row.iter()) {
            *slot = v.max(0) as usize;
        }
        out.push(b);
    }
    Ok(out)
}

/// Line numbers from a 1D int64 array, refusing negatives.
fn line_numbers(array: &PyReadonlyArrayDyn<'_, i64>, what: &str) -> PyResult<Vec<usize>> {
    let view = array.as_array();
    if view.ndim() != 1 {
        return Err(PyValueError::new_err(format!(
            "{what} must be 1D, got shape {:?}",
            view.shape()
        )));
    }
    let mut out = try_with_capacity(view.len(), what)?;
    for &v in view.iter() {
        out.push(
            usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{what} holds {v}")))?,
        );
    }
    Ok(out)
}

/// A plane on an image's grid: image row `i` shows plane row `rows[i]`, or with
/// `row_ends` the mean of plane rows `rows[i]..row_ends[i]` (columns alike). Means along
/// one axis at most, of integers of at most 32 bits, rounded half to even and clipped to
/// the dtype; a gather keeps any numeric dtype. The image is C-ordered.
#[pyfunction]
#[pyo3(signature = (values, rows, cols, row_ends=None, col_ends=None))]
fn resample_plane<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    rows: PyReadonlyArrayDyn<'py, i64>,
    cols: PyReadonlyArrayDyn<'py, i64>,
    row_ends: Option<PyReadonlyArrayDyn<'py, i64>>,
    col_ends: Option<PyReadonlyArrayDyn<'py, i64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let rows = line_numbers(&rows, "rows")?;
    let cols = line_numbers(&cols, "cols")?;
    let row_ends = row_ends.map(|e| line_numbers(&e, "row_ends")).transpose()?;
    let col_ends = col_ends.map(|e| line_numbers(&e, "col_ends")).transpose()?;
    let shape = (rows.len(), cols.len());
    let arr = ValueArray::of(values).ok_or_else(|| {
        let dtype = values
            .getattr("dtype")
            .map(|d| d.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "plane must be a numpy array of a numeric dtype; got {dtype}"
        ))
    })?;
    macro_rules! image {
        ($out:expr) => {
            Array2::from_shape_vec(shape, $out)
                .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?
                .into_pyarray(py)
                .into_any()
        };
    }
    if row_ends.is_none() && col_ends.is_none() {
        return Ok(with_values!(arr, v => {
            let view = plane(v, "plane")?;
            image!(run(py, "resample_plane", move || gather(view, &rows, &cols))??)
        }));
    }
    macro_rules! means {
        ($($variant:ident),+) => {
            match arr {
                $(ValueArray::$variant(a) => {
                    let view = plane(a.as_array(), "plane")?;
                    let out = run(py, "resample_plane", move || {
                        let r = row_ends.as_deref().map_or(Lines::Each(&rows), |e| Lines::Mean(&rows, e));
                        let c = col_ends.as_deref().map_or(Lines::Each(&cols), |e| Lines::Mean(&cols, e));
                        area_mean(view, r, c)
                    })??;
                    Ok(image!(out))
                })+
                _ => Err(PyTypeError::new_err(
                    "means need a plane of integers of at most 32 bits (int8 to uint32)",
                )),
            }
        };
    }
    means!(I8, U8, I16, U16, I32, U32)
}

/// A 2D view of a 2D array, or a ValueError naming `what`.
fn plane<'a, T>(view: ArrayViewD<'a, T>, what: &str) -> PyResult<ArrayView2<'a, T>> {
    let ndim = view.ndim();
    view.into_dimensionality::<Ix2>()
        .map_err(|_| PyValueError::new_err(format!("{what} must be 2D, got {ndim} dimensions")))
}

/// The body in an 8-bit grey view, line by line: `(otsu, first, last)` with the image's
/// Otsu threshold and, per row (`along_rows`) or column, the first and last pixel of the
/// body (pixels above `fraction × otsu` in 8-connected components of at least `min_size`
/// pixels), -1 where a line has none.
#[pyfunction]
fn body_lines<'py>(
    py: Python<'py>,
    grey: PyReadonlyArrayDyn<'py, u8>,
    fraction: f64,
    min_size: u64,
    along_rows: bool,
) -> PyResult<(f64, Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let view = plane(grey.as_array(), "grey")?;
    let found = run(py, "body_lines", move || {
        body_lines_kernel(view, fraction, min_size, along_rows)
    })??;
    Ok((
        found.otsu,
        found.first.into_pyarray(py).into_any(),
        found.last.into_pyarray(py).into_any(),
    ))
}

/// An 8-bit greyscale (H, W) or RGB (H, W, 3) image as the bytes of a PNG file
/// (lossless; see `encode.rs`), encoded without the GIL. Any memory order: a
/// non-contiguous image is copied to C order first.
#[pyfunction]
fn encode_png<'py>(
    py: Python<'py>,
    image: PyReadonlyArrayDyn<'py, u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let view = image.as_array();
    let (height, width, channels) = match *view.shape() {
        [h, w] => (h, w, 1),
        [h, w, c] if c == 1 || c == 3 => (h, w, c),
        _ => {
            return Err(PyValueError::new_err(format!(
                "PNG output needs an 8-bit (H, W) or (H, W, 3) image, got shape {:?}",
                view.shape()
            )))
        }
    };
    let file = match view.as_slice() {
        Some(pixels) => run(py, "encode_png", move || {
            png_kernel(pixels, height, width, channels)
        })??,
        None => {
            let owned = view.as_standard_layout().into_owned();
            run(py, "encode_png", move || {
                png_kernel(
                    owned.as_slice().unwrap_or_default(),
                    height,
                    width,
                    channels,
                )
            })??
        }
    };
    Ok(PyBytes::new(py, &file))
}

/// COCO RLE counts strings of every nonzero label of a 2D label map, ascending:
/// `[(label, counts), ...]`.
#[pyfunction]
fn rle_by_label<'py>(py: Python<'py>, labels: &Bound<'py, PyAny>) -> PyResult<Vec<(i64, String)>> {
    let arr = extract_labels(labels, "labels")?;
    with_labels!(arr, v => {
        let view = plane(v, "labels")?;
        let found = run(py, "rle_by_label", move || rle_kernel(view))??;
        found
            .into_iter()
            .map(|(value, counts)| {
                let key = i64::try_from(value.key())
                    .map_err(|_| PyOverflowError::new_err("rle_by_label: a label does not fit int64"))?;
                Ok((key, compress_counts(&counts)))
            })
            .collect()
    })
}

/// The bytes of a counts string given as str or bytes.
fn counts_text<'a>(counts: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if let Ok(s) = counts.cast::<PyString>() {
        Ok(s.to_str()?.as_bytes())
    } else if let Ok(b) = counts.cast::<PyBytes>() {
        Ok(b.as_bytes())
    } else {
        Err(PyTypeError::new_err("counts must be a str or bytes"))
    }
}

/// The run lengths of a COCO counts string (str or bytes) of a mask of `pixels` pixels,
/// checked (see `rle::decompress_counts`), as an int64 array.
#[pyfunction]
fn rle_counts<'py>(
    py: Python<'py>,
    counts: &Bound<'py, PyAny>,
    pixels: u64,
) -> PyResult<Bound<'py, PyAny>> {
    let runs = decompress_counts(counts_text(counts)?, pixels)?;
    let runs: Vec<i64> = runs.into_iter().map(|n| n as i64).collect();
    Ok(runs.into_pyarray(py).into_any())
}

/// Rows `top..bottom` and columns `left..right` of the mask of a COCO counts string (str
/// or bytes) of a `height` × `width` image, as a boolean array. Small work: done on the
/// calling thread, the GIL held.
#[pyfunction]
#[allow(clippy::too_many_arguments)] // the Python signature
fn rle_decode_window<'py>(
    py: Python<'py>,
    counts: &Bound<'py, PyAny>,
    height: usize,
    width: usize,
    top: usize,
    left: usize,
    bottom: usize,
    right: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let text = counts_text(counts)?;
    if !(top <= bottom && bottom <= height && left <= right && right <= width) {
        return Err(PyValueError::new_err(format!(
            "window rows [{top}, {bottom}), columns [{left}, {right}) is not inside {height}x{width}"
        )));
    }
    let pixels = (height as u64)
        .checked_mul(width as u64)
        .ok_or_else(|| PyOverflowError::new_err("the image size does not fit 64 bits"))?;
    let runs = decompress_counts(text, pixels)?;
    let window = decode_window_kernel(&runs, height, [top, left, bottom, right])?;
    let out = Array2::from_shape_vec((bottom - top, right - left), window)
        .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?;
    Ok(out.into_pyarray(py).into_any())
}

/// Per-object statistics of a 2D label map against 8-bit grey levels: a dict per id of
/// `ids` (None for an id not in the map). `ring` is "diamond" or "disk"; the pieces'
/// sizes only with `pieces`.
#[pyfunction]
#[pyo3(signature = (labels, grey, ids, radius, ring, pieces, within=None))]
#[allow(clippy::too_many_arguments)] // the Python signature
fn object_stats<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    grey: PyReadonlyArrayDyn<'py, u8>,
    ids: &Bound<'py, PyAny>,
    radius: usize,
    ring: &str,
    pieces: bool,
    within: Option<PyReadonlyArrayDyn<'py, i64>>,
) -> PyResult<Vec<Option<Bound<'py, PyTuple>>>> {
    let ring = match ring {
        "diamond" => Ring::Diamond,
        "disk" => Ring::Disk,
        other => {
            return Err(PyValueError::new_err(format!(
                "ring must be 'diamond' or 'disk', got {other:?}"
            )))
        }
    };
    let within: Option<Vec<[usize; 4]>> = within.map(|b| box_rows(&b, "within")).transpose()?;
    let arr = extract_labels(labels, "labels")?;
    let grey = plane(grey.as_array(), "grey")?;
    let found = with_labels!(arr, v => {
        let view = plane(v, "labels")?;
        let wanted: PyReadonlyArrayDyn<'_, _> = ids
            .extract()
            .map_err(|_| PyTypeError::new_err("ids must be an array of the label map's dtype"))?;
        let wanted = try_collect_exact(wanted.as_array().iter().copied(), "the ids")?;
        run(py, "object_stats", move || object_stats_kernel(view, grey, &wanted, radius, ring, pieces, within.as_deref()))??
    });
    found
        .into_iter()
        .map(|stats| {
            let Some(s) = stats else { return Ok(None) };
            // A tuple in `geometry.ObjectStats`' field order: thousands a case, built with
            // the GIL held (a dict of named fields cost twice as much to build and unpack).
            let touches: Vec<(i64, u64)> = s.touches.iter().map(|&(k, n)| (k as i64, n)).collect();
            let bbox = (s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3])
                .into_pyobject(py)?
                .into_any();
            let mut row = vec![bbox];
            for n in [
                s.area,
                s.sum_x,
                s.sum_y,
                s.inside_sum,
                s.inside_sumsq,
                s.ring_count,
                s.ring_sum,
                s.ring_sumsq,
                s.edge_count,
                s.edge_sum,
                s.outline,
                s.outline_on_border,
                s.touching,
            ] {
                row.push(n.into_pyobject(py)?.into_any());
            }
            row.push(PyTuple::new(py, touches)?.into_any());
            row.push(PyTuple::new(py, s.pieces)?.into_any());
            Ok(Some(PyTuple::new(py, row)?))
        })
        .collect()
}

/// Dilation of a 2D boolean mask by `radius` 4-neighbour steps, inside the image.
#[pyfunction]
fn dilate<'py>(
    py: Python<'py>,
    mask: PyReadonlyArrayDyn<'py, bool>,
    radius: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let view = plane(mask.as_array(), "mask")?;
    let dim = view.dim();
    let grown = run(py, "dilate", move || dilate_diamond(view, radius))??;
    let out = Array2::from_shape_vec(dim, grown)
        .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?;
    Ok(out.into_pyarray(py).into_any())
}

/// A label map renumbered through a table: `lookup[labels]`, in the map's memory order
/// and the table's dtype (uint8, uint16, uint32 or uint64).
#[pyfunction]
fn relabel<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    lookup: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    fn through<'py, T: Label, U: numpy::Element + Copy + Send + Sync>(
        py: Python<'py>,
        v: ArrayViewD<'_, T>,
        table: PyReadonlyArrayDyn<'py, U>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let shape = v.shape().to_vec();
        let fortran = walk_reversed(v.shape(), v.strides());
        let input = v
            .as_slice_memory_order()
            .ok_or_else(|| PyValueError::new_err("relabel needs a contiguous label map"))?;
        let table = table.as_array();
        let table = table
            .as_slice()
            .ok_or_else(|| PyValueError::new_err("relabel needs a contiguous table"))?;
        let mut failed: Option<KernelError> = None;
        let out = new_output::<U, _>(py, &shape, fortran, "relabel", |out| {
            if let Err(e) = relabel_kernel(input, table, out) {
                failed = Some(e);
            }
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(out.into_any()),
        }
    }
    let arr = extract_labels(labels, "labels")?;
    with_labels!(arr, v => {
        if let Ok(t) = lookup.extract::<PyReadonlyArrayDyn<'py, u8>>() {
            through(py, v, t)
        } else if let Ok(t) = lookup.extract::<PyReadonlyArrayDyn<'py, u16>>() {
            through(py, v, t)
        } else if let Ok(t) = lookup.extract::<PyReadonlyArrayDyn<'py, u32>>() {
            through(py, v, t)
        } else if let Ok(t) = lookup.extract::<PyReadonlyArrayDyn<'py, u64>>() {
            through(py, v, t)
        } else {
            Err(PyTypeError::new_err("lookup must be a 1D array of uint8, uint16, uint32 or uint64"))
        }
    })
}

/// A sampling's volume, seen in its memory order, and its ids in the map's dtype.
fn sampling_input<'a, T: numpy::Element + Copy>(
    v: ArrayViewD<'a, T>,
    ids: &Bound<'_, PyAny>,
) -> PyResult<(ArrayView3<'a, T>, bool, Vec<T>)> {
    if v.ndim() != 3 {
        return Err(PyValueError::new_err(format!(
            "labels must be 3D, got {} dimensions",
            v.ndim()
        )));
    }
    let wanted: PyReadonlyArrayDyn<'_, T> = ids
        .extract()
        .map_err(|_| PyTypeError::new_err("ids must be an array of the label map's dtype"))?;
    let wanted = try_collect_exact(wanted.as_array().iter().copied(), "the ids")?;
    let o = orient(v)?;
    Ok((o.view, o.reversed, wanted))
}

/// Every `max(1, count // sample)`-th voxel of each object in C order within its box,
/// as `(m, 3)` int64 index arrays, found in the volume's own memory order.
#[pyfunction]
fn c_order_samples<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    boxes: PyReadonlyArrayDyn<'py, i64>,
    sample: u64,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let given: Vec<[usize; 6]> = box_rows(&boxes, "boxes")?;
    let arr = extract_labels(labels, "labels")?;
    let found = with_labels!(arr, v => {
        let (view, reversed, wanted) = sampling_input(v, ids)?;
        run(py, "c_order_samples", move || samples_kernel(view, reversed, &wanted, &given, sample))??
    });
    found
        .into_iter()
        .map(|picks| {
            let n = picks.len();
            let flat: Vec<i64> = picks.into_iter().flatten().collect();
            let table = Array2::from_shape_vec((n, 3), flat)
                .map_err(|e| PyRuntimeError::new_err(format!("internal error: {e}")))?;
            Ok(table.into_pyarray(py).into_any())
        })
        .collect()
}

/// For each object, `(picks right of the midline, picks)` over the voxels
/// [`c_order_samples`] picks: world x (`x_row`, one coefficient per axis of the map's
/// index and an offset) against `np.interp(world z, levels, mid)`, in numpy's arithmetic.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn c_order_side_counts<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    boxes: PyReadonlyArrayDyn<'py, i64>,
    sample: u64,
    x_row: Vec<f64>,
    z_row: Vec<f64>,
    levels: Vec<f64>,
    mid: Vec<f64>,
) -> PyResult<Vec<(u64, u64)>> {
    let given: Vec<[usize; 6]> = box_rows(&boxes, "boxes")?;
    let arr = extract_labels(labels, "labels")?;
    let midline = Midline::new(x_row, z_row, levels, mid)?;
    with_labels!(arr, v => {
        let (view, reversed, wanted) = sampling_input(v, ids)?;
        let counts = run(py, "c_order_side_counts", move || {
            side_counts_kernel(view, reversed, &wanted, &given, sample, &midline)
        })??;
        Ok(counts)
    })
}

/// For each object, `(voxels right of the midline, voxels)` over all its voxels: world x
/// (`x_row`, one coefficient per axis of the map's index and an offset) against
/// `np.interp(world z, levels, mid)`, in numpy's arithmetic; one walk in memory order.
#[pyfunction]
fn side_counts<'py>(
    py: Python<'py>,
    labels: &Bound<'py, PyAny>,
    ids: &Bound<'py, PyAny>,
    x_row: Vec<f64>,
    z_row: Vec<f64>,
    levels: Vec<f64>,
    mid: Vec<f64>,
) -> PyResult<Vec<(u64, u64)>> {
    let arr = extract_labels(labels, "labels")?;
    let midline = Midline::new(x_row, z_row, levels, mid)?;
    with_labels!(arr, v => {
        let (view, reversed, wanted) = sampling_input(v, ids)?;
        Ok(run(py, "side_counts", move || exact_sides_kernel(view, reversed, &wanted, &midline))??)
    })
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(connected_components, m)?)?;
    m.add_function(wrap_pyfunction!(object_components, m)?)?;
    m.add_function(wrap_pyfunction!(largest_k, m)?)?;
    m.add_function(wrap_pyfunction!(dust, m)?)?;
    m.add_function(wrap_pyfunction!(dust_in_place, m)?)?;
    m.add_function(wrap_pyfunction!(regionprops, m)?)?;
    m.add_function(wrap_pyfunction!(surface_areas, m)?)?;
    m.add_function(wrap_pyfunction!(shape2d, m)?)?;
    m.add_function(wrap_pyfunction!(slice_areas, m)?)?;
    m.add_function(wrap_pyfunction!(slice_areas_along, m)?)?;
    m.add_function(wrap_pyfunction!(contacts, m)?)?;
    m.add_function(wrap_pyfunction!(overlap, m)?)?;
    m.add_function(wrap_pyfunction!(rle_by_label, m)?)?;
    m.add_function(wrap_pyfunction!(resample_plane, m)?)?;
    m.add_function(wrap_pyfunction!(rle_counts, m)?)?;
    m.add_function(wrap_pyfunction!(rle_decode_window, m)?)?;
    m.add_function(wrap_pyfunction!(object_stats, m)?)?;
    m.add_function(wrap_pyfunction!(body_lines, m)?)?;
    m.add_function(wrap_pyfunction!(encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(dilate, m)?)?;
    m.add_function(wrap_pyfunction!(relabel, m)?)?;
    m.add_function(wrap_pyfunction!(c_order_samples, m)?)?;
    m.add_function(wrap_pyfunction!(c_order_side_counts, m)?)?;
    m.add_function(wrap_pyfunction!(side_counts, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(kernels_on_caller, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
