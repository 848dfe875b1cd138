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

/// Reads one varint at `*at`, moving `*at` past it; `None` when the bytes
/// end first or it runs past 64 bits' worth of bytes.
pub fn get(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Bytes [`put`] writes for `v`.
pub fn len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    #[test]
    fn len_is_what_put_writes_and_get_reads_it_back() {
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
            let mut at = 0;
            assert_eq!(super::get(&buf, &mut at), Some(v), "{v}");
            assert_eq!(at, buf.len(), "{v}");
        }
        assert_eq!(super::get(&[0x80, 0x80], &mut 0), None, "cut short");
        assert_eq!(super::get(&[0xff; 11], &mut 0), None, "past 64 bits");
    }
}
