//! Lossless PNG encoding of the 8-bit images a run stores (greyscale and RGB views).
//!
//! The `png` crate's fdeflate compressor (a DEFLATE encoder specialised for filtered
//! image rows) with a filter chosen row by row: on the run's CT views and photographs
//! about seven times faster than zlib at level 1 (Pillow's fastest compressing level)
//! for files within a few percent of its size. The settings are named explicitly, not
//! through the crate's coarse `Compression` presets, and the crate's version is locked
//! (`Cargo.lock`), so the same pixels always give the same bytes.

use png::{BitDepth, ColorType, DeflateCompression, Encoder, Filter};

use crate::alloc::try_with_capacity;
use crate::error::{KernelError, KernelResult};

/// The PNG file of an image of `height` rows of `width` pixels with `channels` 8-bit
/// samples each (1: greyscale, 3: RGB), `pixels` row after row (C order).
pub fn png(pixels: &[u8], height: usize, width: usize, channels: usize) -> KernelResult<Vec<u8>> {
    let color = match channels {
        1 => ColorType::Grayscale,
        3 => ColorType::Rgb,
        _ => {
            return Err(KernelError::InvalidArgument(format!(
                "PNG output takes 1 (greyscale) or 3 (RGB) channels, got {channels}"
            )))
        }
    };
    // The format's limit: each side below 2^31 and not zero.
    let side = |n: usize, what: &str| -> KernelResult<u32> {
        match u32::try_from(n) {
            Ok(v) if v > 0 && v <= i32::MAX as u32 => Ok(v),
            _ => Err(KernelError::InvalidArgument(format!(
                "a PNG image's {what} must be 1 to 2^31 - 1 pixels, got {n}"
            ))),
        }
    };
    let (rows, columns) = (side(height, "height")?, side(width, "width")?);
    let expected = height
        .checked_mul(width)
        .and_then(|n| n.checked_mul(channels))
        .ok_or_else(|| {
            KernelError::Overflow(format!(
                "a {height}×{width}×{channels} image's size overflows"
            ))
        })?;
    if pixels.len() != expected {
        return Err(KernelError::ShapeMismatch(format!(
            "{} pixel bytes for a {height}×{width}×{channels} image of {expected}",
            pixels.len()
        )));
    }
    // Filtered data compresses to well under its size; the vector grows if it must.
    let mut out: Vec<u8> = try_with_capacity(expected / 4 + 1024, "the PNG file")?;
    let failed =
        |e: png::EncodingError| KernelError::InvalidArgument(format!("PNG encoding failed: {e}"));
    {
        let mut encoder = Encoder::new(&mut out, columns, rows);
        encoder.set_color(color);
        encoder.set_depth(BitDepth::Eight);
        encoder.set_deflate_compression(DeflateCompression::FdeflateUltraFast);
        encoder.set_filter(Filter::Adaptive);
        let mut writer = encoder.write_header().map_err(failed)?;
        writer.write_image_data(pixels).map_err(failed)?;
        writer.finish().map_err(failed)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(file: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(file));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info, buf)
    }

    #[test]
    fn round_trips_grey_and_rgb() {
        for (h, w, c) in [
            (1usize, 1usize, 1usize),
            (7, 5, 1),
            (33, 17, 3),
            (1, 300, 3),
            (256, 3, 1),
        ] {
            let pixels: Vec<u8> = (0..h * w * c)
                .map(|i| ((i * 37 + i / 7) % 256) as u8)
                .collect();
            let file = png(&pixels, h, w, c).unwrap();
            let (info, back) = decode(&file);
            assert_eq!((info.height as usize, info.width as usize), (h, w));
            assert_eq!(
                info.color_type,
                if c == 1 {
                    ColorType::Grayscale
                } else {
                    ColorType::Rgb
                }
            );
            assert_eq!(back, pixels, "{h}×{w}×{c}");
            assert_eq!(
                png(&pixels, h, w, c).unwrap(),
                file,
                "the same pixels, the same bytes"
            );
        }
    }

    #[test]
    fn refuses_what_png_cannot_hold() {
        assert!(matches!(
            png(&[0; 4], 2, 2, 2),
            Err(KernelError::InvalidArgument(_))
        ));
        assert!(matches!(
            png(&[], 0, 4, 1),
            Err(KernelError::InvalidArgument(_))
        ));
        assert!(matches!(
            png(&[0; 5], 2, 2, 1),
            Err(KernelError::ShapeMismatch(_))
        ));
    }
}
