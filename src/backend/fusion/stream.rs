//! FUSION files streamed into a ReportStore, whatever their size. Fusion's answer is the file
//! (a usage SDR as JSON, or a license export base64-encoded inside JSON), so only a reader
//! that never holds the whole answer can copy one over 1,000,000 bytes: struson reads the
//! JSON as it arrives, on a blocking thread ([`bridge`]), and the file's bytes come back as
//! chunks. No single value besides the file itself may exceed [`MAX_JSON_BYTES`], and a
//! truncated answer is an error, never a short file.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::StreamExt;
use struson::reader::{JsonReader, JsonStreamReader};
use tokio::sync::mpsc;

use super::csv;
use crate::backend::body::MAX_JSON_BYTES;
use crate::backend::bridge::{self, BodyReader};
use crate::backend::{BackendError, FileStream};

/// Bytes sent at a time.
const CHUNK_BYTES: usize = 64 * 1024;

/// What the answer is, and so how the file is made of it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// The answer is the file (an SDR asked for as JSON).
    Raw,
    /// An SDR asked for as CSV: the array `field` of the answer, as CSV with `columns` first.
    Csv {
        field: &'static str,
        columns: &'static [&'static str],
    },
    /// A license export: the base64 `fileBody` of the answer, decoded.
    License,
}

/// The file of Fusion's `response`, as a stream of its bytes.
pub(super) fn file(response: reqwest::Response, shape: Shape) -> FileStream {
    let body = response.bytes_stream().map(|chunk| {
        chunk.map_err(|e| BackendError::Transient {
            message: format!(
                "reading the file from Fusion: connection lost ({})",
                e.without_url()
            ),
            retry_after: None,
        })
    });
    if let Shape::Raw = shape {
        return body.boxed();
    }
    let reader = bridge::reader(body);
    bridge::produce(move |tx| make(reader, shape, tx))
}

/// Makes the file of `shape` from the answer in `reader` and sends it on `tx`, chunk by
/// chunk, then an error if the answer was not what Fusion documents.
fn make(reader: BodyReader, shape: Shape, tx: mpsc::Sender<Result<Bytes, BackendError>>) {
    let mut out = Out {
        tx,
        buf: Vec::with_capacity(CHUNK_BYTES),
    };
    let made = match shape {
        Shape::Csv { field, columns } => rows_as_csv(reader, field, columns, &mut out),
        Shape::License => license(reader, &mut out),
        Shape::Raw => copy(reader, &mut out),
    };
    if let Err(Made::Invalid(message)) = made.and_then(|()| out.flush()) {
        let _ = out.tx.blocking_send(Err(BackendError::protocol(format!(
            "the file Fusion sent: {message}"
        ))));
    }
}

/// The answer as it is.
fn copy(mut reader: impl Read, out: &mut Out) -> Result<(), Made> {
    let mut chunk = vec![0u8; CHUNK_BYTES];
    loop {
        match reader.read(&mut chunk)? {
            0 => return Ok(()),
            n => out.write(&chunk[..n])?,
        }
    }
}

/// Why making the file stopped.
enum Made {
    /// The answer is not what Fusion documents (or ended early).
    Invalid(String),
    /// The stream was dropped: nobody wants the rest.
    Stopped,
}

impl<E: std::fmt::Display> From<E> for Made {
    fn from(e: E) -> Self {
        Made::Invalid(e.to_string())
    }
}

/// The file's bytes on their way out, sent in chunks of [`CHUNK_BYTES`].
struct Out {
    tx: mpsc::Sender<Result<Bytes, BackendError>>,
    buf: Vec<u8>,
}

impl Out {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Made> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush()
        } else {
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), Made> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| Made::Stopped)
    }
}

/// A reader that refuses to read more than its budget, which the caller renews before each
/// value struson buffers (a name, a row), so that no one value grows without bound, and lifts
/// for what struson reads without keeping (skipped values, whitespace, the file itself).
struct Metered {
    inner: BodyReader,
    left: Rc<Cell<usize>>,
}

impl Read for Metered {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left.get();
        if left == 0 {
            return Err(std::io::Error::other(format!(
                "a value of the answer is larger than {MAX_JSON_BYTES} bytes"
            )));
        }
        let room = out.len().min(left);
        let n = self.inner.read(&mut out[..room])?;
        self.left.set(left - n);
        Ok(n)
    }
}

