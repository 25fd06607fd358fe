//! Streaming verification of an archive-mode content object (`.filez`): the header first,
//! then the raw-deflate payload inflated into the content checksum, never more than the
//! header announced.

use std::io::Write;
use trellis_store::Checksum;
use trellis_store::format::{ContentHasher, FileHeader};

/// Largest `.filez` header accepted (it holds xattrs, which are small in practice).
const MAX_HEADER: usize = 16 * 1024 * 1024;

/// Counts the inflated payload into its checksum, refusing more than the header says.
struct PayloadSink {
    hasher: ContentHasher,
    n: u64,
    limit: u64,
}

impl Write for PayloadSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.n += buf.len() as u64;
        if self.n > self.limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "payload is longer than the {} bytes its header says",
                    self.limit
                ),
            ));
        }
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Body {
    header: FileHeader,
    size: u64,
    offset: usize,
    /// Until the first compressed byte: symlinks (and, from some writers, empty files) have
    /// no deflate stream at all.
    sink: Option<PayloadSink>,
    inflater: Option<flate2::write::DeflateDecoder<PayloadSink>>,
}

/// What a verified `.filez` holds.
pub(super) struct Verified {
    pub checksum: Checksum,
    pub header: FileHeader,
    /// Payload size in bytes (0 for symlinks).
    pub size: u64,
    /// Where the compressed payload begins in the object.
    pub offset: usize,
}

pub(super) struct FilezCheck {
    prefix: Vec<u8>,
    body: Option<Body>,
}

impl FilezCheck {
    pub fn new() -> FilezCheck {
        FilezCheck {
            prefix: Vec::new(),
            body: None,
        }
    }

    /// Feed the object's next bytes.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), String> {
        while self.body.is_none() && !data.is_empty() {
            let want = if self.prefix.len() < 8 {
                8
            } else {
                let len = u32::from_be_bytes([
                    self.prefix[0],
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                ]) as usize;
                if len > MAX_HEADER {
                    return Err(format!("header length {len} is implausible"));
                }
                8 + len
            };
            let take = (want - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
            data = &data[take..];
            if want > 8 && self.prefix.len() == want {
                let (header, size, offset) = FileHeader::parse_archive_prefix(&self.prefix)
                    .map_err(|e| format!("bad header: {e}"))?;
                let limit = if header.is_symlink() { 0 } else { size };
                let sink = PayloadSink {
                    hasher: ContentHasher::new(&header),
                    n: 0,
                    limit,
                };
                self.body = Some(Body {
                    header,
                    size,
                    offset,
                    sink: Some(sink),
                    inflater: None,
                });
            }
        }
        let Some(body) = &mut self.body else {
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        if body.inflater.is_none() {
            let sink = body.sink.take().ok_or("payload already finished")?;
            body.inflater = Some(flate2::write::DeflateDecoder::new(sink));
        }
        if let Some(dec) = &mut body.inflater {
            dec.write_all(data)
                .map_err(|e| format!("bad compressed payload: {e}"))?;
        }
        Ok(())
    }

    pub fn finish(self) -> Result<Verified, String> {
        let body = self
            .body
            .ok_or_else(|| "truncated before the end of its header".to_string())?;
        let sink = match (body.inflater, body.sink) {
            (Some(dec), _) => dec
                .finish()
                .map_err(|e| format!("bad compressed payload: {e}"))?,
            (None, Some(sink)) => sink,
            (None, None) => return Err("payload already finished".into()),
        };
        let expected = if body.header.is_symlink() {
            0
        } else {
            body.size
        };
        if sink.n != expected {
            return Err(format!(
                "payload is {} bytes, its header says {expected}",
                sink.n
            ));
        }
        Ok(Verified {
            checksum: sink.hasher.finish(),
            header: body.header,
            size: expected,
            offset: body.offset,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::DeflateEncoder;
    use trellis_store::format::content_checksum;

    fn filez(header: &FileHeader, payload: &[u8]) -> Vec<u8> {
        let mut data = header.archive_prefix(payload.len() as u64);
        let mut enc = DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(payload).unwrap();
        data.extend(enc.finish().unwrap());
        data
    }

    fn check(data: &[u8], chunk: usize) -> Result<Verified, String> {
        let mut c = FilezCheck::new();
        for part in data.chunks(chunk) {
            c.feed(part)?;
        }
        c.finish()
    }

    #[test]
    fn streams_in_any_chunking() {
        let header = FileHeader::regular(0, 0, 0o644, vec![]);
        let payload = b"hello\n".repeat(1000);
        let data = filez(&header, &payload);
        let want = content_checksum(&header, &payload);
        for chunk in [1, 3, 7, 64, data.len()] {
            let v = check(&data, chunk).unwrap();
            assert_eq!(v.checksum, want, "chunk {chunk}");
            assert_eq!(v.size, payload.len() as u64);
            assert_eq!(v.offset, header.archive_prefix(0).len());
        }
    }

    #[test]
    fn symlinks_have_no_stream() {
        let link = FileHeader::symlink(0, 0, "target".into(), vec![]);
        let data = link.archive_prefix(0);
        let v = check(&data, 5).unwrap();
        assert_eq!(v.checksum, content_checksum(&link, b""));
        // A symlink that smuggles a payload is refused.
        let mut with_payload = filez(&link, b"x");
        with_payload[..data.len()].copy_from_slice(&data);
        assert!(check(&with_payload, 4096).is_err());
    }

    #[test]
    fn refuses_lies_and_truncation() {
        let header = FileHeader::regular(0, 0, 0o644, vec![]);
        let payload = b"hello\n".repeat(1000);
        let data = filez(&header, &payload);
        assert!(check(&data[..data.len() - 4], 4096).is_err());
        assert!(check(&data[..10], 4096).is_err());
        assert!(check(b"", 1).is_err());
        // The header says 5 bytes; the stream inflates to 6000.
        let mut lying = header.archive_prefix(5);
        lying.extend_from_slice(&data[header.archive_prefix(0).len()..]);
        assert!(check(&lying, 4096).is_err());
        // Garbage instead of deflate data.
        let mut garbage = header.archive_prefix(6);
        garbage.extend_from_slice(&[0xff; 32]);
        assert!(check(&garbage, 4096).is_err());
        // An absurd header length.
        assert!(check(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1], 4096).is_err());
    }
}
