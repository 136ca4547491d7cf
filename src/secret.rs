//! Types that hold secret bytes: the API key and the fetched values.
//!
//! They are wiped when dropped, print as `[redacted]` under `Debug`, and have no `Display`, `Serialize`
//! or `Clone`, so a secret cannot reach a message or a second copy by accident: every read goes through
//! an explicit `expose*` call that is easy to audit.

use std::fmt;
use zeroize::Zeroize;

/// A UTF-8 secret (a fetched value, the API key), zeroized on drop.
pub struct SecretString(String);

impl SecretString {
    /// Takes ownership of `value`; the caller must not keep other copies.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// An R4 API key, `{accessKey}.{secret}`. The access key id is an identifier and may be shown;
/// the part after the dot is never shown.
pub struct ApiKey {
    whole: SecretString,
    dot: usize,
}

impl ApiKey {
    /// Checks the `{accessKey}.{secret}` shape. On failure the error text names at most the access key.
    pub fn parse(key: SecretString) -> Result<Self, KeyShapeError> {
        let text = key.expose();
        if text.is_empty() {
            return Err(KeyShapeError::Empty);
        }
        // A header value must be visible ASCII; anything else is a paste accident (a quote, a space, a
        // newline from `echo` into a key file).
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(KeyShapeError::BadCharacter);
        }
        match text.find('.') {
            None => Err(KeyShapeError::NoDot),
            Some(0) => Err(KeyShapeError::EmptyAccessKey),
            Some(dot) if dot + 1 == text.len() => Err(KeyShapeError::EmptySecret {
                access_key: text[..dot].to_owned(),
            }),
            Some(dot) => Ok(Self { whole: key, dot }),
        }
    }

    /// The public half, safe to show in messages.
    pub fn access_key_id(&self) -> &str {
        &self.whole.expose()[..self.dot]
    }

    /// The secret half, for key derivation.
    pub fn expose_secret_part(&self) -> &str {
        &self.whole.expose()[self.dot + 1..]
    }

    /// The whole key, for the request header.
    pub fn expose(&self) -> &str {
        self.whole.expose()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}.[redacted])", self.access_key_id())
    }
}

/// Why a key does not have the `{accessKey}.{secret}` shape. Never carries the secret part.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyShapeError {
    Empty,
    BadCharacter,
    NoDot,
    EmptyAccessKey,
    EmptySecret { access_key: String },
}

impl fmt::Display for KeyShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the API key is empty"),
            Self::BadCharacter => {
                f.write_str("the API key holds a space, quote, control or non-ASCII character")
            }
            Self::NoDot => {
                f.write_str("the API key has no '.': it must look like {accessKey}.{secret}")
            }
            Self::EmptyAccessKey => f.write_str("the API key has nothing before its '.'"),
            Self::EmptySecret { access_key } => {
                write!(
                    f,
                    "the API key for access key {access_key} has nothing after its '.'"
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Result<ApiKey, KeyShapeError> {
        ApiKey::parse(SecretString::new(s.to_owned()))
    }

    #[test]
    fn splits_access_key_and_secret() {
        let k = key("rk_abc.s3cr.et").unwrap();
        assert_eq!(k.access_key_id(), "rk_abc");
        assert_eq!(k.expose_secret_part(), "s3cr.et");
        assert_eq!(format!("{k:?}"), "ApiKey(rk_abc.[redacted])");
    }

    #[test]
    fn rejects_bad_shapes_without_naming_the_secret() {
        assert_eq!(key("").unwrap_err(), KeyShapeError::Empty);
        assert_eq!(key("nodot").unwrap_err(), KeyShapeError::NoDot);
        assert_eq!(key(".secret").unwrap_err(), KeyShapeError::EmptyAccessKey);
        assert_eq!(key("rk_a.b c").unwrap_err(), KeyShapeError::BadCharacter);
        let e = key("rk_a.").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the API key for access key rk_a has nothing after its '.'"
        );
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", SecretString::new("hunter2".into())),
            "[redacted]"
        );
    }
}
