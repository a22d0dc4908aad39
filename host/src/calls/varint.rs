//! Base-128 varints (protobuf's encoding), shared by the call encoding and the Perfetto
//! writer.

/// Appends `v` as a varint.
pub fn put(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// How many bytes [`put`] writes for `v`.
pub fn len(v: u64) -> usize {
    (64 - v.max(1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn len_matches_the_encoding() {
        for v in [0, 1, 127, 128, 16_383, 16_384, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(len(v), b.len(), "{v}");
        }
    }
}
