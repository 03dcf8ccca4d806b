//! Per-object passes over one 2D view (a rendered slice or a photograph's label map):
//! the COCO run-length encoding of every object in one walk of the image, and for chosen
//! objects the statistics a reader's eye uses — the object's grey levels against a ring
//! of surrounding tissue, the contrast across its outline, how much of its outline is
//! the image border, which neighbours its outline touches, and the sizes of its pieces.
//!
//! Each object costs its box and ring, not the image: the views of a real-size CT hold
//! dozens of objects each, and these passes replace per-object numpy work that read the
//! same pixels a dozen times.
//!
//! Grey levels are 8-bit, so every sum is an exact integer: a mean computed here is the
//! same float as numpy's mean of the same pixels.

use std::collections::HashMap;

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::alloc::{try_collect_exact, try_push, try_reserve, try_vec_filled, try_with_capacity};
use crate::error::{KernelError, KernelResult};
use crate::label::Label;

/// COCO's counts string of run lengths (zeros first): for the fourth count on, its
/// difference from the count two before, in 5-bit groups, least significant first; 0x20
/// marks that another group follows, 0x10 of the last group is the sign; 48 is added.
pub fn compress_counts(counts: &[u64]) -> String {
    let mut out = String::with_capacity(counts.len() * 2);
    for (i, &c) in counts.iter().enumerate() {
        let mut x = c as i64;
        if i > 2 {
            x -= counts[i - 2] as i64;
        }
        loop {
            let mut group = x & 0x1f;
            x >>= 5; // arithmetic: a negative value ends at -1
            let more = if group & 0x10 != 0 { x != -1 } else { x != 0 };
            if more {
                group |= 0x20;
            }
            out.push(char::from((group + 48) as u8));
            if !more {
                break;
            }
        }
    }
    out
}

/// One object's runs while the image is walked column by column.
struct Runs {
    counts: Vec<u64>,
    /// Column-major position just past the object's last foreground run.
    end: u64,
}

/// The COCO run lengths (uncompressed, zeros first, no trailing zero run) of the mask of
/// every nonzero label of a 2D label map, in ascending label order. One walk of the
/// image in column-major order, as COCO reads masks; a run that ends at a column's last
/// row and goes on at the next column's top is one run.
pub fn rle_by_label<T: Label>(labels: ArrayView2<T>) -> KernelResult<Vec<(T, Vec<u64>)>> {
    let (height, width) = labels.dim();
    let total = (height * width) as u64;
    let mut slot_of: HashMap<i128, usize> = HashMap::new();
    let mut found: Vec<(T, Runs)> = Vec::new();
    let mut push_run = |value: T, start: u64, end: u64| -> KernelResult<()> {
        let slot = match slot_of.get(&value.key()) {
            Some(&s) => s,
            None => {
                let s = found.len();
                slot_of.insert(value.key(), s);
                try_push(
                    &mut found,
                    (
                        value,
                        Runs {
                            counts: Vec::new(),
                            end: 0,
                        },
                    ),
                    "the objects of a view",
                )?;
                s
            }
        };
        let runs = &mut found[slot].1;
        try_reserve(&mut runs.counts, 2, "an object's runs")?;
        if runs.counts.is_empty() {
            runs.counts.extend([start, end - start]);
        } else if start == runs.end {
            *runs.counts.last_mut().expect("a run was pushed") += end - start;
        } else {
            runs.counts.extend([start - runs.end, end - start]);
        }
        runs.end = end;
        Ok(())
    };
    for x in 0..width {
        let column = labels.column(x);
        let base = (x * height) as u64;
        let mut current = T::ZERO;
        let mut start = 0usize;
        for (y, &value) in column.iter().enumerate() {
            if value != current {
                if !current.is_zero() {
                    push_run(current, base + start as u64, base + y as u64)?;
                }
                current = value;
                start = y;
            }
        }
        if !current.is_zero() {
            push_run(current, base + start as u64, base + height as u64)?;
        }
    }
    found.sort_unstable_by_key(|(v, _)| v.key());
    found
        .into_iter()
        .map(|(value, mut runs)| {
            if runs.end < total {
                try_push(&mut runs.counts, total - runs.end, "an object's runs")?;
            }
            Ok((value, runs.counts))
        })
        .collect()
}

/// The shape of the ring of tissue an object is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ring {
    /// Pixels within `radius` 4-neighbour steps (a diamond: the dilation the views use).
    Diamond,
    /// Pixels within Euclidean distance `radius` of the object (a disk).
    Disk,
}

