//! 1-bit pixel packing of BINARY segmentations (PS3.5 8.1.1 and 8.2: with BitsAllocated 1 all frames
//! form one continuous bit stream, frame boundaries need not fall on byte boundaries; pixel `n` of the
//! stream is bit `n % 8` of byte `n / 8`, first pixel in the least significant bit; the value is padded
//! to an even length).
//!
//! We unpack ourselves because dicom-rs 0.10.1 miscounts frames of 1-bit data when Rows × Columns is
//! not a multiple of 8 (docs/design.md).

/// Packs `values` (any non-zero value = 1) into a bit stream, LSB first, padded with zero bytes to an
/// even length.
pub fn pack_bits<I: IntoIterator<Item = u8>>(values: I, count: usize) -> Vec<u8> {
    let mut out = vec![0u8; count.div_ceil(8)];
    for (n, v) in values.into_iter().take(count).enumerate() {
        if v != 0 {
            out[n / 8] |= 1 << (n % 8);
        }
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// Unpacks the first `count` bits of `bytes` (LSB first) into one byte per pixel (0 or 1).
/// `None` when `bytes` holds fewer than `count` bits.
pub fn unpack_bits(bytes: &[u8], count: usize) -> Option<Vec<u8>> {
    if bytes.len() < count.div_ceil(8) {
        return None;
    }
    Some((0..count).map(|n| (bytes[n / 8] >> (n % 8)) & 1).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsb_first_across_byte_boundaries_and_even_padding() {
        // 11 pixels: 1 0 0 0 0 0 0 1 | 1 1 0
        let v = [1u8, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0];
        let packed = pack_bits(v, v.len());
        assert_eq!(packed, vec![0b1000_0001, 0b0000_0011]);
        assert_eq!(unpack_bits(&packed, v.len()), Some(v.to_vec()));
        // 3 bytes of data are padded to 4.
        assert_eq!(pack_bits([0u8; 17], 17).len(), 4);
        assert_eq!(unpack_bits(&[0u8; 2], 17), None);
        // non-zero values count as 1
        assert_eq!(pack_bits([255u8, 7], 2), vec![0b11, 0]);
    }
}
