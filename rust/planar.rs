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

use ndarray::{Array3, ArrayView2};
use rayon::prelude::*;

use crate::alloc::{try_collect_exact, try_push, try_reserve, try_vec_filled, try_with_capacity};
use crate::ccl::{label_runs, Connectivity};
use crate::error::{KernelError, KernelResult};
use crate::label::Label;

/// One object's runs while the image is walked column by column.
struct Runs {
    counts: Vec<u64>,
    /// Column-major position just past the object's last foreground run.
    end: u64,
}

/// The COCO run lengths (uncompressed, zeros first, no trailing zero run) of the mask of
/// every nonzero label of a 2D label map, in ascending label order. One walk of the
/// image, its runs taken in column-major order as COCO reads masks; a run that ends at a
/// column's last row and goes on at the next column's top is one run.
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
    match labels.to_slice() {
        // C order (as views are made): strips of a cache line's worth of columns, read row
        // after row, each column's runs kept until the strip ends and then handed out
        // column after column. Walking down a column here would load a new cache line at
        // every pixel and wait for it (half of a view's time).
        Some(rows) if width > 1 => {
            let strip = (64 / std::mem::size_of::<T>()).clamp(8, 64).min(width);
            let mut current = try_vec_filled(strip, T::ZERO, "a strip's runs")?;
            let mut start = try_vec_filled(strip, 0usize, "a strip's runs")?;
            let mut kept: Vec<Vec<(T, usize, usize)>> =
                try_vec_filled(strip, Vec::new(), "a strip's runs")?;
            for x0 in (0..width).step_by(strip) {
                let n = strip.min(width - x0);
                current[..n].fill(T::ZERO);
                for y in 0..height {
                    let row = &rows[y * width + x0..y * width + x0 + n];
                    if row == &current[..n] {
                        continue; // every column's run goes on: one comparison of the strip
                    }
                    for (c, &value) in row.iter().enumerate() {
                        if value != current[c] {
                            keep_run(&mut kept[c], current[c], start[c], y)?;
                            current[c] = value;
                            start[c] = y;
                        }
                    }
                }
                for c in 0..n {
                    keep_run(&mut kept[c], current[c], start[c], height)?;
                    let base = ((x0 + c) * height) as u64;
                    for &(value, from, to) in &kept[c] {
                        push_run(value, base + from as u64, base + to as u64)?;
                    }
                    kept[c].clear();
                }
            }
        }
        // Any other layout: down each column (contiguous when Fortran-ordered).
        _ => {
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

/// Keeps a column's run of `value` over rows `[from, to)` for the end of its strip
/// (background is not kept).
fn keep_run<T: Label>(
    kept: &mut Vec<(T, usize, usize)>,
    value: T,
    from: usize,
    to: usize,
) -> KernelResult<()> {
    if value.is_zero() {
        return Ok(());
    }
    try_push(kept, (value, from, to), "a column's runs")
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

/// Over a row's pixels and their 0/1 object marks: the object's pixel count, the sum of
/// their positions in the row, of their grey levels and of the squares of those. In
/// blocks whose sums fit 32 bits (255² × 4096 < 2³²), so the pass vectorises.
fn masked_sums(marks: &[u8], grey: &[u8]) -> (u64, u64, u64, u64) {
    const BLOCK: usize = 4096;
    let (mut area, mut sum_x, mut sum, mut sumsq) = (0u64, 0u64, 0u64, 0u64);
    for (block, (m, g)) in marks.chunks(BLOCK).zip(grey.chunks(BLOCK)).enumerate() {
        let (mut a, mut sx, mut s1, mut s2) = (0u32, 0u32, 0u32, 0u32);
        for (i, (&m, &g)) in m.iter().zip(g).enumerate() {
            let keep = (m != 0) as u32;
            let v = g as u32 * keep;
            a += keep;
            sx += i as u32 * keep;
            s1 += v;
            s2 += v * v;
        }
        let offset = (block * BLOCK) as u64;
        area += a as u64;
        sum_x += sx as u64 + offset * a as u64;
        sum += s1 as u64;
        sumsq += s2 as u64;
    }
    (area, sum_x, sum, sumsq)
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
        // The object's pixels in the window with a one-pixel frame of zeros, as bytes: a
        // pixel's four neighbours are read without bounds checks.
        let pw = w + 2;
        let mut framed: Vec<u8> = try_vec_filled((h + 2) * pw, 0u8, "an object's window")?;
        for y in by0..by1 {
            let row = &self.labels[y * width + bx0..y * width + bx1];
            let at = (y - y0 + 1) * pw + 1 + (bx0 - x0);
            for (f, &v) in framed[at..at + (bx1 - bx0)].iter_mut().zip(row) {
                *f = (v == id) as u8;
            }
        }
        let mut s = ObjectStats::default();
        let mut tight = [usize::MAX, usize::MAX, 0, 0];
        // Few owners touch one object: a short list, the last one found first.
        let mut touches: Vec<(i128, u64)> = Vec::new();
        // Only the box and the pixels next to it can hold the object or touch it.
        let (ya, yb) = ((by0 - y0).saturating_sub(1), (by1 - y0 + 1).min(h));
        let (xa, xb) = ((bx0 - x0).saturating_sub(1), (bx1 - x0 + 1).min(w));
        for yy in ya..yb {
            let y = y0 + yy;
            let up = &framed[yy * pw..(yy + 1) * pw];
            let row = &framed[(yy + 1) * pw..(yy + 2) * pw];
            let down = &framed[(yy + 2) * pw..(yy + 3) * pw];
            let image_row = y * width;
            let grey = &self.grey[image_row..image_row + width];
            // The object's pixels of the row: counts and sums without a branch per pixel
            // (the compiler vectorises the pass), the row's ends by a search.
            let cells = &row[xa + 1..xb + 1];
            if let Some(first) = cells.iter().position(|&m| m != 0) {
                let last = cells.iter().rposition(|&m| m != 0).expect("a first pixel");
                let (area, sum_x, sum, sumsq) = masked_sums(
                    &cells[first..=last],
                    &grey[x0 + xa + first..=x0 + xa + last],
                );
                let start = (x0 + xa + first) as u64;
                s.area += area;
                s.sum_x += sum_x + area * start;
                s.sum_y += area * y as u64;
                s.inside_sum += sum;
                s.inside_sumsq += sumsq;
                tight = [
                    tight[0].min(x0 + xa + first),
                    tight[1].min(y),
                    tight[2].max(x0 + xa + last + 1),
                    tight[3].max(y + 1),
                ];
            }
            // The rows above and below in the image (the row itself at the image's edge,
            // where no pair is counted).
            let above = &self.grey[if y > 0 { image_row - width } else { image_row }..][..width];
            let below = &self.grey[if y + 1 < height {
                image_row + width
            } else {
                image_row
            }..][..width];
            let (has_up, has_down) = (y > 0, y + 1 < height);
            let mut p = xa + 1;
            while p < xb + 1 {
                // Eight pixels at a time where each equals its four neighbours (inside the
                // object, or away from it): nothing to count there. A pixel by the image's
                // edge has the zero frame beside it, so it is never skipped.
                if p + 8 <= xb + 1 {
                    let word = |at: usize, line: &[u8]| {
                        u64::from_ne_bytes(line[at..at + 8].try_into().expect("8 bytes"))
                    };
                    let here = word(p, row);
                    if (here ^ word(p - 1, row))
                        | (here ^ word(p + 1, row))
                        | (here ^ word(p, up))
                        | (here ^ word(p, down))
                        == 0
                    {
                        p += 8;
                        continue;
                    }
                }
                let x = x0 + p - 1;
                if row[p] == 0 {
                    // An outside pixel next to the object: whose it is.
                    if (up[p] | down[p] | row[p - 1] | row[p + 1]) != 0 {
                        s.touching += 1;
                        let owner = self.labels[image_row + x];
                        if !owner.is_zero() {
                            let key = owner.key();
                            match touches.iter_mut().rev().find(|(k, _)| *k == key) {
                                Some((_, n)) => *n += 1,
                                None => touches.push((key, 1)),
                            }
                        }
                    }
                    p += 1;
                    continue;
                }
                let v = grey[x] as u64;
                // Each side: the image's border, or an outside neighbour (a pair), or the object.
                let has_left = x > 0;
                let has_right = x + 1 < width;
                if (up[p] & down[p] & row[p - 1] & row[p + 1]) != 0
                    && has_up
                    && has_down
                    && has_left
                    && has_right
                {
                    p += 1;
                    continue; // inside the object and the image on every side
                }
                let mut on_outline = false;
                for (inside_image, neighbour, g) in [
                    (has_up, up[p], above[x]),
                    (has_down, down[p], below[x]),
                    (has_left, row[p - 1], grey[x.saturating_sub(1)]),
                    (has_right, row[p + 1], grey[(x + 1).min(width - 1)]),
                ] {
                    if !inside_image {
                        on_outline = true;
                    } else if neighbour == 0 {
                        on_outline = true;
                        s.edge_count += 1;
                        s.edge_sum += (v as i64 - g as i64).unsigned_abs();
                    }
                }
                if on_outline {
                    s.outline += 1;
                    s.outline_on_border += !(has_up && has_down && has_left && has_right) as u64;
                }
                p += 1;
            }
        }
        if s.area == 0 {
            return Ok(None);
        }
        s.bbox = tight;
        touches.sort_unstable();
        s.touches = touches;
        // The ring: pixels of the window outside the object within `radius` of it.
        let rows = (by0 - y0, by1 - y0);
        let window = (y0, x0, h, w);
        let (count, sum, sumsq) = match ring {
            // A ring of a few pixels (the views' and the verifier's): from the object's runs.
            _ if radius <= RUN_RADIUS => self.ring_by_runs(&framed, window, rows, radius, ring)?,
            // City-block distances in i16 while 2 * radius + 1 fits, beyond in i64 (a radius
            // past any window is every pixel of it either way).
            Ring::Diamond if radius < SHORT_RADIUS => {
                let d = rows_within::<i16>(&framed, h, w, radius, rows, false)?;
                self.ring_sums(&d, radius as i16, window)
            }
            Ring::Diamond => {
                let r = radius.min(LONG_RADIUS);
                let d = rows_within::<i64>(&framed, h, w, r, rows, false)?;
                self.ring_sums(&d, r as i64, window)
            }
            // Squared distances: in i16 while (radius + 1)² + radius² fits, beyond in i64
            // (a radius past any window is every pixel of it either way).
            Ring::Disk if radius <= 126 => {
                let d = rows_within::<i16>(&framed, h, w, radius, rows, true)?;
                self.ring_sums(&d, (radius * radius) as i16, window)
            }
            Ring::Disk => {
                let r = radius.min(LONG_RADIUS);
                let d = rows_within::<i64>(&framed, h, w, r, rows, true)?;
                self.ring_sums(&d, (r * r) as i64, window)
            }
        };
        s.ring_count = count;
        s.ring_sum = sum;
        s.ring_sumsq = sumsq;
        if with_pieces {
            s.pieces = pieces(&unframed(&framed, h, w)?, h, w)?;
        }
        Ok(Some(s))
    }

    /// The ring's pixel count, sum and sum of squares from the object's runs (`framed`:
    /// the window's mask with a zero frame; object pixels only on the window rows
    /// `rows.0..rows.1`): on each window row, the union of the runs of the rows within
    /// `radius`, each widened by what is left of the radius across that many rows
    /// (`radius - dy` for the diamond, `⌊√(radius² − dy²)⌋` for the disk), less the row's
    /// own runs. The same pixels as a distance map thresholded at `radius` (a pixel is
    /// within it of the object exactly when it is within the widened run of some row), at
    /// the cost of the runs and the ring instead of passes over the window.
    fn ring_by_runs(
        &self,
        framed: &[u8],
        window: (usize, usize, usize, usize),
        rows: (usize, usize),
        radius: usize,
        ring: Ring,
    ) -> KernelResult<(u64, u64, u64)> {
        let (y0, x0, h, w) = window;
        let (ra, rb) = rows;
        let pw = w + 2;
        // The object's runs (window columns), row by row: those of box row `i` are
        // `runs[first[i]..first[i + 1]]`.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut first: Vec<usize> = try_with_capacity(rb - ra + 1, "an object's rows")?;
        for y in ra..rb {
            try_push(&mut first, runs.len(), "an object's rows")?;
            let marks = &framed[(y + 1) * pw + 1..][..w];
            let mut x = 0;
            while x < w {
                if marks[x] == 0 {
                    x += 1;
                    continue;
                }
                let start = x;
                while x < w && marks[x] != 0 {
                    x += 1;
                }
                try_push(&mut runs, (start, x), "an object's runs")?;
            }
        }
        try_push(&mut first, runs.len(), "an object's rows")?;
        // How far a run widens `dy` rows away.
        let mut reach: Vec<usize> = try_with_capacity(radius + 1, "the ring's reach")?;
        for dy in 0..=radius {
            let across = match ring {
                Ring::Diamond => radius - dy,
                Ring::Disk => isqrt(radius * radius - dy * dy),
            };
            try_push(&mut reach, across, "the ring's reach")?;
        }
        let (mut count, mut sum, mut sumsq) = (0u64, 0u64, 0u64);
        // A span `(a, b)` sorts by one number, `a` above `b`, while the window's columns fit
        // 32 bits (always, short of a 4-gigapixel row): faster than comparing pairs, and the
        // same order.
        let packed = u32::try_from(w).is_ok();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for y in ra.saturating_sub(radius)..(rb + radius).min(h) {
            spans.clear();
            for yy in ra.max(y.saturating_sub(radius))..rb.min(y + radius + 1) {
                let k = reach[y.abs_diff(yy)];
                for &(a, b) in &runs[first[yy - ra]..first[yy - ra + 1]] {
                    try_push(
                        &mut spans,
                        (a.saturating_sub(k), (b + k).min(w)),
                        "a row's ring",
                    )?;
                }
            }
            if spans.is_empty() {
                continue;
            }
            if packed {
                spans.sort_unstable_by_key(|&(a, b)| ((a as u64) << 32) | b as u64);
            } else {
                spans.sort_unstable();
            }
            let own: &[(usize, usize)] = if (ra..rb).contains(&y) {
                &runs[first[y - ra]..first[y - ra + 1]]
            } else {
                &[]
            };
            let start = (y0 + y) * self.width + x0;
            let grey = &self.grey[start..start + w];
            let mut add = |from: usize, to: usize| {
                let (n, s1, s2) = grey_sums(&grey[from..to]);
                count += n;
                sum += s1;
                sumsq += s2;
            };
            // Merged spans, each less the row's own runs inside it (every own run lies
            // in one span: the widening at dy = 0 holds it).
            let mut next_own = 0;
            let (mut from, mut to) = spans[0];
            for &(a, b) in spans[1..].iter().chain([(usize::MAX, usize::MAX)].iter()) {
                if a <= to {
                    to = to.max(b);
                    continue;
                }
                let mut at = from;
                while next_own < own.len() && own[next_own].0 < to {
                    let (s, e) = own[next_own];
                    if s > at {
                        add(at, s);
                    }
                    at = at.max(e);
                    next_own += 1;
                }
                if at < to {
                    add(at, to);
                }
                (from, to) = (a, b);
            }
        }
        Ok((count, sum, sumsq))
    }

    /// Pixels of a window `(y0, x0, h, w)` at a distance in `1..=limit`, and the sum and sum
    /// of squares of their grey levels: per run of at most 65,536 pixels of a row in 32-bit
    /// sums (they cannot overflow there), so that every x86-64 vectorises the loop.
    fn ring_sums<D: Copy + PartialOrd + Default>(
        &self,
        distance: &[D],
        limit: D,
        window: (usize, usize, usize, usize),
    ) -> (u64, u64, u64) {
        let (y0, x0, h, w) = window;
        let zero = D::default();
        let (mut count, mut sum, mut sumsq) = (0u64, 0u64, 0u64);
        for yy in 0..h {
            let start = (y0 + yy) * self.width + x0;
            let row = &self.grey[start..start + w];
            let far = &distance[yy * w..(yy + 1) * w];
            for (ds, gs) in far.chunks(1 << 16).zip(row.chunks(1 << 16)) {
                let (mut c, mut s1, mut s2) = (0u32, 0u32, 0u32);
                for (&d, &g) in ds.iter().zip(gs) {
                    let keep = d > zero && d <= limit;
                    let v = g as u16;
                    let square = (v * v) as u32;
                    c += keep as u32;
                    s1 += if keep { v as u32 } else { 0 };
                    s2 += if keep { square } else { 0 };
                }
                count += c as u64;
                sum += s1 as u64;
                sumsq += s2 as u64;
            }
        }
        (count, sum, sumsq)
    }
}

/// The count, sum and sum of squares of 8-bit levels: in 32-bit sums per 65,536 pixels
/// (they cannot overflow there), so that the loop vectorises.
fn grey_sums(levels: &[u8]) -> (u64, u64, u64) {
    let (mut sum, mut sumsq) = (0u64, 0u64);
    for chunk in levels.chunks(1 << 16) {
        let (mut s1, mut s2) = (0u32, 0u32);
        for &g in chunk {
            let v = g as u32;
            s1 += v;
            s2 += v * v;
        }
        sum += s1 as u64;
        sumsq += s2 as u64;
    }
    (levels.len() as u64, sum, sumsq)
}

/// `⌊√n⌋`, exactly.
fn isqrt(n: usize) -> usize {
    let mut k = (n as f64).sqrt() as usize;
    while k * k > n {
        k -= 1;
    }
    while (k + 1) * (k + 1) <= n {
        k += 1;
    }
    k
}

/// The largest ring radius read from the object's runs: each row gathers the runs of
/// `2 * radius + 1` rows, so far wider rings take the distance map's passes instead.
const RUN_RADIUS: usize = 32;

/// The window's mask as booleans, from its framed bytes (rows of `w + 2`, a zero frame).
fn unframed(framed: &[u8], h: usize, w: usize) -> KernelResult<Vec<bool>> {
    let mut mask: Vec<bool> = try_vec_filled(h * w, false, "an object's window")?;
    for (y, out) in mask.chunks_exact_mut(w.max(1)).take(h).enumerate() {
        for (m, &f) in out.iter_mut().zip(&framed[(y + 1) * (w + 2) + 1..]) {
            *m = f != 0;
        }
    }
    Ok(mask)
}

/// The largest radius whose city-block distances (up to `2 * radius + 1`) `i16` holds.
const SHORT_RADIUS: usize = (i16::MAX / 2) as usize;
/// A radius past any window (every pixel of it is within it), where larger ones are cut.
const LONG_RADIUS: usize = 1 << 20;

/// City-block (4-neighbour step) distance of every window pixel to the nearest pixel of
/// the framed mask (rows of `w + 2`, a zero frame; mask pixels only on the window rows
/// `rows.0..rows.1`), exact up to `radius` and `radius + 1` beyond: the distance along
/// each row, then a sweep down and one up the columns (whole rows at a time, in `i16`,
/// whose add and min every x86-64 vectorises). In a rectangle the 4-neighbour path
/// distance is |dy| + |dx|, so this is the two-pass transform's value wherever it is
/// within `radius`. With `square`, the squared Euclidean distance instead: for each row
/// the best of the rows within `radius` (their squared distances plus `dy²`: exact up to
/// `radius²`, above it beyond). `D` holds `2 * radius + 1`, or `(radius + 1)² + radius²`
/// with `square`.
fn rows_within<D>(
    framed: &[u8],
    h: usize,
    w: usize,
    radius: usize,
    rows: (usize, usize),
    square: bool,
) -> KernelResult<Vec<D>>
where
    D: Copy
        + Ord
        + std::ops::Add<Output = D>
        + std::ops::Mul<Output = D>
        + From<i8>
        + TryFrom<usize>,
{
    let one = D::from(1);
    let cap = D::try_from(radius)
        .map_err(|_| KernelError::InvalidArgument(format!("a ring radius of {radius} pixels")))?
        + one;
    let reach = radius + 1;
    let (ra, rb) = rows;
    let mut along: Vec<D> = try_vec_filled((rb - ra) * w, cap, "a distance map")?;
    for (r, out) in along.chunks_exact_mut(w.max(1)).enumerate().take(rb - ra) {
        let marks = &framed[(ra + r + 1) * (w + 2) + 1..][..w];
        let mut last = cap;
        for (o, &m) in out.iter_mut().zip(marks) {
            last = if m != 0 {
                D::from(0)
            } else {
                (last + one).min(cap)
            };
            *o = last;
        }
        let mut next = cap;
        for (o, &m) in out.iter_mut().zip(marks).rev() {
            next = if m != 0 {
                D::from(0)
            } else {
                (next + one).min(cap)
            };
            *o = (*o).min(next);
        }
        if square {
            for o in out.iter_mut() {
                *o = *o * *o;
            }
        }
    }
    if !square {
        // The city-block distance is separable: along the rows (above), then down and up
        // the columns, each pixel one more than its neighbour's at most — two sweeps of
        // whole rows, whatever the radius.
        let mut d: Vec<D> = try_vec_filled(h * w, cap, "a distance map")?;
        d[ra * w..rb * w].copy_from_slice(&along);
        for y in 1..h {
            let (done, rest) = d.split_at_mut(y * w);
            for (o, &p) in rest[..w].iter_mut().zip(&done[(y - 1) * w..]) {
                *o = (*o).min((p + one).min(cap));
            }
        }
        for y in (0..h.saturating_sub(1)).rev() {
            let (head, tail) = d.split_at_mut((y + 1) * w);
            for (o, &n) in head[y * w..].iter_mut().zip(&tail[..w]) {
                *o = (*o).min((n + one).min(cap));
            }
        }
        return Ok(d);
    }
    let far = cap * cap;
    let mut d: Vec<D> = try_vec_filled(h * w, far, "a distance map")?;
    for (y, out) in d.chunks_exact_mut(w.max(1)).enumerate().take(h) {
        let lo = ra.max(y.saturating_sub(reach - 1));
        let hi = rb.min(y + reach);
        for yy in lo..hi {
            let dy = D::try_from(y.abs_diff(yy)).unwrap_or(cap).min(cap);
            let dy = if square { dy * dy } else { dy };
            for (o, &a) in out.iter_mut().zip(&along[(yy - ra) * w..(yy - ra + 1) * w]) {
                *o = (*o).min(a + dy);
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
    let mut framed: Vec<u8> = try_vec_filled((h + 2) * (w + 2), 0u8, "a mask")?;
    for (y, row) in mask.outer_iter().enumerate() {
        for (f, &m) in framed[(y + 1) * (w + 2) + 1..].iter_mut().zip(row) {
            *f = m as u8;
        }
    }
    // Distances stop at the (cut) radius + 1: an empty mask stays empty at any radius.
    let radius = radius.min(LONG_RADIUS);
    let within = |d: i64| d as usize <= radius;
    if radius < SHORT_RADIUS {
        let d = rows_within::<i16>(&framed, h, w, radius, (0, h), false)?;
        try_collect_exact(d.into_iter().map(|v| within(v.into())), "a dilated mask")
    } else {
        let d = rows_within::<i64>(&framed, h, w, radius, (0, h), false)?;
        try_collect_exact(d.into_iter().map(within), "a dilated mask")
    }
}

/// Otsu's threshold of an 8-bit image from its histogram (one bin per grey level): the
/// centre `k + 0.5` of the bin that maximises the between-class variance over bins
/// `0..255`, in numpy's float64 arithmetic step for step (cumulative sums left to
/// right), so that it equals `medground.verify.measure._otsu` to the bit.
pub fn otsu_u8(histogram: &[u64; 256]) -> f64 {
    let mut weight = [0f64; 256];
    let mut mean = [0f64; 256];
    let (mut count, mut moment) = (0u64, 0f64);
    for k in 0..256 {
        count += histogram[k];
        moment += histogram[k] as f64 * (k as f64 + 0.5);
        weight[k] = count as f64;
        mean[k] = moment;
    }
    let (total, last) = (weight[255], mean[255]);
    let mut best = (0usize, f64::NEG_INFINITY);
    for k in 0..255 {
        let d = last * weight[k] / total - mean[k];
        let between = d * d / (weight[k] * (total - weight[k])).max(1e-12);
        // numpy's argmax: the first maximum, and the first NaN if any.
        if between.is_nan() {
            if !best.1.is_nan() {
                best = (k, between);
            }
        } else if !best.1.is_nan() && between > best.1 {
            best = (k, between);
        }
    }
    best.0 as f64 + 0.5
}

/// The body in an 8-bit grey view, line by line: the pixels above `fraction` of the
/// image's Otsu threshold, in 8-connected components of at least `min_size` pixels (dark
/// organs and air inside the body are not its edge; specks outside it are not body).
pub struct BodyLines {
    /// The image's Otsu threshold (before `fraction`).
    pub otsu: f64,
    /// Per line (a row with `along_rows`, else a column): the first and the last body
    /// pixel along it, -1 for a line without body.
    pub first: Vec<i64>,
    pub last: Vec<i64>,
}

/// [`BodyLines`] of `grey`: one histogram, one threshold pass, the components' runs.
pub fn body_lines(
    grey: ArrayView2<u8>,
    fraction: f64,
    min_size: u64,
    along_rows: bool,
) -> KernelResult<BodyLines> {
    let (ny, nx) = grey.dim();
    let mut histogram = [0u64; 256];
    let mut body = try_vec_filled(ny * nx, false, "the body mask")?;
    // The grey levels in C order: the view itself when it is laid out so, else a copy.
    let owned;
    let levels: &[u8] = match grey.as_slice() {
        Some(levels) => levels,
        None => {
            owned = grey.iter().copied().collect::<Vec<u8>>();
            &owned
        }
    };
    for &g in levels {
        histogram[g as usize] += 1;
    }
    let otsu = otsu_u8(&histogram);
    // `g > fraction × otsu` in float64 once per grey level, looked up per pixel.
    let threshold = fraction * otsu;
    let mut above = [false; 256];
    for (g, cell) in above.iter_mut().enumerate() {
        *cell = g as f64 > threshold;
    }
    for (cell, &g) in body.iter_mut().zip(levels) {
        *cell = above[g as usize];
    }
    let body = Array3::from_shape_vec((1, ny, nx), body)
        .map_err(|e| KernelError::InvalidArgument(format!("body mask shape: {e}")))?;
    let runs = label_runs(body.view(), Connectivity::from_count(2, 8)?, true)?;
    let keep = runs.keep_by_size(min_size, false)?;
    let lines = if along_rows { ny } else { nx };
    let mut first = try_vec_filled(lines, -1i64, "the body's lines")?;
    let mut last = try_vec_filled(lines, -1i64, "the body's lines")?;
    for (slab, &offset) in runs.slabs.iter().zip(runs.slab_offset.iter()) {
        for i in 0..slab.n_rows() {
            let y = slab.first_row + i;
            let base = offset + slab.row_start[i] as usize;
            for (j, run) in slab.row(i).iter().enumerate() {
                if !keep[runs.labels[base + j] as usize] {
                    continue;
                }
                let (start, end) = (run.start as i64, run.end as i64 - 1);
                if along_rows {
                    if first[y] < 0 {
                        first[y] = start;
                    }
                    last[y] = end; // runs come left to right
                } else {
                    for x in run.start as usize..run.end as usize {
                        if first[x] < 0 {
                            first[x] = y as i64; // rows come top to bottom
                        }
                        last[x] = y as i64;
                    }
                }
            }
        }
    }
    Ok(BodyLines { otsu, first, last })
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
    fn runs_are_the_same_in_every_memory_layout() {
        // C order, Fortran order, a strided view.
        let labels =
            Array2::from_shape_fn((150, 97), |(y, x)| ((y / 7 + x / 5 + y * x % 3) % 5) as u32);
        let fortran = labels.t().as_standard_layout().into_owned();
        let fortran = fortran.t();
        let wide = Array2::from_shape_fn((150, 194), |(y, x)| labels[[y, x / 2]]);
        let strided = wide.slice(ndarray::s![.., ..;2]);
        let expected = rle_by_label(labels.view()).unwrap();
        assert_eq!(expected.len(), 4);
        for (value, counts) in &expected {
            assert_eq!(
                counts,
                &reference_runs(&labels.mapv(|v| v == *value)),
                "label {value}"
            );
        }
        assert_eq!(rle_by_label(fortran).unwrap(), expected);
        assert_eq!(rle_by_label(strided).unwrap(), expected);
    }

    #[test]
    fn a_run_goes_on_across_columns() {
        // Column-major: rows 2..3 of column 0 then rows 0..1 of column 1: one run of 4.
        let labels = array![[0u8, 5], [0, 5], [5, 0]];
        let found = rle_by_label(labels.view()).unwrap();
        assert_eq!(found, vec![(5, vec![2, 3, 1])]);
    }

    #[test]
    fn dilation_at_radii_past_the_short_distances() {
        let empty = Array2::<bool>::from_elem((3, 4), false);
        assert!(dilate_diamond(empty.view(), usize::MAX / 2)
            .unwrap()
            .iter()
            .all(|&v| !v));
        let mut one = empty.clone();
        one[[1, 1]] = true;
        assert!(dilate_diamond(one.view(), 40_000)
            .unwrap()
            .iter()
            .all(|&v| v));
        let near = dilate_diamond(one.view(), 1).unwrap();
        assert_eq!(near.iter().filter(|&&v| v).count(), 5);
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

    /// Every ring, from the object's runs or from a distance map, holds the pixels a
    /// brute-force search finds within the radius (city-block or Euclidean) of the object.
    #[test]
    fn rings_from_runs_and_from_distances_hold_the_searched_pixels() {
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for case in 0..40 {
            let (h, w) = (1 + next() % 23, 1 + next() % 29);
            // Blobs: a few random rectangles of three labels over noise of a fourth.
            let mut labels = Array2::<u8>::from_shape_fn((h, w), |_| (next() % 9 == 0) as u8 * 4);
            for _ in 0..4 {
                let (ya, xa) = (next() % h, next() % w);
                let (yb, xb) = ((ya + 1 + next() % 8).min(h), (xa + 1 + next() % 8).min(w));
                let id = 1 + (next() % 3) as u8;
                labels.slice_mut(ndarray::s![ya..yb, xa..xb]).fill(id);
            }
            let grey = Array2::<u8>::from_shape_fn((h, w), |_| (next() % 256) as u8);
            for radius in [0usize, 1, 2, 3, 5, 8, RUN_RADIUS, RUN_RADIUS + 1, 60] {
                for ring in [Ring::Diamond, Ring::Disk] {
                    let ids = [1u8, 2, 3, 4];
                    let found =
                        object_stats(labels.view(), grey.view(), &ids, radius, ring, false, None)
                            .unwrap();
                    for (id, stats) in ids.iter().zip(found) {
                        let Some(stats) = stats else { continue };
                        let mut expected = (0u64, 0u64, 0u64);
                        for ((y, x), &v) in labels.indexed_iter() {
                            if v == *id {
                                continue;
                            }
                            let near = labels.indexed_iter().any(|((yy, xx), &u)| {
                                let (dy, dx) = (y.abs_diff(yy), x.abs_diff(xx));
                                u == *id
                                    && match ring {
                                        Ring::Diamond => dy + dx <= radius,
                                        Ring::Disk => dy * dy + dx * dx <= radius * radius,
                                    }
                            });
                            if near {
                                let g = grey[[y, x]] as u64;
                                expected = (expected.0 + 1, expected.1 + g, expected.2 + g * g);
                            }
                        }
                        assert_eq!(
                            (stats.ring_count, stats.ring_sum, stats.ring_sumsq),
                            expected,
                            "case {case}, id {id}, radius {radius}, {ring:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn integer_square_roots_are_exact() {
        for n in 0..100_000usize {
            let k = isqrt(n);
            assert!(k * k <= n && (k + 1) * (k + 1) > n, "{n}");
        }
        assert_eq!(isqrt(usize::MAX >> 2), (1usize << 31) - 1);
    }

    /// `n` lines of which `lines` hold body from `from` to `to` (others -1).
    fn extents(
        n: usize,
        lines: std::ops::Range<usize>,
        from: i64,
        to: i64,
    ) -> (Vec<i64>, Vec<i64>) {
        let mut first = vec![-1i64; n];
        let mut last = vec![-1i64; n];
        for k in lines {
            first[k] = from;
            last[k] = to;
        }
        (first, last)
    }

    #[test]
    fn body_lines_keep_big_components_and_read_each_line() {
        // A 12x10 view: a bright 6x5 block (the body) with a dark hole, and a bright speck.
        let mut grey = Array2::<u8>::from_elem((12, 10), 0);
        for y in 3..9 {
            for x in 2..7 {
                grey[[y, x]] = 200;
            }
        }
        grey[[5, 4]] = 0; // air inside: not the edge
        grey[[0, 9]] = 220; // a speck: not body
        let rows = body_lines(grey.view(), 0.5, 5, true).unwrap();
        assert_eq!((rows.first, rows.last), extents(12, 3..9, 2, 6));
        let cols = body_lines(grey.view(), 0.5, 5, false).unwrap();
        assert_eq!((cols.first, cols.last), extents(10, 2..7, 3, 8));
        // Levels 0 and 200-220: every split between them is as good, numpy takes the first.
        assert_eq!(rows.otsu, 0.5);
    }
}
