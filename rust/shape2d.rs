//! (being written)
use crate::label::{Label, LabelIndex};
use ndarray::ArrayView2;
pub struct Shape2d { pub perimeter: Vec<f64>, pub convex_area: Vec<f64>, pub feret_diameter_max: Vec<f64> }
pub fn shape2d<T: Label>(_l: ArrayView2<T>, _s: [f64; 2], i: &LabelIndex<T>) -> Shape2d { let z = vec![f64::NAN; i.len()]; Shape2d { perimeter: z.clone(), convex_area: z.clone(), feret_diameter_max: z } }
