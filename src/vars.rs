//! The project's variables as fetched: the one type that the API client (or the fallback file)
//! produces and the steps after it (merge, `.env` output, fallback) consume, so that none of them
//! needs to know where the variables came from.

use crate::secret::SecretString;
use std::collections::BTreeMap;

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

/// A variable that a later project took over from an earlier one (names only, for `-v`).
#[derive(Debug, PartialEq, Eq)]
pub struct Override {
    pub name: String,
    /// Index of the project whose value is used.
    pub winner: usize,
    /// Index of the project whose value was dropped.
    pub overridden: usize,
}

impl Fetched {
    /// Several projects' variables as one set, in order: a later project wins a name clash. The
    /// values are moved, never copied; an overridden one is dropped (and wiped) here.
    pub fn merge_in_order(sets: Vec<Fetched>) -> (Fetched, Vec<Override>) {
        let mut merged: BTreeMap<String, (usize, SecretString)> = BTreeMap::new();
        let mut overrides = Vec::new();
        for (index, set) in sets.into_iter().enumerate() {
            for (name, value) in set.vars {
                if let Some((overridden, _)) = merged.get(&name) {
                    overrides.push(Override {
                        name: name.clone(),
                        winner: index,
                        overridden: *overridden,
                    });
                }
                merged.insert(name, (index, value));
            }
        }
        let vars = merged
            .into_iter()
            .map(|(name, (_, value))| (name, value))
            .collect();
        (Fetched { vars }, overrides)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(vars: &[(&str, &str)]) -> Fetched {
        Fetched {
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), SecretString::new(v.to_string())))
                .collect(),
        }
    }

    #[test]
    fn a_later_project_wins_and_the_override_is_named() {
        let (merged, overrides) = Fetched::merge_in_order(vec![
            set(&[("A", "shared"), ("DB", "shared-db")]),
            set(&[("B", "svc"), ("DB", "svc-db")]),
            set(&[("DB", "last-db")]),
        ]);
        let flat: Vec<_> = merged
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(flat, [("A", "shared"), ("B", "svc"), ("DB", "last-db")]);
        assert_eq!(
            overrides,
            [
                Override {
                    name: "DB".into(),
                    winner: 1,
                    overridden: 0
                },
                Override {
                    name: "DB".into(),
                    winner: 2,
                    overridden: 1
                }
            ]
        );
    }
}
