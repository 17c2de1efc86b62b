//! A streamed body read by a parser that only knows blocking `Read` (the zip crate, struson),
//! on a thread of its own, and what that parser makes sent back as a stream. Both directions
//! go through bounded channels, so a file of any size costs a few chunks of memory.

use std::io::Read;

use bytes::{Buf, Bytes};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Chunks in flight in each direction.
pub(crate) const CHANNEL_CHUNKS: usize = 16;

/// The body as a blocking `Read`; dropping it stops the task that feeds it.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    buf: Bytes,
    feeder: JoinHandle<()>,
}

impl Drop for ChannelReader {
    fn drop(&mut self) {
        self.feeder.abort();
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.buf = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(n)
    }
}

/// `body` as a [`ChannelReader`], fed by a task; an error of the body ends it (the reader
/// returns the error's text). Call from within a tokio runtime, read on a blocking thread.
pub(crate) fn reader<S, E>(body: S) -> ChannelReader
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display + Send,
{
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let feeder = tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let failed = chunk.is_err();
            if tx.send(chunk.map_err(|e| e.to_string())).await.is_err() || failed {
                return;
            }
        }
    });
    ChannelReader {
        rx,
        buf: Bytes::new(),
        feeder,
    }
}

/// Runs `work` on a blocking thread with a sender of what it makes, and returns that as a
/// stream. `work` stops when a send fails (the stream was dropped).
pub(crate) fn produce<T, F>(work: F) -> BoxStream<'static, T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || work(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_read_on_a_thread_and_sent_back() {
        let body = futures::stream::iter(["ab", "", "cde"].map(|s| Ok::<_, String>(Bytes::from(s))));
        let reader = reader(body);
        let out: Vec<Bytes> = produce(move |tx| {
            let mut reader = reader;
            let mut all = String::new();
            let _ = reader.read_to_string(&mut all);
            let _ = tx.blocking_send(Bytes::from(all.to_uppercase()));
        })
        .collect()
        .await;
        assert_eq!(out, vec![Bytes::from("ABCDE")]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_of_the_body_reaches_the_reader() {
        let body = futures::stream::iter([Ok(Bytes::from("ab")), Err("connection lost".to_string())]);
        let mut reader = reader(body);
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).map_err(|e| e.to_string())
        });
        assert_eq!(read.await.expect("joined"), Err("connection lost".to_string()));
    }
}