/// What one object's box and ring hold. Sums are exact (8-bit grey levels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectStats {
    /// `(x0, y0, x1, y1)`, max exclusive.
    pub bbox: [usize; 4],
    pub area: u64,
    /// Sums of the object's pixel columns and rows (its centre is sum / area + 0.5).
    pub sum_x: u64,
    pub sum_y: u64,
    pub inside_sum: u64,
    pub inside_sumsq: u64,
    pub ring_count: u64,
    pub ring_sum: u64,
    pub ring_sumsq: u64,
    /// Pairs of (object pixel, outside 4-neighbour in the image) and their summed
    /// absolute grey difference.
    pub edge_count: u64,
    pub edge_sum: u64,
    /// Object pixels with a 4-neighbour outside the object or the image, and of those
    /// the ones on the image border.
    pub outline: u64,
    pub outline_on_border: u64,
    /// Pixels outside the object that are 4-neighbours of it, and their owners:
    /// `(label, pixels)` for each nonzero label among them, ascending.
    pub touching: u64,
    pub touches: Vec<(i128, u64)>,
    /// Pixel counts of the object's 8-connected pieces, largest first (when asked for).
    pub pieces: Vec<u64>,
}

/// Statistics of each object `ids` of a 2D label map against 8-bit grey levels `grey`
/// of the same shape, with a ring of `radius` pixels shaped by `ring`. An id absent from
/// the map gets `None`. Pieces are counted only `with_pieces`. `within`, when given, holds
/// for each id a box `(x0, y0, x1, y1)` the object lies in (then the map is not walked to
/// find the boxes; the statistics give the object's own tight box).
pub fn object_stats<T: Label>(
    labels: ArrayView2<T>,
    grey: ArrayView2<u8>,
    ids: &[T],
    radius: usize,
    ring: Ring,
    with_pieces: bool,
    within: Option<&[[usize; 4]]>,
) -> KernelResult<Vec<Option<ObjectStats>>> {
    if labels.dim() != grey.dim() {
        return Err(KernelError::ShapeMismatch(format!(
            "labels {:?} and grey {:?} must have one shape",
            labels.dim(),
            grey.dim()
        )));
    }
    // Row-major slices (a copy only for a map not laid out so): every pixel by index.
    let labels = labels.as_standard_layout();
    let grey = grey.as_standard_layout();
    let (height, width) = labels.dim();
    let plane = Plane {
        labels: labels.as_slice().expect("standard layout"),
        grey: grey.as_slice().expect("standard layout"),
        height,
        width,
    };
    let boxes = match within {
        Some(given) => {
            if given.len() != ids.len() {
                return Err(KernelError::InvalidArgument(format!(
                    "{} boxes for {} ids",
                    given.len(),
                    ids.len()
                )));
            }
            let mut clipped = try_with_capacity(given.len(), "the objects' boxes")?;
            for b in given {
                let b = [
                    b[0].min(width),
                    b[1].min(height),
                    b[2].min(width),
                    b[3].min(height),
                ];
                clipped.push((b[0] < b[2] && b[1] < b[3]).then_some(b));
            }
            clipped
        }
        None => plane.boxes_of(ids)?,
    };
    // Objects are independent: read on the pool's threads, gathered in the callers' order.
    let jobs: Vec<(T, Option<[usize; 4]>)> =
        try_collect_exact(ids.iter().copied().zip(boxes), "the objects' statistics")?;
    jobs.into_par_iter()
        .map(|(id, found)| match found {
            Some(bbox) => plane.object(id, bbox, radius, ring, with_pieces),
            None => Ok(None),
        })
        .collect()
}

/// A 2D label map and its grey levels, row-major.
struct Plane<'a, T> {
    labels: &'a [T],
    grey: &'a [u8],
    height: usize,
    width: usize,
}

