//! The spool reader on arbitrary file contents: never panics, accepts only whole
//! records, and gives back any body and note written in the record layout
//! (`RMS3`: magic, created_ms, samples, body length, note length, crc32 of those
//! four fields and the body and note, then body, then note; `RMS2` has no note).
#![no_main]

use libfuzzer_sys::fuzz_target;

/// magic + created_ms + samples + len + note len + crc32
const HEADER: usize = 4 + 8 + 4 + 4 + 4 + 4;
const HEADER_V2: usize = 4 + 8 + 4 + 4 + 4;

fuzz_target!(|data: &[u8]| {
    if let Some(record) = rme::state_dir::spool::decode(7, data) {
        assert_eq!(record.seq, 7);
        let header = if data.starts_with(b"RMS3") {
            HEADER
        } else {
            assert!(data.starts_with(b"RMS2"), "only RMS3 and RMS2 decode");
            assert!(record.note.is_empty(), "RMS2 has no note");
            HEADER_V2
        };
        assert_eq!(
            record.body.len() + record.note.len() + header,
            data.len(),
            "a record is its header, body and note, no more"
        );
        assert_eq!(&data[header..header + record.body.len()], record.body.as_slice());
    }
    // The same bytes as a note and a body (split at the first byte's value),
    // framed as spool.rs writes an RMS3 record.
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (note, body) = data.split_at(split);
    let mut fields = Vec::new();
    fields.extend_from_slice(&42i64.to_le_bytes());
    fields.extend_from_slice(&3u32.to_le_bytes());
    fields.extend_from_slice(&(body.len() as u32).to_le_bytes());
    fields.extend_from_slice(&(note.len() as u32).to_le_bytes());
    let mut covered = fields.clone();
    covered.extend_from_slice(body);
    covered.extend_from_slice(note);
    let mut framed = b"RMS3".to_vec();
    framed.extend_from_slice(&fields);
    framed.extend_from_slice(&crc32(&covered).to_le_bytes());
    framed.extend_from_slice(body);
    framed.extend_from_slice(note);
    assert_eq!(framed.len(), HEADER + data.len());
    let back = rme::state_dir::spool::decode(1, &framed).expect("a well-framed RMS3 record decodes");
    assert_eq!(
        (back.created_ms, back.samples, &back.body[..], &back.note[..]),
        (42, 3, body, note)
    );
    // Cut short anywhere, or one byte flipped, it is refused rather than half-read.
    for cut in [framed.len() - 1, HEADER, HEADER - 1, 4] {
        if cut == framed.len() {
            continue;
        }
        assert!(rme::state_dir::spool::decode(1, &framed[..cut]).is_none(), "cut at {cut}");
    }
    let flip = usize::from(data.get(1).copied().unwrap_or(0)) % (framed.len() - 4) + 4;
    framed[flip] ^= 0x01;
    assert!(rme::state_dir::spool::decode(1, &framed).is_none(), "flipped byte {flip}");
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
