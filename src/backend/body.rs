//! How much of an answer is read. A backend (or whatever its URL points at) decides how long
//! its answers are; read whole, an endless body once drove the operator to 6.4 GiB. So every
//! body is read chunk by chunk up to a cap, and the connection is dropped at the cap.

/// Largest API answer (JSON) read: the biggest documented answer, a page of 100 reports, is
/// a few hundred KiB, so 4 MiB leaves room without letting one answer exhaust the operator.
pub const MAX_JSON_BYTES: usize = 4 * 1024 * 1024;

/// Most of an error (or redirect) body read: only a ≤300-character excerpt of it is kept.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Largest file kept inline in a Secret (FUSION licenses and SDRs, a CONNECT ZIP answered
/// directly); Secrets are limited to 1 MiB in all, with the other keys.
pub const MAX_INLINE_BYTES: usize = 1_000_000;

/// Most of a FUSION license answer read: the file comes base64-encoded in JSON, so the cap
/// is the encoded size of [`MAX_INLINE_BYTES`] plus room for the envelope.
pub(crate) const MAX_INLINE_BASE64_ANSWER_BYTES: usize = MAX_INLINE_BYTES.div_ceil(3) * 4 + 64 * 1024;

/// A body read up to a cap: chunks are pushed until it says stop or the body ends.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Capped {
    /// At most the cap's bytes.
    pub bytes: Vec<u8>,
    /// The body had more than the cap; the rest was not read.
    pub cut: bool,
    limit: usize,
}

impl Capped {
    pub fn new(limit: usize) -> Self {
        Capped {
            bytes: Vec::new(),
            cut: false,
            limit,
        }
    }

    /// Keeps what fits of `chunk`; false once more than the cap came (stop reading then).
    pub fn push(&mut self, chunk: &[u8]) -> bool {
        let room = self.limit.saturating_sub(self.bytes.len());
        if chunk.len() > room {
            self.bytes.extend_from_slice(&chunk[..room]);
            self.cut = true;
            return false;
        }
        self.bytes.extend_from_slice(chunk);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `chunks` until told to stop; returns the result and how many were pushed.
    fn read(chunks: &[&[u8]], limit: usize) -> (Vec<u8>, bool, usize) {
        let mut body = Capped::new(limit);
        let mut pushed = 0;
        for chunk in chunks {
            pushed += 1;
            if !body.push(chunk) {
                break;
            }
        }
        (body.bytes, body.cut, pushed)
    }

    #[test]
    fn reads_up_to_the_cap_and_stops() {
        assert_eq!(read(&[b"ab", b"cd"], 4), (b"abcd".to_vec(), false, 2));
        assert_eq!(read(&[], 4), (Vec::new(), false, 0));
        // One byte over: cut, and no further chunk is read.
        assert_eq!(read(&[b"ab", b"cde", b"fg"], 4), (b"abcd".to_vec(), true, 2));
        assert_eq!(read(&[b"abcdef"], 0), (Vec::new(), true, 1));
    }

    #[test]
    fn an_endless_body_stays_within_the_cap() {
        let chunk = vec![b'x'; 8192];
        let mut body = Capped::new(MAX_JSON_BYTES);
        let mut pushed = 0usize;
        while body.push(&chunk) {
            pushed += 1;
            assert!(pushed <= MAX_JSON_BYTES / 8192, "pushing went on past the cap");
        }
        assert!(body.cut);
        assert_eq!(body.bytes.len(), MAX_JSON_BYTES);
    }
}