impl<T: Label> Plane<'_, T> {
    /// Boxes `(x0, y0, x1, y1)` of the given labels, in one walk of the map.
    fn boxes_of(&self, ids: &[T]) -> KernelResult<Vec<Option<[usize; 4]>>> {
        let mut slot_of: HashMap<i128, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            slot_of.entry(id.key()).or_insert(i);
        }
        let mut boxes: Vec<Option<[usize; 4]>> =
            try_vec_filled(ids.len(), None, "the boxes of a view")?;
        for (y, row) in self.labels.chunks_exact(self.width.max(1)).enumerate() {
            let mut x = 0;
            while x < row.len() {
                let value = row[x];
                let start = x;
                while x < row.len() && row[x] == value {
                    x += 1;
                }
                if value.is_zero() {
                    continue;
                }
                if let Some(&slot) = slot_of.get(&value.key()) {
                    let b = boxes[slot].get_or_insert([start, y, x, y + 1]);
                    b[0] = b[0].min(start);
                    b[2] = b[2].max(x);
                    b[3] = y + 1;
                }
            }
        }
        // A repeated id shares its first occurrence's box.
        for (i, id) in ids.iter().enumerate() {
            let first = slot_of[&id.key()];
            if first != i {
                boxes[i] = boxes[first];
            }
        }
        Ok(boxes)
    }

    /// The object's statistics, from a box it lies in; None when it has no pixel there.
    fn object(
        &self,
        id: T,
        bbox: [usize; 4],
        radius: usize,
        ring: Ring,
        with_pieces: bool,
    ) -> KernelResult<Option<ObjectStats>> {
        let (height, width) = (self.height, self.width);
        let [bx0, by0, bx1, by1] = bbox;
        // The window: the box and its ring (at least one pixel), inside the image.
        let margin = radius.max(1);
        let (y0, y1) = (by0.saturating_sub(margin), (by1 + margin).min(height));
        let (x0, x1) = (bx0.saturating_sub(margin), (bx1 + margin).min(width));
        let (h, w) = (y1 - y0, x1 - x0);
        let mut mask: Vec<bool> = try_vec_filled(h * w, false, "an object's window")?;
        for y in by0..by1 {
            let row = &self.labels[y * width + bx0..y * width + bx1];
            let out = &mut mask[(y - y0) * w + (bx0 - x0)..(y - y0) * w + (bx1 - x0)];
            for (m, &v) in out.iter_mut().zip(row) {
                *m = v == id;
            }
        }
        let mut s = ObjectStats::default();
        let mut tight = [usize::MAX, usize::MAX, 0, 0];
        // Few owners touch one object: a short list, the last one found first.
        let mut touches: Vec<(i128, u64)> = Vec::new();
        for yy in 0..h {
            let y = y0 + yy;
            for xx in 0..w {
                let x = x0 + xx;
                let i = yy * w + xx;
                if !mask[i] {
                    // An outside pixel next to the object: whose it is.
                    let near = (yy > 0 && mask[i - w])
                        || (yy + 1 < h && mask[i + w])
                        || (xx > 0 && mask[i - 1])
                        || (xx + 1 < w && mask[i + 1]);
                    if near {
                        s.touching += 1;
                        let owner = self.labels[y * width + x];
                        if !owner.is_zero() {
                            let key = owner.key();
                            match touches.iter_mut().rev().find(|(k, _)| *k == key) {
                                Some((_, n)) => *n += 1,
                                None => touches.push((key, 1)),
                            }
                        }
                    }
                    continue;
                }
                let v = self.grey[y * width + x] as u64;
                tight = [
                    tight[0].min(x),
                    tight[1].min(y),
                    tight[2].max(x + 1),
                    tight[3].max(y + 1),
                ];
                s.area += 1;
                s.sum_x += x as u64;
                s.sum_y += y as u64;
                s.inside_sum += v;
                s.inside_sumsq += v * v;
                // Neighbours in the image lie in the window (its margin is at least one).
                let mut on_outline = false;
                let mut on_border = false;
                for (inside_image, j, g) in [
                    (y > 0, i.wrapping_sub(w), (y.wrapping_sub(1)) * width + x),
                    (y + 1 < height, i + w, (y + 1) * width + x),
                    (x > 0, i.wrapping_sub(1), y * width + x.wrapping_sub(1)),
                    (x + 1 < width, i + 1, y * width + x + 1),
                ] {
                    if !inside_image {
                        on_outline = true;
                        on_border = true;
                    } else if !mask[j] {
                        on_outline = true;
                        s.edge_count += 1;
                        s.edge_sum += (v as i64 - self.grey[g] as i64).unsigned_abs();
                    }
                }
                if on_outline {
                    s.outline += 1;
                    s.outline_on_border += on_border as u64;
                }
            }
        }
        if s.area == 0 {
            return Ok(None);
        }
        s.bbox = tight;
        touches.sort_unstable();
        s.touches = touches;
        // The ring: pixels of the window outside the object within `radius` of it.
        let (distance, limit) = match ring {
            Ring::Diamond => (city_block(&mask, h, w)?, radius as u32),
            Ring::Disk => (
                squared_euclidean(&mask, h, w, radius)?,
                (radius * radius) as u32,
            ),
        };
        for yy in 0..h {
            let row = &self.grey[(y0 + yy) * width + x0..(y0 + yy) * width + x1];
            for (&d, &g) in distance[yy * w..(yy + 1) * w].iter().zip(row) {
                if d > 0 && d <= limit {
                    let v = g as u64;
                    s.ring_count += 1;
                    s.ring_sum += v;
                    s.ring_sumsq += v * v;
                }
            }
        }
        if with_pieces {
            s.pieces = pieces(&mask, h, w)?;
        }
        Ok(Some(s))
    }
}

