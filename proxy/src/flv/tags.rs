//! FLV demuxing, just deep enough for a fan-out hub: the file header, then tags, each kept as
//! the shared bytes a viewer is sent (tag header, data and trailing `PreviousTagSize`) with what
//! the hub must know of it — is it metadata, a codec configuration, a video keyframe?
//!
//! Both the classic codec ids (AVC, AAC) and the Enhanced RTMP/FLV extension (HEVC, AV1, …
//! signalled by the `IsExHeader` bit) are understood.

use bytes::{Bytes, BytesMut};

/// Length of the FLV file header plus the first `PreviousTagSize`.
pub const HEADER_LEN: usize = 9 + 4;
const TAG_HEADER_LEN: usize = 11;

/// What a tag is, for the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// Script data (`onMetaData`).
    Script,
    /// A video decoder configuration (AVC/HEVC sequence header).
    VideoConfig,
    /// An audio decoder configuration (AAC AudioSpecificConfig).
    AudioConfig,
    /// A video keyframe: where a viewer can start decoding.
    Keyframe,
    /// Any other video frame.
    Video,
    /// Any other audio frame.
    Audio,
}

impl TagKind {
    /// Codec configuration and metadata: every viewer needs the latest of each first.
    pub fn is_config(self) -> bool {
        matches!(
            self,
            TagKind::Script | TagKind::VideoConfig | TagKind::AudioConfig
        )
    }
}

/// Where one tag sits in a [`Batch`], and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    /// Offset of the tag's first byte in the batch.
    pub offset: usize,
    /// Its length: tag header, data and `PreviousTagSize`.
    pub len: usize,
    /// What it is.
    pub kind: TagKind,
    /// Its timestamp, in milliseconds.
    pub timestamp_ms: u32,
}

/// Consecutive complete tags as one shared buffer: what the hub hands every viewer, so a
/// viewer is sent whole tags in as few writes as the origin's reads allow, and no viewer costs
/// a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The tags' bytes, back to back.
    pub bytes: Bytes,
    /// The tags, in order.
    pub tags: Vec<TagInfo>,
}

impl Batch {
    /// Offset of the first video keyframe, if the batch holds one.
    pub fn keyframe_offset(&self) -> Option<usize> {
        self.tags
            .iter()
            .find(|t| t.kind == TagKind::Keyframe)
            .map(|t| t.offset)
    }

    /// The configuration and metadata tags, each as its own shared slice.
    pub fn config_tags(&self) -> impl Iterator<Item = (TagKind, Bytes)> + '_ {
        self.tags
            .iter()
            .filter(|t| t.kind.is_config())
            .map(|t| (t.kind, self.bytes.slice(t.offset..t.offset + t.len)))
    }

    /// The batch from `offset` (a tag boundary) on.
    pub fn from_offset(&self, offset: usize) -> Batch {
        Batch {
            bytes: self.bytes.slice(offset..),
            tags: self
                .tags
                .iter()
                .filter(|t| t.offset >= offset)
                .map(|t| TagInfo {
                    offset: t.offset - offset,
                    ..*t
                })
                .collect(),
        }
    }
}

/// Why a body is not FLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlvError {
    /// The body does not start with an FLV header.
    #[error("not an FLV stream")]
    NotFlv,
    /// A tag of an unknown type or of an absurd size.
    #[error("malformed FLV tag")]
    BadTag,
}

/// Splits an FLV byte stream into its header and batches of tags, whatever the chunk
/// boundaries.
#[derive(Debug)]
pub struct Demuxer {
    buf: BytesMut,
    header_seen: bool,
    max_tag_bytes: usize,
}

/// What [`Demuxer::next_item`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// The 13-byte file header (once, first).
    Header(Bytes),
    /// The complete tags received so far.
    Batch(Batch),
}

impl Demuxer {
    /// A demuxer that refuses tags larger than `max_tag_bytes`.
    pub fn new(max_tag_bytes: usize) -> Demuxer {
        Demuxer {
            buf: BytesMut::new(),
            header_seen: false,
            max_tag_bytes,
        }
    }

