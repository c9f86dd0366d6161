//! Wall-clock stamps carried inside the video itself: an H.264 SEI `user_data_unregistered`
//! message with a fixed UUID and the capture time in unix milliseconds, as 13 ASCII digits.
//!
//! The SEI travels through every hop untouched (origins and the proxy copy NAL units; nginx-rtmp's
//! HLS muxer keeps SEI and only regenerates SPS/PPS/AUD), so a viewer finds the stamp in FLV
//! tags and in MPEG-TS segments alike. Neither the UUID nor the digits contain a zero byte, so
//! no emulation-prevention byte is ever needed and the stamp can be found by a plain byte search.

/// The SEI payload's UUID (16 bytes, no zero byte).
pub(crate) const UUID: &[u8; 16] = b"livegate-wallclk";

/// Digits of a unix-millisecond stamp (enough until the year 2286).
const DIGITS: usize = 13;

/// One SEI NAL unit carrying `unix_ms`, with its 4-byte AVCC length prefix.
pub(crate) fn sei_nal(unix_ms: u64) -> Vec<u8> {
    let digits = format!(
        "{:0width$}",
        unix_ms % 10u64.pow(DIGITS as u32),
        width = DIGITS
    );
    let payload_len = UUID.len() + DIGITS;
    // NAL header (SEI), payload type 5 (user data unregistered), payload size, payload, and
    // the RBSP stop bit.
    let mut nal = Vec::with_capacity(4 + 4 + payload_len);
    let nal_len = 3 + payload_len + 1;
    nal.extend_from_slice(&(nal_len as u32).to_be_bytes());
    nal.extend_from_slice(&[0x06, 0x05, payload_len as u8]);
    nal.extend_from_slice(UUID);
    nal.extend_from_slice(digits.as_bytes());
    nal.push(0x80);
    nal
}

/// The first stamp found in `bytes` (an FLV video tag, or a whole TS segment), in unix ms.
pub(crate) fn find(bytes: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(at) = position(&bytes[from..], UUID) {
        let start = from + at + UUID.len();
        // In a TS segment a packet boundary can fall inside the digits: try the next one.
        if let Some(digits) = bytes.get(start..start + DIGITS) {
            if digits.iter().all(u8::is_ascii_digit) {
                return std::str::from_utf8(digits).ok()?.parse().ok();
            }
        }
        from = start;
    }
    None
}

fn position(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_found_again_and_has_no_zero_byte_after_its_length() {
        let nal = sei_nal(1_764_600_000_123);
        assert!(!nal[4..].contains(&0));
        assert_eq!(
            u32::from_be_bytes([nal[0], nal[1], nal[2], nal[3]]) as usize,
            nal.len() - 4
        );
        let mut tag = vec![0x17, 0x01, 0, 0, 0];
        tag.extend_from_slice(&nal);
        tag.extend_from_slice(&[0, 0, 0, 5, 0x65, 1, 2, 3, 4]);
        assert_eq!(find(&tag), Some(1_764_600_000_123));
        // A split stamp is skipped, the next whole one found.
        let mut split = UUID.to_vec();
        split.extend_from_slice(b"17646\x47\x01");
        split.extend_from_slice(&nal);
        assert_eq!(find(&split), Some(1_764_600_000_123));
        assert_eq!(find(b"no stamp here"), None);
    }
}