/// Squared distance beyond any radius asked for.
const FAR: u32 = u32::MAX / 4;

/// City-block (4-neighbour step) distance of every window pixel to the nearest mask
/// pixel, by two raster passes; exact in a rectangle. `FAR` when the mask is empty.
fn city_block(mask: &[bool], h: usize, w: usize) -> KernelResult<Vec<u32>> {
    let mut d: Vec<u32> = try_vec_filled(h * w, FAR, "a distance map")?;
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if mask[i] {
                d[i] = 0;
                continue;
            }
            if y > 0 {
                d[i] = d[i].min(d[i - w] + 1);
            }
            if x > 0 {
                d[i] = d[i].min(d[i - 1] + 1);
            }
        }
    }
    for y in (0..h).rev() {
        for x in (0..w).rev() {
            let i = y * w + x;
            if y + 1 < h {
                d[i] = d[i].min(d[i + w] + 1);
            }
            if x + 1 < w {
                d[i] = d[i].min(d[i + 1] + 1);
            }
        }
    }
    Ok(d)
}

/// Squared Euclidean distance of every window pixel to the nearest mask pixel, exact
/// up to `radius` (farther pixels get a value above `radius²`): the distance along each
/// row (capped at `radius + 1`), then row by row the best of the rows within `radius`
/// above or below (whole rows at a time, which the compiler vectorises).
fn squared_euclidean(mask: &[bool], h: usize, w: usize, radius: usize) -> KernelResult<Vec<u32>> {
    let cap = (radius + 1) as u32;
    let mut along: Vec<u32> = try_vec_filled(h * w, cap, "a distance map")?;
    for y in 0..h {
        let row = &mut along[y * w..(y + 1) * w];
        let marks = &mask[y * w..(y + 1) * w];
        let mut last: Option<usize> = None;
        for x in 0..w {
            if marks[x] {
                last = Some(x);
            }
            if let Some(l) = last {
                row[x] = ((x - l) as u32).min(cap);
            }
        }
        let mut next: Option<usize> = None;
        for x in (0..w).rev() {
            if marks[x] {
                next = Some(x);
            }
            if let Some(n) = next {
                row[x] = row[x].min(((n - x) as u32).min(cap));
            }
        }
    }
    for v in along.iter_mut() {
        *v *= *v;
    }
    let mut d: Vec<u32> = try_vec_filled(h * w, FAR, "a distance map")?;
    for y in 0..h {
        let out = &mut d[y * w..(y + 1) * w];
        for yy in y.saturating_sub(radius)..(y + radius + 1).min(h) {
            let dy = y.abs_diff(yy) as u32;
            let dy2 = dy * dy;
            for (o, &a) in out.iter_mut().zip(&along[yy * w..(yy + 1) * w]) {
                *o = (*o).min(dy2 + a);
            }
        }
    }
    Ok(d)
}

/// Pixel counts of the 8-connected pieces of a window mask, largest first.
fn pieces(mask: &[bool], h: usize, w: usize) -> KernelResult<Vec<u64>> {
    let mut seen: Vec<bool> = try_vec_filled(h * w, false, "an object's pieces")?;
    let mut stack: Vec<usize> = Vec::new();
    let mut sizes: Vec<u64> = Vec::new();
    for start in 0..h * w {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        try_push(&mut stack, start, "an object's pieces")?;
        let mut size = 0u64;
        while let Some(i) = stack.pop() {
            size += 1;
            let (y, x) = (i / w, i % w);
            for ny in y.saturating_sub(1)..(y + 2).min(h) {
                for nx in x.saturating_sub(1)..(x + 2).min(w) {
                    let j = ny * w + nx;
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        try_push(&mut stack, j, "an object's pieces")?;
                    }
                }
            }
        }
        try_push(&mut sizes, size, "an object's pieces")?;
    }
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    Ok(sizes)
}