    /// Adds body bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes received but not yet part of a complete item.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete item, if the bytes so far hold one: the header first, then every
    /// complete tag in one batch.
    pub fn next_item(&mut self) -> Result<Option<Item>, FlvError> {
        if !self.header_seen {
            return self.header().map(|h| h.map(Item::Header));
        }
        let mut tags = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= TAG_HEADER_LEN {
            let head = &self.buf[at..];
            let tag_type = head[0] & 0x1f;
            let data_len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
            let len = TAG_HEADER_LEN + data_len + 4;
            if !matches!(tag_type, 8 | 9 | 18) || len > self.max_tag_bytes {
                return Err(FlvError::BadTag);
            }
            if head.len() < len {
                break;
            }
            let timestamp_ms = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
            let kind = classify(tag_type, &head[TAG_HEADER_LEN..TAG_HEADER_LEN + data_len]);
            // Keep the framing exact: PreviousTagSize is the tag's size without itself.
            let previous = (TAG_HEADER_LEN + data_len) as u32;
            self.buf[at + len - 4..at + len].copy_from_slice(&previous.to_be_bytes());
            tags.push(TagInfo {
                offset: at,
                len,
                kind,
                timestamp_ms,
            });
            at += len;
        }
        if tags.is_empty() {
            return Ok(None);
        }
        Ok(Some(Item::Batch(Batch {
            bytes: self.buf.split_to(at).freeze(),
            tags,
        })))
    }

