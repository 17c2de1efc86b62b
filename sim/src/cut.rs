//! The `cut` fault's answer: the status, the headers (with the full `Content-Length`) and the
//! first half of the body go out, then the connection breaks, as a download that dies midway.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use http_body::Frame;

use super::http::dropped;

/// How long the half body is given to leave before the connection breaks: hyper writes out
/// what it has while the body is pending.
const FLUSH: Duration = Duration::from_millis(50);

/// `answer` cut off after half its body (an answer without a body cannot be cut: it is
/// dropped whole, as a lost answer).
pub(crate) async fn half(answer: Response) -> Response {
    let (mut parts, body) = answer.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return dropped();
    };
    if bytes.len() < 2 {
        return dropped();
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let first = bytes.slice(..bytes.len() / 2);
    Response::from_parts(
        parts,
        Body::new(CutShort {
            first: Some(first),
            pause: Box::pin(tokio::time::sleep(FLUSH)),
        }),
    )
}

/// A body that yields one chunk, waits [`FLUSH`], then fails.
struct CutShort {
    first: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for CutShort {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(first) = self.first.take() {
            self.pause.as_mut().reset(tokio::time::Instant::now() + FLUSH);
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        match self.pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "download cut off (simulated fault)",
            )))),
        }
    }
}
