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

/// A body read up to a cap.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Capped {
    /// At most the cap's bytes.
    pub bytes: Vec<u8>,
    /// The body had more than the cap; the rest was not read.
    pub cut: bool,
}

/// Reads chunks from `next` (`None`: the end) until the end or until more than `limit`
/// bytes came; never keeps more than `limit`.
pub(crate) async fn read_capped<C, E>(
    mut next: impl AsyncFnMut() -> Result<Option<C>, E>,
    limit: usize,
) -> Result<Capped, E>
where
    C: AsRef<[u8]>,
{
    let mut bytes = Vec::new();
    while let Some(chunk) = next().await? {
        let chunk = chunk.as_ref();
        let room = limit.saturating_sub(bytes.len());
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Capped { bytes, cut: true });
        }
        bytes.extend_from_slice(chunk);
    }
    Ok(Capped { bytes, cut: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(chunks: &[&[u8]], limit: usize) -> (Capped, usize) {
        let mut served = 0;
        let mut it = chunks.iter();
        let capped = read_capped(
            async || {
                let next = it.next().map(|c| c.to_vec());
                served += next.is_some() as usize;
                Ok::<_, ()>(next)
            },
            limit,
        )
        .await
        .expect("no error");
        (capped, served)
    }

    #[tokio::test]
    async fn reads_up_to_the_cap_and_stops() {
        assert_eq!(read(&[b"ab", b"cd"], 4).await.0, Capped { bytes: b"abcd".to_vec(), cut: false });
        assert_eq!(read(&[], 4).await.0, Capped { bytes: Vec::new(), cut: false });
        // One byte over: cut, and no further chunk is asked for.
        let (capped, served) = read(&[b"ab", b"cde", b"fg"], 4).await;
        assert_eq!(capped, Capped { bytes: b"abcd".to_vec(), cut: true });
        assert_eq!(served, 2);
        assert_eq!(read(&[b"abcdef"], 0).await.0, Capped { bytes: Vec::new(), cut: true });
    }

    #[tokio::test]
    async fn an_endless_body_stays_within_the_cap() {
        let chunk = vec![b'x'; 8192];
        let mut served = 0usize;
        let capped = read_capped(
            async || {
                served += 1;
                Ok::<_, ()>(Some(chunk.as_slice()))
            },
            MAX_JSON_BYTES,
        )
        .await
        .expect("no error");
        assert!(capped.cut);
        assert_eq!(capped.bytes.len(), MAX_JSON_BYTES);
        assert_eq!(served, MAX_JSON_BYTES / 8192 + 1);
    }

    #[tokio::test]
    async fn errors_pass_through() {
        let mut first = true;
        let r = read_capped(
            async || {
                if std::mem::take(&mut first) { Ok(Some(b"ab".as_slice())) } else { Err("reset") }
            },
            10,
        )
        .await;
        assert_eq!(r, Err("reset"));
    }
}
