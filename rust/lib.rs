//! medground's geometry core: connected components, region statistics and shape
//! descriptors over 2D images and 3D volumes.
//!
//! Every kernel here is pure Rust over `ndarray` views; 2D inputs are treated as 3D
//! volumes with one plane. The Python bindings live in `bindings.rs` alone, behind the
//! `python` feature, so `cargo test` and the fuzz targets build without Python; the
//! layout arithmetic they need (walking order, oriented spacing, moments back in the
//! caller's axis order) is in `layout.rs`, where tests reach it.

pub mod alloc;
pub mod ccl;
pub mod encode;
pub mod error;
pub mod label;
pub mod layout;
pub mod planar;
pub mod regions;
pub mod relations;
pub mod resample;
pub mod rle;
pub mod sample;
pub mod shape2d;
pub mod surface;

#[cfg(feature = "python")]
mod bindings;