/// Dilation of a 2D mask by `radius` 4-neighbour steps (a diamond), inside the image.
pub fn dilate_diamond(mask: ArrayView2<bool>, radius: usize) -> KernelResult<Vec<bool>> {
    let (h, w) = mask.dim();
    let flat = try_collect_exact(mask.iter().copied(), "a mask")?;
    let d = city_block(&flat, h, w)?;
    try_collect_exact(
        d.into_iter().map(|v| v as usize <= radius),
        "a dilated mask",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    fn reference_runs(mask: &Array2<bool>) -> Vec<u64> {
        let (h, w) = mask.dim();
        let mut flat = Vec::new();
        for x in 0..w {
            for y in 0..h {
                flat.push(mask[[y, x]]);
            }
        }
        let mut counts = Vec::new();
        let mut current = false;
        let mut n = 0u64;
        for v in flat {
            if v != current {
                counts.push(n);
                n = 0;
                current = v;
            }
            n += 1;
        }
        counts.push(n);
        counts
    }

    #[test]
    fn runs_of_every_label_match_a_mask_walk() {
        let labels = array![[0u16, 1, 1, 2], [1, 1, 0, 2], [0, 0, 2, 2], [3, 0, 0, 1]];
        let found = rle_by_label(labels.view()).unwrap();
        let ids: Vec<u16> = found.iter().map(|(v, _)| *v).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        for (value, counts) in found {
            let mask = labels.mapv(|v| v == value);
            assert_eq!(counts, reference_runs(&mask), "label {value}");
            assert_eq!(counts.iter().sum::<u64>(), 16);
        }
    }

    #[test]
    fn a_run_goes_on_across_columns() {
        // Column-major: rows 2..3 of column 0 then rows 0..1 of column 1: one run of 4.
        let labels = array![[0u8, 5], [0, 5], [5, 0]];
        let found = rle_by_label(labels.view()).unwrap();
        assert_eq!(found, vec![(5, vec![2, 3, 1])]);
    }

    #[test]
    fn compressed_counts_follow_coco() {
        // As pycocotools writes them: a count over 15 takes two groups; from the fourth
        // count on, the difference from the count two before (2 - 1 = 1).
        assert_eq!(compress_counts(&[3, 40]), "3X1");
        assert_eq!(compress_counts(&[0, 1, 100, 2]), "01T31");
        // A negative difference: 1 - 40 = -39.
        assert_eq!(compress_counts(&[5, 40, 5, 1]), "5X15iN");
    }

    #[test]
    fn rings_and_edges_of_a_square() {
        let mut labels = Array2::<u8>::zeros((9, 9));
        let mut grey = Array2::<u8>::from_elem((9, 9), 10);
        for y in 3..6 {
            for x in 3..6 {
                labels[[y, x]] = 1;
                grey[[y, x]] = 30;
            }
        }
        let s = object_stats(
            labels.view(),
            grey.view(),
            &[1],
            1,
            Ring::Diamond,
            true,
            None,
        )
        .unwrap()[0]
            .clone()
            .unwrap();
        assert_eq!(s.bbox, [3, 3, 6, 6]);
        assert_eq!(s.area, 9);
        assert_eq!(s.inside_sum, 270);
        assert_eq!(s.ring_count, 12); // one step out, corners excluded
        assert_eq!(s.ring_sum, 120);
        assert_eq!(s.edge_count, 12);
        assert_eq!(s.edge_sum, 240);
        assert_eq!(s.outline, 8);
        assert_eq!(s.outline_on_border, 0);
        assert_eq!(s.touching, 12);
        assert_eq!(s.pieces, vec![9]);
        let disk = object_stats(
            labels.view(),
            grey.view(),
            &[1],
            2,
            Ring::Disk,
            false,
            Some(&[[0, 0, 9, 9]]),
        )
        .unwrap()[0]
            .clone()
            .unwrap();
        // Within distance 2 of the square: 2 rows of 3 on each side (24) and one pixel at
        // each corner diagonal (sqrt 2) -> 28.
        assert_eq!(disk.ring_count, 28);
    }
}
