//! Reading an answer's body with a hard size cap, into memory that is wiped on drop.
//!
//! Peak memory for the body is at most about 1.5 × `MAX_BODY_BYTES` (the buffer while it doubles);
//! a declared `Content-Length` over the cap fails before a byte is read, a chunked body fails as soon
//! as it passes the cap. reqwest is built without decompression, so the cap is on what is held.

use zeroize::Zeroizing;

/// The largest successful answer r4-run reads: 32 MiB. At ~100 bytes a variable that is room for
/// some 300,000 variables (far more than a process environment can hold); anything bigger is not an
/// R4 answer, and reading it would only cost memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How much of an error (non-2xx) body is read: enough for the API's JSON envelope or an excerpt.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

pub enum BodyError {
    /// More than the cap, declared up front (`Some(content_length)`) or found while reading.
    TooBig { declared: Option<u64> },
    /// The transfer broke off (cut short, reset): worth another try.
    Broken { error: reqwest::Error, read: usize },
}

/// Reads the whole body, failing once it would pass `cap`.
pub async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let declared = response.content_length();
    if let Some(len) = declared {
        if len > cap as u64 {
            return Err(BodyError::TooBig {
                declared: Some(len),
            });
        }
    }
    let mut body = Zeroizing::new(Vec::with_capacity(declared.unwrap_or(0) as usize));
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(body),
            Err(error) => {
                return Err(BodyError::Broken {
                    error,
                    read: body.len(),
                })
            }
        };
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooBig { declared: None });
        }
        // Grow by doubling ourselves (never past the cap) so a reallocation never leaves an unwiped
        // copy behind.
        if body.capacity() < body.len() + chunk.len() {
            let want = (body.len() + chunk.len()).max(body.capacity() * 2).min(cap);
            let mut bigger = Zeroizing::new(Vec::with_capacity(want));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
}

/// Reads at most `limit` bytes of an error body; the rest is left unread (the connection is
/// dropped). A transfer that breaks off just ends the prefix: an error body is only ever used
/// for a message.
pub async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}
