//! RLE Lossless decoding (PS3.5 Annex G), written here because the dicom-rs 0.10.1 RLE decoder
//! panics (index out of bounds) on valid files whose frame spans several fragments
//! (D_CLUNIE_CT1_RLE_FRAGS.dcm).
//!
//! A frame starts with a 64-byte header: the number of segments (u32 LE, at most 15) and 15 segment
//! offsets (u32 LE, from the start of the header). Each segment holds one byte plane of the
//! samples, most significant byte first (G.2), PackBits-coded (G.3.1): a header byte `n` in 0..=127
//! copies the next `n + 1` bytes, in -127..=-1 repeats the next byte `1 - n` times, -128 is a no-op.

/// Decodes one RLE frame of `pixels` samples of `bytes_per_sample` bytes (1, 2 or 4) into words.
///
/// Errors (a message) on a header that does not match, an offset outside the frame, or a segment
/// that decodes to too few bytes; excess bytes in a segment are ignored (G.3.1 allows padding).
pub fn decode_frame(
    data: &[u8],
    pixels: usize,
    bytes_per_sample: usize,
) -> Result<Vec<u32>, String> {
    let word = |p: usize| {
        data.get(p..p + 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
    };
    let segments = word(0).ok_or("RLE frame shorter than its 64-byte header")?;
    if segments != bytes_per_sample {
        return Err(format!(
            "RLE header has {segments} segments, {bytes_per_sample} expected"
        ));
    }
    let mut out = vec![0u32; pixels];
    for s in 0..segments {
        let start = word(4 + 4 * s).ok_or("truncated RLE header")?;
        let end = if s + 1 < segments {
            word(8 + 4 * s).ok_or("truncated RLE header")?
        } else {
            data.len()
        };
        let seg = data
            .get(start..end.min(data.len()))
            .filter(|_| start >= 64 && start <= end)
            .ok_or_else(|| {
                format!(
                    "RLE segment {s} offsets {start}..{end} outside the frame of {} bytes",
                    data.len()
                )
            })?;
        let plane = unpack_bits(seg, pixels);
        if plane.len() < pixels {
            return Err(format!(
                "RLE segment {s} decodes to {} bytes, {pixels} expected",
                plane.len()
            ));
        }
        let shift = 8 * (segments - 1 - s);
        for (o, &b) in out.iter_mut().zip(&plane) {
            *o |= (b as u32) << shift;
        }
    }
    Ok(out)
}

/// PackBits decoding (PS3.5 G.3.1), stopping once `limit` bytes are produced or input ends.
fn unpack_bits(seg: &[u8], limit: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limit);
    let mut p = 0;
    while p < seg.len() && out.len() < limit {
        let n = seg[p] as i8;
        p += 1;
        if n >= 0 {
            let count = n as usize + 1;
            let end = (p + count).min(seg.len());
            out.extend_from_slice(&seg[p..end]);
            p = end;
        } else if n != -128 {
            let Some(&b) = seg.get(p) else { break };
            out.extend(std::iter::repeat_n(b, 1 + (-(n as isize)) as usize));
            p += 1;
        }
    }
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packbits_literal_and_run() {
        assert_eq!(
            unpack_bits(&[2, 1, 2, 3, 0xFE, 9, 0x80], 10),
            vec![1, 2, 3, 9, 9, 9]
        );
    }

    #[test]
    fn two_segments_msb_first() {
        let mut f = vec![0u8; 64];
        f[0] = 2;
        f[4] = 64;
        f[8] = 67;
        f.extend_from_slice(&[1, 0x12, 0x34]); // high bytes
        f.extend_from_slice(&[0xFF, 0x56]); // low bytes: run of 2
        assert_eq!(decode_frame(&f, 2, 2).unwrap(), vec![0x1256, 0x3456]);
        assert!(decode_frame(&f, 3, 2).is_err());
        assert!(decode_frame(&f[..10], 2, 2).is_err());
    }
}
