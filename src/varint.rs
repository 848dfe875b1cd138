//! Unsigned LEB128 varints: protobuf's (the remote-write bodies written by
//! hand) and the state file's records. A leaf.

/// Appends `v`, seven bits a byte, low first.
pub fn put(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Bytes [`put`] writes for `v`.
pub fn len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    #[test]
    fn len_is_what_put_writes() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            super::put(&mut buf, v);
            assert_eq!(buf.len(), super::len(v), "{v}");
        }
    }
}
