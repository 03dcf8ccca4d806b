//! Errors a kernel can report. The bindings turn each variant into the Python
//! exception a caller expects (`ValueError`, `OverflowError` or `MemoryError`).

use std::fmt;

/// What went wrong in a kernel, worded for the person who called it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// An argument has a value the kernel cannot use (raised as `ValueError`).
    InvalidArgument(String),
    /// Two arrays that must share a shape do not (raised as `ValueError`).
    ShapeMismatch(String),
    /// A count does not fit the index type the kernel works in (raised as `OverflowError`).
    Overflow(String),
    /// A working buffer could not be allocated (raised as `MemoryError`): the message
    /// names the buffer and the bytes asked for. Kernels allocate every buffer whose
    /// size follows the input fallibly (see [`crate::alloc`]), so running out of memory,
    /// or into an address-space limit, is this error instead of an abort.
    OutOfMemory(String),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::InvalidArgument(m)
            | KernelError::ShapeMismatch(m)
            | KernelError::Overflow(m)
            | KernelError::OutOfMemory(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for KernelError {}

pub type KernelResult<T> = Result<T, KernelError>;
