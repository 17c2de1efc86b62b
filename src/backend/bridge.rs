//! A streamed body read by a parser that only knows blocking `Read` (the zip crate, struson)
//! on a blocking thread, and what that parser makes sent back as a stream. A file of any size
//! costs a few chunks of memory.
//!
//! The reading half is tokio-util's: [`StreamReader`] makes the body an `AsyncRead` and
//! [`SyncIoBridge`] a blocking `Read` that waits for each chunk on the runtime. The sending
//! half, [`produce`], stays here: tokio-util has nothing that turns a blocking producer into a
//! `Stream`, and its byte pipes (`SyncIoBridge` over a `DuplexStream`) would carry neither the
//! typed items the ZIP unpacker sends (an entry's start, data, end) nor the error that ends a
//! FUSION file.

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

/// Items in flight from the blocking thread back to the stream.
const CHANNEL_ITEMS: usize = 16;

/// A streamed body as a blocking `Read`: read it on a blocking thread only (each read waits
/// on the runtime); dropping it drops the body.
pub(crate) type BodyReader = SyncIoBridge<StreamReader<BoxStream<'static, std::io::Result<Bytes>>, Bytes>>;

/// `body` as a [`BodyReader`]; an error of the body is the error of the read that meets it
/// (with the error's text). Call from within a tokio runtime.
pub(crate) fn reader<S, E>(body: S) -> BodyReader
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::fmt::Display,
{
    let body = body.map(|chunk| chunk.map_err(|e| std::io::Error::other(e.to_string())));
    SyncIoBridge::new(StreamReader::new(body.boxed()))
}

/// Runs `work` on a blocking thread with a sender of what it makes, and returns that as a
/// stream. `work` stops when a send fails (the stream was dropped).
pub(crate) fn produce<T, F>(work: F) -> BoxStream<'static, T>
where
    T: Send + 'static,
    F: FnOnce(mpsc::Sender<T>) + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_ITEMS);
    tokio::task::spawn_blocking(move || work(tx));
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// What a reader of `chunks` reads, on a blocking thread, with reads of `read` bytes.
    async fn read_all(chunks: Vec<Result<Bytes, String>>, read: usize) -> Result<Vec<u8>, String> {
        let mut reader = reader(futures::stream::iter(chunks));
        let thread = tokio::task::spawn_blocking(move || {
            let (mut all, mut buf) = (Vec::new(), vec![0u8; read]);
            loop {
                match reader.read(&mut buf).map_err(|e| e.to_string())? {
                    0 => return Ok(all),
                    n => all.extend_from_slice(&buf[..n]),
                }
            }
        });
        thread.await.expect("joined")
    }

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
    async fn chunks_of_any_size_read_with_reads_of_any_size() {
        let body: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        for chunk in [1, 7, 4096, 20_000] {
            // An empty chunk between any two is no end of the body.
            let chunks: Vec<_> = body
                .chunks(chunk)
                .flat_map(|c| [Ok(Bytes::copy_from_slice(c)), Ok(Bytes::new())])
                .collect();
            for read in [1, 3, 65_536] {
                assert_eq!(
                    read_all(chunks.clone(), read).await.expect("read"),
                    body,
                    "chunks of {chunk}, reads of {read}"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_of_the_body_reaches_the_reader() {
        let chunks = vec![Ok(Bytes::from("ab")), Err("connection lost".to_string())];
        assert_eq!(read_all(chunks, 1).await, Err("connection lost".to_string()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_stream_stops_the_producer() {
        let (sent_tx, sent_rx) = std::sync::mpsc::channel();
        let mut stream = produce(move |tx| {
            let mut sent = 0u32;
            while tx.blocking_send(sent).is_ok() {
                sent += 1;
            }
            let _ = sent_tx.send(sent);
        });
        assert_eq!(stream.next().await, Some(0));
        drop(stream);
        let sent = tokio::task::spawn_blocking(move || sent_rx.recv())
            .await
            .expect("joined")
            .expect("the producer ended");
        assert!(
            sent <= CHANNEL_ITEMS as u32 + 1,
            "{sent} sent: no more than the channel holds"
        );
    }
}