    fn header(&mut self) -> Result<Option<Bytes>, FlvError> {
        let seen = &self.buf[..self.buf.len().min(3)];
        if !b"FLV".starts_with(seen) {
            return Err(FlvError::NotFlv);
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header_size = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
        if header_size != 9 {
            return Err(FlvError::NotFlv);
        }
        self.header_seen = true;
        Ok(Some(self.buf.split_to(HEADER_LEN).freeze()))
    }
}

fn classify(tag_type: u8, data: &[u8]) -> TagKind {
    match tag_type {
        18 => TagKind::Script,
        8 => {
            // AAC (sound format 10): packet type 0 is the AudioSpecificConfig.
            let aac = data.first().is_some_and(|b| b >> 4 == 10);
            if aac && data.get(1) == Some(&0) {
                TagKind::AudioConfig
            } else {
                TagKind::Audio
            }
        }
        _ => {
            let Some(&first) = data.first() else {
                return TagKind::Video;
            };
            let (frame_type, config) = if first & 0x80 != 0 {
                // Enhanced RTMP: frame type in bits 4-6, packet type in the low nibble
                // (0 = SequenceStart).
                ((first >> 4) & 0x07, first & 0x0f == 0)
            } else {
                // Classic: AVC (7) and the common HEVC extension (12) carry a packet type
                // byte, 0 being the sequence header.
                let codec = first & 0x0f;
                (
                    first >> 4,
                    matches!(codec, 7 | 12) && data.get(1) == Some(&0),
                )
            };
            if config {
                TagKind::VideoConfig
            } else if frame_type == 1 {
                TagKind::Keyframe
            } else {
                TagKind::Video
            }
        }
    }
}

/// Builds one tag's bytes (for tests and tools): type, timestamp and data.
pub fn encode_tag(tag_type: u8, timestamp_ms: u32, data: &[u8]) -> Vec<u8> {
    let len = data.len() as u32;
    let ts = timestamp_ms.to_be_bytes();
    let mut out = vec![
        tag_type,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        ts[1],
        ts[2],
        ts[3],
        ts[0],
        0,
        0,
        0,
    ];
    out.extend_from_slice(data);
    out.extend_from_slice(&(TAG_HEADER_LEN as u32 + len).to_be_bytes());
    out
}

/// The FLV file header with audio and video (for tests and tools).
pub const FILE_HEADER: [u8; HEADER_LEN] = [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0];

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut out = FILE_HEADER.to_vec();
        out.extend(encode_tag(18, 0, b"\x02\x00\x0aonMetaData"));
        out.extend(encode_tag(9, 0, &[0x17, 0x00, 0, 0, 0, 1, 2]));
        out.extend(encode_tag(8, 0, &[0xaf, 0x00, 0x12, 0x10]));
        out.extend(encode_tag(9, 0, &[0x17, 0x01, 0, 0, 0, 9, 9, 9]));
        out.extend(encode_tag(8, 23, &[0xaf, 0x01, 7, 7]));
        out.extend(encode_tag(9, 40, &[0x27, 0x01, 0, 0, 0, 8]));
        // Enhanced RTMP HEVC: keyframe with CodedFrames, and a SequenceStart.
        out.extend(encode_tag(9, 80, &[0x90, b'h', b'v', b'c', b'1']));
        out.extend(encode_tag(9, 80, &[0x91, b'h', b'v', b'c', b'1', 5]));
        out.extend(encode_tag(9, 0x0100_0000 + 5, &[0x27, 0x01]));
        out
    }

    fn demux(input: &[u8], split: usize) -> (Vec<u8>, Vec<(TagKind, u32)>) {
        let mut demuxer = Demuxer::new(1 << 20);
        let mut out = Vec::new();
        let mut found = Vec::new();
        for piece in input.chunks(split) {
            demuxer.push(piece);
            while let Some(item) = demuxer.next_item().unwrap() {
                match item {
                    Item::Header(h) => {
                        assert!(out.is_empty(), "the header comes first");
                        assert_eq!(&h[..], &FILE_HEADER[..]);
                        out.extend_from_slice(&h);
                    }
                    Item::Batch(batch) => {
                        let mut at = 0;
                        for tag in &batch.tags {
                            assert_eq!(tag.offset, at);
                            at += tag.len;
                            found.push((tag.kind, tag.timestamp_ms));
                        }
                        assert_eq!(at, batch.bytes.len());
                        out.extend_from_slice(&batch.bytes);
                    }
                }
            }
        }
        assert_eq!(demuxer.pending(), 0);
        (out, found)
    }

    fn kinds(input: &[u8], split: usize) -> Vec<(TagKind, u32)> {
        demux(input, split).1
    }

    #[test]
    fn tags_are_found_and_classified_whatever_the_chunking() {
        let expected = vec![
            (TagKind::Script, 0),
            (TagKind::VideoConfig, 0),
            (TagKind::AudioConfig, 0),
            (TagKind::Keyframe, 0),
            (TagKind::Audio, 23),
            (TagKind::Video, 40),
            (TagKind::VideoConfig, 80),
            (TagKind::Keyframe, 80),
            (TagKind::Video, 0x0100_0005),
        ];
        let input = stream();
        for split in [1, 2, 7, 13, 64, input.len()] {
            assert_eq!(kinds(&input, split), expected, "split {split}");
        }
    }

    #[test]
    fn tags_keep_their_bytes_and_batches_split_at_keyframes() {
        let input = stream();
        assert_eq!(demux(&input, 5).0, input);
        let mut demuxer = Demuxer::new(1 << 20);
        demuxer.push(&input);
        assert!(matches!(demuxer.next_item(), Ok(Some(Item::Header(_)))));
        let Ok(Some(Item::Batch(batch))) = demuxer.next_item() else {
            panic!("one batch");
        };
        assert_eq!(batch.tags.len(), 9);
        let configs: Vec<TagKind> = batch.config_tags().map(|(kind, _)| kind).collect();
        assert_eq!(
            configs,
            [
                TagKind::Script,
                TagKind::VideoConfig,
                TagKind::AudioConfig,
                TagKind::VideoConfig
            ]
        );
        let at = batch.keyframe_offset().unwrap();
        let tail = batch.from_offset(at);
        assert_eq!(tail.tags[0].kind, TagKind::Keyframe);
        assert_eq!(tail.tags[0].offset, 0);
        assert_eq!(&tail.bytes[..], &batch.bytes[at..]);
    }

    #[test]
    fn garbage_is_refused() {
        let mut demuxer = Demuxer::new(1 << 20);
        demuxer.push(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(demuxer.next_item(), Err(FlvError::NotFlv));
        let mut demuxer = Demuxer::new(64);
        demuxer.push(&FILE_HEADER);
        demuxer.push(&encode_tag(9, 0, &[0u8; 100]));
        assert!(matches!(demuxer.next_item(), Ok(Some(Item::Header(_)))));
        assert_eq!(demuxer.next_item(), Err(FlvError::BadTag));
        let mut demuxer = Demuxer::new(1 << 20);
        demuxer.push(&FILE_HEADER);
        demuxer.push(&encode_tag(7, 0, b"x"));
        demuxer.next_item().unwrap();
        assert_eq!(demuxer.next_item(), Err(FlvError::BadTag));
    }
}
