//! The spool reader on arbitrary file contents: never panics, accepts only whole
//! records, and gives back any body written in the record layout.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(record) = rme::state_dir::spool::decode(7, data) {
        assert_eq!(record.seq, 7);
        assert_eq!(
            record.body.len() + 20,
            data.len(),
            "a record is its header and body, no more"
        );
        assert_eq!(&data[20..], record.body.as_slice());
    }
    // The same bytes as a body, framed as spool.rs writes it (magic, created_ms, len, crc32).
    let mut framed = b"RMS1".to_vec();
    framed.extend_from_slice(&42i64.to_le_bytes());
    framed.extend_from_slice(&(data.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32(data).to_le_bytes());
    framed.extend_from_slice(data);
    let back = rme::state_dir::spool::decode(1, &framed).expect("a well-framed record decodes");
    assert_eq!((back.created_ms, back.body.as_slice()), (42, data));
    // Cut short anywhere, it is refused rather than half-read.
    if !data.is_empty() {
        assert!(rme::state_dir::spool::decode(1, &framed[..framed.len() - 1]).is_none());
    }
});

/// CRC-32 (IEEE), the checksum crc32fast computes; bitwise to keep the target dependency-free.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
