//! How much of an answer is read. A backend (or whatever its URL points at) decides how long
//! its answers are; read whole, an endless body once drove the operator to 6.4 GiB. So every
//! body is read chunk by chunk up to a cap, and the connection is dropped at the cap.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

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

/// Largest answer of an object store that is not a report's file (a bucket listing, the
/// answers of a multipart upload): a page of 1,000 keys is a few hundred KiB. The operator
/// never reads a report's file through object_store (downloads go through the backend's
/// URL or a presigned one), so every successful answer object_store reads is one of these.
pub const MAX_STORE_ANSWER_BYTES: usize = 1024 * 1024;

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

/// A streamed body read through a cap, for a reader that collects the body itself
/// (object_store): frames pass as they arrive until more than `limit` bytes came; then the
/// inner body, and with it the connection, is dropped and the body ends with `over(limit)`.
pub(crate) struct CappedBody<B: Body> {
    inner: Option<B>,
    left: usize,
    limit: usize,
    over: fn(usize) -> B::Error,
}

impl<B: Body> CappedBody<B> {
    pub fn new(inner: B, limit: usize, over: fn(usize) -> B::Error) -> Self {
        CappedBody {
            inner: Some(inner),
            left: limit,
            limit,
            over,
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for CappedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n > this.left {
                this.inner = None;
                return Poll::Ready(Some(Err((this.over)(this.limit))));
            }
            this.left -= n;
        }
        if frame.is_none() {
            this.inner = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
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

    /// A body of `chunks`, then endless chunks of `endless` bytes if that is not 0; counts
    /// the frames it was asked for.
    struct Chunks {
        chunks: std::vec::IntoIter<&'static [u8]>,
        endless: usize,
        polled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Body for Chunks {
        type Data = Bytes;
        type Error = String;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, String>>> {
            self.polled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let next = match self.chunks.next() {
                Some(c) => Some(Bytes::from_static(c)),
                None if self.endless > 0 => Some(Bytes::from(vec![b'x'; self.endless])),
                None => None,
            };
            Poll::Ready(next.map(|b| Ok(Frame::data(b))))
        }
    }

    /// Reads `body` through a cap of `limit`: the bytes that passed, how it ended, and how many
    /// frames were asked of the inner body.
    fn through_cap(
        chunks: Vec<&'static [u8]>,
        endless: usize,
        limit: usize,
    ) -> (usize, Option<String>, usize) {
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inner = Chunks {
            chunks: chunks.into_iter(),
            endless,
            polled: polled.clone(),
        };
        let mut body = CappedBody::new(inner, limit, |limit| format!("over {limit}"));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (mut passed, mut ended) = (0, None);
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => passed += frame.data_ref().map_or(0, Bytes::len),
                Poll::Ready(Some(Err(e))) => ended = Some(e),
                Poll::Ready(None) => break,
                Poll::Pending => unreachable!("the test body is always ready"),
            }
        }
        assert!(body.is_end_stream());
        (passed, ended, polled.load(std::sync::atomic::Ordering::Relaxed))
    }

    #[test]
    fn a_capped_stream_passes_what_fits_and_then_stops_reading() {
        assert_eq!(through_cap(vec![b"ab", b"cd"], 0, 4), (4, None, 3));
        // One byte over: an error, and the inner body is never asked again.
        assert_eq!(
            through_cap(vec![b"ab", b"cde", b"fg"], 0, 4),
            (2, Some("over 4".into()), 2)
        );
        let (passed, ended, polled) = through_cap(vec![], 8192, MAX_STORE_ANSWER_BYTES);
        assert_eq!(passed, MAX_STORE_ANSWER_BYTES);
        assert_eq!(ended.as_deref(), Some("over 1048576"));
        assert_eq!(polled, MAX_STORE_ANSWER_BYTES / 8192 + 1);
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