/// A JSON reader over `reader` and the budget of its next value.
fn json(reader: BodyReader) -> (JsonStreamReader<Metered>, Rc<Cell<usize>>) {
    let left = Rc::new(Cell::new(MAX_JSON_BYTES));
    (
        JsonStreamReader::new(Metered {
            inner: reader,
            left: left.clone(),
        }),
        left,
    )
}

/// Reads the rest of the top-level object and checks that nothing but whitespace follows.
fn finish(mut json: JsonStreamReader<Metered>, budget: &Cell<usize>) -> Result<(), Made> {
    budget.set(usize::MAX);
    while json.has_next()? {
        json.skip_name()?;
        json.skip_value()?;
    }
    json.end_object()?;
    json.consume_trailing_whitespace()?;
    Ok(())
}

/// The array `field` of the answer as CSV. The header is the documented columns and the
/// first row's other fields; a later row with yet another field cannot be written into a
/// header already sent, so it is an error that says to ask for JSON.
fn rows_as_csv(reader: BodyReader, field: &str, documented: &[&str], out: &mut Out) -> Result<(), Made> {
    let (mut json, budget) = json(reader);
    json.begin_object()?;
    loop {
        if !json.has_next()? {
            return Err(Made::Invalid(format!("the answer has no {field} array")));
        }
        budget.set(MAX_JSON_BYTES);
        if json.next_name()? == field {
            break;
        }
        budget.set(usize::MAX);
        json.skip_value()?;
    }
    json.begin_array()?;
    let mut columns = None;
    let mut row_number = 0usize;
    while json.has_next()? {
        budget.set(MAX_JSON_BYTES);
        let row: serde_json::Value = json.deserialize_next()?;
        row_number += 1;
        let columns = match &columns {
            Some(c) => c,
            None => {
                let c = csv::columns(std::slice::from_ref(&row), documented);
                out.write(csv::header(&c).as_bytes())?;
                columns.insert(c)
            }
        };
        if let Some(unknown) = csv::unknown_field(&row, columns) {
            return Err(Made::Invalid(format!(
                "row {row_number} of {field} has the field {unknown:?}, which the first row has not; a CSV streamed into a store takes its columns from the first row: ask for format JSON to keep every field"
            )));
        }
        out.write(csv::line(&row, columns).as_bytes())?;
    }
    if columns.is_none() {
        out.write(csv::header(&csv::columns(&[], documented)).as_bytes())?;
    }
    json.end_array()?;
    finish(json, &budget)
}

/// The `fileBody` of a license export, decoded from base64 as it is read.
fn license(reader: BodyReader, out: &mut Out) -> Result<(), Made> {
    let (mut json, budget) = json(reader);
    json.begin_object()?;
    let mut found = false;
    while json.has_next()? {
        budget.set(MAX_JSON_BYTES);
        let body = json.next_name()? == "fileBody" && !found;
        budget.set(usize::MAX);
        if !body {
            json.skip_value()?;
            continue;
        }
        found = true;
        // The file itself: as large as it is, read a chunk at a time.
        let text = json.next_string_reader()?;
        let decoded = base64::read::DecoderReader::new(NoWhitespace(text), &STANDARD);
        copy(decoded, out).map_err(|e| match e {
            Made::Invalid(m) => Made::Invalid(format!("fileBody is not base64: {m}")),
            stopped => stopped,
        })?;
    }
    if !found {
        return Err(Made::Invalid("the answer has no fileBody".into()));
    }
    finish(json, &budget)
}

/// Base64 text without the whitespace (line breaks) an encoder may put into it.
struct NoWhitespace<R>(R);

