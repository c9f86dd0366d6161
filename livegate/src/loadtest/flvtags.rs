//! An incremental FLV reader for viewers: checks the framing as bytes arrive (header, tag
//! types, every `PreviousTagSize`) and hands over each tag's type, timestamp and the start of
//! its data — enough to spot keyframes and read wall-clock stamps without buffering the stream.

/// How much of a video tag's data is kept: the stamp's SEI is the first NAL unit.
const KEPT: usize = 96;

/// Bytes of the FLV file header plus the first `PreviousTagSize`.
const HEADER_LEN: usize = 13;
/// Bytes of a tag header.
const TAG_HEADER_LEN: usize = 11;
/// Largest tag accepted (FLV sizes are 24-bit; anything near that is garbage, not video).
const MAX_TAG: u32 = 8 * 1024 * 1024;

/// One complete tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag {
    /// 8 audio, 9 video, 18 script data.
    pub(crate) kind: u8,
    /// Timestamp, ms.
    pub(crate) timestamp_ms: u32,
    /// The first bytes of its data (video tags only).
    pub(crate) head: Vec<u8>,
}

impl Tag {
    /// A video frame a decoder can start from: a keyframe that is not a sequence header.
    pub(crate) fn is_keyframe(&self) -> bool {
        self.kind == 9
            && self.head.first().is_some_and(|b| b >> 4 == 1)
            && (self.head.first().is_some_and(|b| b & 0x0f != 7) || self.head.get(1) == Some(&1))
    }
}

/// Why the bytes are not an FLV stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FlvError {
    /// The file header is wrong.
    #[error("not an FLV header")]
    Header,
    /// A tag type other than audio, video or script data.
    #[error("unknown tag type {0}")]
    TagType(u8),
    /// A tag larger than any real one.
    #[error("tag of {0} bytes")]
    TooLarge(u32),
    /// `PreviousTagSize` disagrees with the tag.
    #[error("PreviousTagSize {found}, expected {expected}")]
    PreviousSize {
        /// In the stream.
        found: u32,
        /// 11 plus the tag's data size.
        expected: u32,
    },
}

#[derive(Debug)]
enum State {
    Header,
    TagHeader,
    Data { left: u32 },
    PreviousSize { expected: u32 },
}

/// Feed bytes, get tags.
#[derive(Debug)]
pub(crate) struct FlvReader {
    state: State,
    pending: Vec<u8>,
    tag: Option<Tag>,
    data_size: u32,
}

impl Default for FlvReader {
    fn default() -> Self {
        FlvReader {
            state: State::Header,
            pending: Vec::with_capacity(TAG_HEADER_LEN),
            tag: None,
            data_size: 0,
        }
    }
}

impl FlvReader {
    /// Reads `input`, calling `on_tag` for every tag completed by it.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        mut on_tag: impl FnMut(Tag),
    ) -> Result<(), FlvError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Data { left } => {
                    let take = (*left as usize).min(input.len());
                    if let Some(tag) = self.tag.as_mut() {
                        if tag.kind == 9 && tag.head.len() < KEPT {
                            let keep = (KEPT - tag.head.len()).min(take);
                            tag.head.extend_from_slice(&input[..keep]);
                        }
                    }
                    *left -= take as u32;
                    input = &input[take..];
                    if *left == 0 {
                        let expected = self.expected_previous();
                        self.state = State::PreviousSize { expected };
                    }
                }
                State::Header | State::TagHeader | State::PreviousSize { .. } => {
                    let need = match self.state {
                        State::Header => HEADER_LEN,
                        State::TagHeader => TAG_HEADER_LEN,
                        _ => 4,
                    };
                    let take = (need - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == need {
                        let block = std::mem::take(&mut self.pending);
                        self.block(&block, &mut on_tag)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn expected_previous(&self) -> u32 {
        self.data_size + TAG_HEADER_LEN as u32
    }

    fn block(&mut self, block: &[u8], on_tag: &mut impl FnMut(Tag)) -> Result<(), FlvError> {
        match self.state {
            State::Header => {
                let offset = u32::from_be_bytes([block[5], block[6], block[7], block[8]]);
                let previous = u32::from_be_bytes([block[9], block[10], block[11], block[12]]);
                if &block[..3] != b"FLV" || block[3] != 1 || offset != 9 || previous != 0 {
                    return Err(FlvError::Header);
                }
                self.state = State::TagHeader;
            }
            State::TagHeader => {
                let kind = block[0] & 0x1f;
                if !matches!(kind, 8 | 9 | 18) {
                    return Err(FlvError::TagType(kind));
                }
                let size = u32::from_be_bytes([0, block[1], block[2], block[3]]);
                if size > MAX_TAG {
                    return Err(FlvError::TooLarge(size));
                }
                let timestamp_ms = u32::from_be_bytes([block[7], block[4], block[5], block[6]]);
                self.tag = Some(Tag {
                    kind,
                    timestamp_ms,
                    head: Vec::new(),
                });
                self.data_size = size;
                self.state = if size == 0 {
                    State::PreviousSize {
                        expected: TAG_HEADER_LEN as u32,
                    }
                } else {
                    State::Data { left: size }
                };
            }
            State::PreviousSize { expected } => {
                let found = u32::from_be_bytes([block[0], block[1], block[2], block[3]]);
                if found != expected {
                    return Err(FlvError::PreviousSize { found, expected });
                }
                if let Some(tag) = self.tag.take() {
                    on_tag(tag);
                }
                self.state = State::TagHeader;
            }
            State::Data { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(kind: u8, timestamp_ms: u32, data: &[u8]) -> Vec<u8> {
        let size = data.len() as u32;
        let ts = timestamp_ms.to_be_bytes();
        let mut out = vec![kind];
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&[ts[1], ts[2], ts[3], ts[0], 0, 0, 0]);
        out.extend_from_slice(data);
        out.extend_from_slice(&(size + 11).to_be_bytes());
        out
    }

    #[test]
    fn tags_come_out_whatever_the_byte_split_and_bad_framing_is_caught() {
        let mut stream = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
        stream.extend(tag(9, 0, &[0x17, 0, 0, 0, 0, 1, 2]));
        stream.extend(tag(8, 10, &[0xaf, 1, 9, 9]));
        stream.extend(tag(9, 0x0100_0040, &[0x17, 1, 0, 0, 0, 5, 5]));
        stream.extend(tag(9, 80, &[0x27, 1, 0, 0, 0]));
        for split in [1, 3, 7, 1000] {
            let mut reader = FlvReader::default();
            let mut tags = Vec::new();
            for chunk in stream.chunks(split) {
                reader.feed(chunk, |t| tags.push(t)).unwrap();
            }
            let kinds: Vec<_> = tags
                .iter()
                .map(|t| (t.kind, t.timestamp_ms, t.is_keyframe()))
                .collect();
            assert_eq!(
                kinds,
                [
                    (9, 0, false),
                    (8, 10, false),
                    (9, 0x0100_0040, true),
                    (9, 80, false)
                ],
                "split {split}"
            );
            assert_eq!(tags[2].head, [0x17, 1, 0, 0, 0, 5, 5]);
        }
        let mut broken = stream.clone();
        let last = broken.len() - 1;
        broken[last] ^= 1;
        let mut reader = FlvReader::default();
        assert!(matches!(
            reader.feed(&broken, |_| {}),
            Err(FlvError::PreviousSize { .. })
        ));
        assert_eq!(
            FlvReader::default().feed(b"HTTP/1.1 200 OK\r\n", |_| {}),
            Err(FlvError::Header)
        );
    }
}
