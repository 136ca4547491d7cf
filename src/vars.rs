//! The project's variables as fetched: the one type that the API client (or the fallback file)
//! produces and the steps after it (merge, `.env` output, fallback) consume, so that none of them
//! needs to know where the variables came from.

use crate::secret::SecretString;

/// The project's variables, sorted by name; each value a secret, wiped when dropped.
#[derive(Debug, Default)]
pub struct Fetched {
    pub vars: Vec<(String, SecretString)>,
}

impl Fetched {
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}