impl<R: Read> Read for NoWhitespace<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.0.read(out)?;
            if n == 0 {
                return Ok(0);
            }
            let mut kept = 0;
            for i in 0..n {
                if !out[i].is_ascii_whitespace() {
                    out[kept] = out[i];
                    kept += 1;
                }
            }
            if kept > 0 {
                return Ok(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    /// The file made of `answer` sent in chunks of `chunk` bytes.
    async fn made(answer: &str, chunk: usize, shape: Shape) -> Result<Vec<u8>, String> {
        let chunks: Vec<Result<Bytes, BackendError>> = answer
            .as_bytes()
            .chunks(chunk)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let reader = bridge::reader(futures::stream::iter(chunks));
        let mut stream = bridge::produce(move |tx| make(reader, shape, tx));
        let mut file = Vec::new();
        while let Some(chunk) = stream.next().await {
            file.extend_from_slice(&chunk.map_err(|e| e.to_string())?);
        }
        Ok(file)
    }

    const USAGE: Shape = Shape::Csv {
        field: "productUsages",
        columns: &["group", "sku"],
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sdr_rows_become_the_same_csv_as_inline() {
        let answer = r#"{"total": 2, "productUsages": [{"group": "N", "sku": "S", "zone": "eu"}, {"sku": "T, 2"}], "x": {"y": [1]}}"#;
        let rows: serde_json::Value = serde_json::from_str(answer).expect("json");
        let inline = csv::to_csv(rows["productUsages"].as_array().expect("rows"), &["group", "sku"]);
        for chunk in [1, 7, 4096] {
            assert_eq!(
                made(answer, chunk, USAGE).await.expect("csv"),
                inline.as_bytes(),
                "chunks of {chunk}"
            );
        }
        assert_eq!(
            made(r#"{"productUsages": []}"#, 3, USAGE).await.expect("csv"),
            b"group,sku\r\n"
        );
        // Whitespace and skipped values cost nothing kept, however long.
        let padded = format!(
            r#"{{"skipped": "{}", "productUsages": []}}{}"#,
            "x".repeat(MAX_JSON_BYTES + 100_000),
            "\n".repeat(MAX_JSON_BYTES + 100_000)
        );
        assert_eq!(made(&padded, 65536, USAGE).await.expect("csv"), b"group,sku\r\n");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn what_cannot_be_a_streamed_csv_is_an_error() {
        let late_field = r#"{"productUsages": [{"sku": "S"}, {"sku": "T", "zone": "eu"}]}"#;
        let err = made(late_field, 5, USAGE).await.expect_err("late field");
        assert!(
            err.contains("row 2") && err.contains("\"zone\"") && err.contains("format JSON"),
            "{err}"
        );
        let cut = r#"{"productUsages": [{"sku": "S"}, {"sku""#;
        assert!(
            made(cut, 5, USAGE).await.is_err(),
            "a truncated answer is no file"
        );
        assert!(
            made(r#"{"phoneUsages": []}"#, 5, USAGE)
                .await
                .expect_err("no array")
                .contains("no productUsages")
        );
        // The budget counts from each row's start, give or take struson's read-ahead.
        let huge = format!(
            r#"{{"productUsages": [{{"sku": "{}"}}]}}"#,
            "x".repeat(MAX_JSON_BYTES + 100_000)
        );
        match made(&huge, 65536, USAGE).await {
            Err(e) => assert!(e.contains("larger than"), "{e}"),
            Ok(file) => panic!("a row of {} bytes was read", file.len()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_license_file_is_decoded_as_it_arrives() {
        let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let encoded = STANDARD.encode(&file);
        // JSON may escape the slashes of base64, and an encoder may break its lines.
        let escaped = encoded.replace('/', "\\/");
        let wrapped = format!("{}\\n{}", &escaped[..76], &escaped[76..]);
        let answer = format!(r#"{{"fileBody": "{wrapped}", "fileName": "licenses_group_g_20261126.csv"}}"#);
        for chunk in [3, 8192] {
            assert_eq!(
                made(&answer, chunk, Shape::License).await.expect("file"),
                file,
                "chunks of {chunk}"
            );
        }
        assert!(
            made(r#"{"fileName": "x.csv"}"#, 5, Shape::License)
                .await
                .expect_err("no body")
                .contains("no fileBody")
        );
        assert!(
            made(r#"{"fileBody": "not base64!"}"#, 5, Shape::License)
                .await
                .is_err()
        );
        assert!(
            made(&answer[..answer.len() / 2], 4096, Shape::License)
                .await
                .is_err(),
            "a truncated answer is no file"
        );
    }
}
