//! Reading an answer's body with a hard size cap, into memory that is wiped on drop.
//!
//! With a declared `Content-Length` the buffer is reserved once at that size (over the cap fails
//! before a byte is read). A chunked body starts small and doubles, copying by hand, and fails as soon
//! as it would pass the cap. Reserving the cap up front would look cheaper (untouched pages cost no
//! memory) but the wiping allocator writes zeros over every freed block, which would touch all 32 MiB
//! of every chunked answer on the way out. reqwest is built without decompression, so the cap is on
//! what is held.

use std::ops::Deref;
use zeroize::Zeroize;

/// The largest successful answer r4-run reads: 32 MiB. At ~100 bytes a variable that is room for
/// some 300,000 variables (far more than a process environment can hold); anything bigger is not an
/// R4 answer, and reading it would only cost memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How much of an error (non-2xx) body is read: enough for the API's JSON envelope or an excerpt.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Where a body without a `Content-Length` starts: a typical project's answer fits.
const CHUNKED_START: usize = 64 * 1024;

pub enum BodyError {
    /// More than the cap, declared up front (`Some(content_length)`) or found while reading.
    TooBig { declared: Option<u64> },
    /// The transfer broke off (cut short, reset): worth another try.
    Broken { error: reqwest::Error, read: usize },
}

/// A body in a buffer that is wiped on drop (the bytes written; the allocator wipes the block).
pub struct Body(Vec<u8>);

impl Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

/// Reads the whole body, failing once it would pass `cap`.
pub async fn read_capped(response: &mut reqwest::Response, cap: usize) -> Result<Body, BodyError> {
    let declared = response.content_length();
    let room = match declared {
        Some(len) if len > cap as u64 => {
            return Err(BodyError::TooBig {
                declared: Some(len),
            })
        }
        Some(len) => len as usize,
        None => cap,
    };
    let mut body = Body(Vec::with_capacity(
        declared.map_or(CHUNKED_START, |len| len as usize),
    ));
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
        if body.0.len() + chunk.len() > room {
            // More than declared would be a framing error that hyper reports itself; more than the
            // cap is what this guards.
            return Err(BodyError::TooBig { declared: None });
        }
        if body.0.capacity() - body.0.len() < chunk.len() {
            // Grow by hand: the old block is dropped (and wiped) only after the copy.
            let wanted = (body.0.len() + chunk.len())
                .max(body.0.capacity() * 2)
                .min(room);
            let mut bigger = Vec::with_capacity(wanted);
            bigger.extend_from_slice(&body.0);
            body = Body(bigger);
        }
        body.0.extend_from_slice(&chunk);
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
