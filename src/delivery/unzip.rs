//! CONNECT's ZIP unpacked on its way into the store (`connectArchive: Extract`): each file
//! of the archive becomes an object under the report's key without `.zip`.
//!
//! Streamed like any copy: the download's chunks feed the `zip` crate's streaming reader
//! (local file headers, no central directory, so no seeking) on a blocking thread through a
//! bounded channel, and each entry's decompressed bytes come back through another into its
//! own multipart upload. Memory stays bounded; an archive whose entries give their sizes only
//! after the data (a streamed ZIP) is refused as InvalidArchive rather than guessed at.

use std::io::Read;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::backend::bridge::{self, BodyReader};

use super::store::{Store, StoreError, Uploaded};

/// Bytes read from an entry at a time.
const READ_BYTES: usize = 64 * 1024;
/// Most entries taken from one archive: as many as a ReportFile's status records, so that
/// retention Delete knows every object a copy wrote.
const MAX_ENTRIES: usize = crate::api::MAX_DELIVERED_OBJECTS;

/// One archive entry, copied: its object key and bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    pub key: String,
    pub uploaded: Uploaded,
}

/// What the unpacking thread reports.
enum Piece {
    Start(String),
    Data(Bytes),
    End,
}

/// The last path component of an entry name, made safe for a key; `None` for directories and
/// names with nothing left.
fn entry_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next()?;
    let safe = super::key::safe(last);
    (!safe.is_empty() && safe != "." && safe != "..").then_some(safe)
}

/// Reads the archive from `reader`, sending each file's name, bytes and end.
fn unpack(mut reader: BodyReader, tx: mpsc::Sender<Result<Piece, String>>) {
    let send = |piece| tx.blocking_send(piece).is_ok();
    let mut entries = 0;
    loop {
        let mut file = match zip::read::read_zipfile_from_stream(&mut reader) {
            Ok(Some(file)) => file,
            Ok(None) => return,
            Err(e) => {
                send(Err(format!("the ZIP cannot be read as a stream: {e}")));
                return;
            }
        };
        let Some(name) = entry_name(file.name()).filter(|_| !file.is_dir()) else {
            continue;
        };
        entries += 1;
        if entries > MAX_ENTRIES {
            send(Err(format!("the ZIP has more than {MAX_ENTRIES} files")));
            return;
        }
        if !send(Ok(Piece::Start(name))) {
            return;
        }
        let mut buf = vec![0u8; READ_BYTES];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !send(Ok(Piece::Data(Bytes::copy_from_slice(&buf[..n])))) {
                        return;
                    }
                }
                Err(e) => {
                    send(Err(format!("unpacking {}: {e}", file.name())));
                    return;
                }
            }
        }
        if !send(Ok(Piece::End)) {
            return;
        }
    }
}

/// Copies each file of the ZIP `body` to `{stem}/{file name}` and returns them in archive
/// order.
pub async fn extract<S>(store: &Store, stem: &str, body: S) -> Result<Vec<Extracted>, StoreError>
where
    S: Stream<Item = Result<Bytes, StoreError>> + Send + 'static,
{
    let reader = bridge::reader(body);
    let mut pieces = bridge::produce(move |tx| unpack(reader, tx));
    upload_pieces(store, stem, &mut pieces).await
}

async fn upload_pieces(
    store: &Store,
    stem: &str,
    pieces: &mut BoxStream<'static, Result<Piece, String>>,
) -> Result<Vec<Extracted>, StoreError> {
    let mut done = Vec::new();
    let mut current = None;
    while let Some(piece) = pieces.next().await {
        let step = match piece {
            Err(message) => Err(StoreError::InvalidArchive(message)),
            Ok(Piece::Start(name)) => {
                let key = format!("{stem}/{name}");
                store
                    .begin(&key)
                    .await
                    .map(|upload| current = Some((key, upload)))
            }
            Ok(Piece::Data(chunk)) => match current.as_mut() {
                Some((_, upload)) => upload.push(chunk).await,
                None => Err(StoreError::InvalidArchive("data outside a file".into())),
            },
            Ok(Piece::End) => match current.take() {
                Some((key, upload)) => upload
                    .finish()
                    .await
                    .map(|uploaded| done.push(Extracted { key, uploaded })),
                None => Err(StoreError::InvalidArchive(
                    "a file ended that did not start".into(),
                )),
            },
        };
        if let Err(e) = step {
            if let Some((_, upload)) = current.take() {
                upload.abort().await;
            }
            return Err(e);
        }
    }
    if done.is_empty() {
        return Err(StoreError::InvalidArchive("the ZIP holds no file".into()));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_one_safe_component() {
        assert_eq!(entry_name("report.json").as_deref(), Some("report.json"));
        assert_eq!(
            entry_name("dir/sub/report v1.csv").as_deref(),
            Some("report-v1.csv")
        );
        assert_eq!(entry_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(entry_name("dir/"), None);
        assert_eq!(entry_name("a/.."), None);
    }
}
