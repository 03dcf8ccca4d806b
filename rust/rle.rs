//! COCO run-length encoding of 2D masks: the counts string written, read back, and a
//! window of the mask decoded from its foreground runs.
//!
//! A mask is read in column-major order; its counts are the lengths of alternating runs,
//! zeros first. In the string, each count (from the fourth on, its difference from the
//! count two before) is written in 5-bit groups, least significant first: 0x20 marks
//! that another group follows, 0x10 of the last group is the sign, and 48 is added.

use crate::alloc::{try_push, try_vec_filled};
use crate::error::{KernelError, KernelResult};

/// The most groups a count may take: 12 groups of 5 bits hold any count below 2^59.
pub const MAX_GROUPS: usize = 12;

/// COCO's counts string of run lengths (zeros first).
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

/// The run lengths a counts string stands for, checked: every character in COCO's
/// alphabet `'0'..='o'`, no count longer than [`MAX_GROUPS`] characters, the string not
/// ending inside a count, no negative run, and runs adding up to `pixels`.
pub fn decompress_counts(text: &[u8], pixels: u64) -> KernelResult<Vec<u64>> {
    let invalid = |m: String| KernelError::InvalidArgument(m);
    if text.is_empty() {
        return Err(invalid("RLE counts string is empty".into()));
    }
    let mut counts: Vec<u64> = Vec::new();
    let (mut value, mut groups, mut total) = (0i64, 0usize, 0u64);
    for &byte in text {
        let code = byte.wrapping_sub(48);
        if byte < 48 || code > 0x3f {
            return Err(invalid(format!(
                "RLE counts string holds byte {byte}, outside COCO's alphabet '0'..'o'"
            )));
        }
        if groups == MAX_GROUPS {
            return Err(invalid(format!(
                "RLE counts string has a count longer than {MAX_GROUPS} characters"
            )));
        }
        value |= ((code & 0x1f) as i64) << (5 * groups);
        groups += 1;
        if code & 0x20 != 0 {
            continue;
        }
        if code & 0x10 != 0 {
            value -= 1i64 << (5 * groups);
        }
        let i = counts.len();
        let count = if i > 2 {
            value.checked_add(counts[i - 2] as i64)
        } else {
            Some(value)
        };
        let count = match count {
            Some(c) if c >= 0 => c as u64,
            _ => return Err(invalid("RLE counts must not be negative".into())),
        };
        total = total
            .checked_add(count)
            .ok_or_else(|| invalid("RLE counts add up to more pixels than any mask".into()))?;
        try_push(&mut counts, count, "an RLE's counts")?;
        (value, groups) = (0, 0);
    }
    if groups != 0 {
        return Err(invalid("RLE counts string ends inside a count".into()));
    }
    if total != pixels {
        return Err(invalid(format!(
            "RLE counts add up to {total} pixels, but the size holds {pixels}"
        )));
    }
    Ok(counts)
}

/// The mask of `counts` (runs of a `height`-row image, column-major) within rows
/// `top..bottom` and columns `left..right`, row-major: each foreground run sets the rows
/// it covers in the columns it crosses, so the cost is the object's runs and the window.
pub fn decode_window(counts: &[u64], height: usize, window: [usize; 4]) -> KernelResult<Vec<bool>> {
    let [top, left, bottom, right] = window;
    let w = right.saturating_sub(left);
    let mut out = try_vec_filled(bottom.saturating_sub(top) * w, false, "an RLE's window")?;
    if height == 0 || w == 0 || bottom <= top {
        return Ok(out);
    }
    let (h, first, last) = (
        height as u64,
        (left * height) as u64,
        (right * height) as u64,
    );
    let mut start = 0u64;
    for (i, &n) in counts.iter().enumerate() {
        let end = start + n;
        if i % 2 == 1 && n > 0 && start < last && end > first {
            for column in (start / h).max(left as u64)..((end - 1) / h + 1).min(right as u64) {
                let column_start = column * h;
                let rows = (start.max(column_start) - column_start) as usize
                    ..(end.min(column_start + h) - column_start) as usize;
                let (r0, r1) = (rows.start.max(top), rows.end.min(bottom));
                let x = column as usize - left;
                for r in r0..r1 {
                    out[(r - top) * w + x] = true;
                }
            }
        }
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn counts_read_back() {
        for counts in [
            vec![3u64, 40],
            vec![0, 1, 100, 2],
            vec![5, 40, 5, 1],
            vec![0, 6],
        ] {
            let total = counts.iter().sum();
            assert_eq!(
                decompress_counts(compress_counts(&counts).as_bytes(), total).unwrap(),
                counts
            );
        }
    }

    #[test]
    fn bad_strings_are_errors() {
        assert!(decompress_counts(b"", 0).is_err());
        assert!(decompress_counts(b"3X1", 42).is_err()); // adds up to 43
        assert!(decompress_counts(b"3X", 43).is_err()); // ends inside a count
        assert!(decompress_counts(b"3 1", 4).is_err()); // outside the alphabet
        assert!(decompress_counts(b"p", 0).is_err());
        assert!(decompress_counts(&[b'X'; 13], 0).is_err()); // a count of 13 groups
        assert!(decompress_counts(b"5X15iN", 51).is_ok());
        assert!(decompress_counts(b"5X15i", 50).is_err()); // 5, 40, 5, 40 - 39 ... ends inside
    }

    #[test]
    fn a_window_of_a_mask() {
        // 3 rows, 2 columns, column-major: [0 0 1 | 1 1 0] → rows: [0 1], [0 1], [1 0].
        let counts = [2u64, 3, 1];
        assert_eq!(
            decode_window(&counts, 3, [0, 0, 3, 2]).unwrap(),
            vec![false, true, false, true, true, false]
        );
        assert_eq!(
            decode_window(&counts, 3, [1, 1, 3, 2]).unwrap(),
            vec![true, false]
        );
        assert!(decode_window(&counts, 3, [1, 1, 1, 2]).unwrap().is_empty());
    }
}
