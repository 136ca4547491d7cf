//! `--watch`: the worker that fetches again while the command runs, and tells the supervise loop
//! when the selected variables changed (docs/services.md).
//!
//! One thread, so that a fetch (up to `--timeout` long) never holds up the supervise loop's signal
//! handling. It wakes the loop by making a signal pending that the loop waits for anyway (the
//! caller's `wake`: SIGCHLD to r4-run itself, which the loop takes as "look around"), and hands the
//! new variables over in a slot the loop empties. Between fetches it keeps no value: only a digest
//! of the selected variables, enough to tell a change.
//!
//! It also keeps time for the loop, which waits with no timeout: `wake_at` asks for a wake-up at an
//! instant (the end of a restart's grace period).

use crate::error::Error;
use crate::vars::Fetched;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What r4-run remembers of the selected variables between fetches: each name with a keyed
/// digest of its value (HMAC-SHA256 under a key drawn for this run), enough to tell which changed,
/// and no value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(std::collections::BTreeMap<String, [u8; 32]>);

/// The key of this run's fingerprints.
#[derive(Clone)]
pub struct FingerprintKey(ring::hmac::Key);

impl FingerprintKey {
    /// A fresh random key (one per run).
    pub fn random() -> Result<FingerprintKey, Error> {
        let rng = ring::rand::SystemRandom::new();
        ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .map(FingerprintKey)
            .map_err(|_| Error::new("cannot get random bytes from the system for --watch"))
    }

    /// The fingerprint of `(name, value)` pairs.
    pub fn of<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Fingerprint {
        Fingerprint(
            pairs
                .into_iter()
                .map(|(name, value)| {
                    let mut tag = [0u8; 32];
                    tag.copy_from_slice(ring::hmac::sign(&self.0, value).as_ref());
                    (name.to_owned(), tag)
                })
                .collect(),
        )
    }
}

impl Fingerprint {
    /// The names whose value differs between `self` (before) and `after`: changed, added or removed.
    pub fn changed_names(&self, after: &Fingerprint) -> Vec<String> {
        let mut names: Vec<String> = self
            .0
            .iter()
            .filter(|(name, tag)| after.0.get(*name) != Some(tag))
            .map(|(name, _)| name.clone())
            .collect();
        names.extend(
            after
                .0
                .keys()
                .filter(|name| !self.0.contains_key(*name))
                .cloned(),
        );
        names.sort();
        names
    }
}

/// New variables for the command, and the names that changed.
pub struct Change {
    pub fetched: Fetched,
    pub names: Vec<String>,
}

/// A random number for the jitter, from the system (a fleet's replicas must not agree).
pub fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// What a fetch while watching gave.
pub enum Fetch {
    /// The variables, and the fingerprint of the selected ones (`--only`, `--prefix`).
    Got(Fetched, Fingerprint),
    /// A failure, and how long the server asked us to wait (a 429's Retry-After), if it did.
    Failed(Error, Option<Duration>),
}

/// The worker's timing: the interval between fetches, spread by jitter so that a fleet started
/// together does not fetch together.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub interval: Duration,
}

impl Timing {
    /// The wait before the next fetch: the interval, plus or minus up to 10% of it, drawn from
    /// `random` (a number in 0..=u64::MAX), and never less than `at_least`.
    pub fn next_wait(&self, random: u64, at_least: Option<Duration>) -> Duration {
        let spread = self.interval / 10;
        let span = spread.as_millis() as u64 * 2;
        let offset = if span == 0 { 0 } else { random % (span + 1) };
        let wait = (self.interval - spread) + Duration::from_millis(offset);
        wait.max(at_least.unwrap_or_default())
    }
}

#[derive(Default)]
struct State {
    /// Variables that differ from what the command runs with, for the loop to take.
    changed: Option<Change>,
    /// When the loop wants to be woken.
    wake_at: Option<Instant>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running worker. Dropping it stops it (a fetch in flight is not waited for: the thread is
/// left to end on its own, holding nothing the run needs).
pub struct Watcher {
    shared: Arc<Shared>,
}

impl Watcher {
    /// Starts the worker: `fetch` is called after each wait; a result whose fingerprint differs from
    /// `current` (that of what the command was started with) is handed over, and `wake` makes the
    /// loop look. `random` draws the jitter.
    pub fn start(
        timing: Timing,
        current: Fingerprint,
        mut fetch: impl FnMut() -> Fetch + Send + 'static,
        wake: impl Fn() + Send + 'static,
        mut random: impl FnMut() -> u64 + Send + 'static,
    ) -> std::io::Result<Watcher> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("r4-run watch".to_owned())
            .spawn(move || {
                let mut current = current;
                let mut next_fetch = Instant::now() + timing.next_wait(random(), None);
                loop {
                    let mut state = worker.lock();
                    loop {
                        if state.stop {
                            return;
                        }
                        let now = Instant::now();
                        if state.wake_at.is_some_and(|at| at <= now) {
                            state.wake_at = None;
                            wake();
                        }
                        if next_fetch <= now {
                            break;
                        }
                        let until = state.wake_at.map_or(next_fetch, |at| at.min(next_fetch));
                        state = worker
                            .cond
                            .wait_timeout(state, until.saturating_duration_since(now))
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                    drop(state);
                    let mut at_least = None;
                    match fetch() {
                        Fetch::Got(fetched, after) if after != current => {
                            let names = current.changed_names(&after);
                            current = after;
                            // A change not taken yet is replaced: the command restarts once, with
                            // the newest variables.
                            worker.lock().changed = Some(Change { fetched, names });
                            wake();
                        }
                        Fetch::Got(unchanged, _) => drop(unchanged),
                        Fetch::Failed(error, retry_after) => {
                            crate::warn!(
                                "{}; the command keeps running, and r4-run tries again at the next interval",
                                error.what()
                            );
                            at_least = retry_after;
                        }
                    }
                    next_fetch = Instant::now() + timing.next_wait(random(), at_least);
                }
            })?;
        Ok(Watcher { shared })
    }

    /// The changed variables, if a fetch found any since the last call.
    pub fn take_change(&self) -> Option<Change> {
        self.shared.lock().changed.take()
    }

    /// Asks for a wake-up of the loop at `at` (replacing an earlier request).
    pub fn wake_at(&self, at: Instant) {
        self.shared.lock().wake_at = Some(at);
        self.shared.cond.notify_all();
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.stop = true;
        // Nothing of a pending change is kept: its values are wiped on drop.
        state.changed = None;
        drop(state);
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;
    use std::sync::mpsc;

    fn fetched(value: &str) -> Fetched {
        Fetched {
            vars: vec![("A".to_owned(), SecretString::new(value.to_owned()))],
        }
    }

    fn key() -> &'static FingerprintKey {
        static KEY: std::sync::OnceLock<FingerprintKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| FingerprintKey::random().ok().unwrap())
    }

    fn print(value: &str) -> Fingerprint {
        key().of([("A", value.as_bytes())])
    }

    #[test]
    fn fingerprints_name_what_changed_and_hold_no_value() {
        let k = key();
        let before = k.of([("A", &b"1"[..]), ("B", b"2"), ("C", b"3")]);
        let after = k.of([("A", &b"1"[..]), ("B", b"22"), ("D", b"4")]);
        assert_eq!(before.changed_names(&after), ["B", "C", "D"]);
        assert!(before.changed_names(&before).is_empty());
        let shown = format!("{before:?}");
        assert!(!shown.contains("\"2\""), "{shown}");
        // Another run's key gives other tags for the same values.
        let other = FingerprintKey::random().ok().unwrap();
        assert_ne!(other.of([("A", &b"1"[..])]), k.of([("A", &b"1"[..])]));
    }

    #[test]
    fn the_wait_is_the_interval_with_ten_percent_jitter_and_a_floor() {
        let t = Timing {
            interval: Duration::from_secs(60),
        };
        for random in [0, 1, 12_345, u64::MAX] {
            let w = t.next_wait(random, None);
            assert!(
                w >= Duration::from_secs(54) && w <= Duration::from_secs(66),
                "{w:?}"
            );
        }
        assert_eq!(
            t.next_wait(0, Some(Duration::from_secs(600))),
            Duration::from_secs(600)
        );
    }

    /// A worker whose fetches answer `values` in turn (then the last one again); each wake-up of
    /// the loop is a message on the returned channel.
    fn worker(values: Vec<&'static str>, interval_ms: u64) -> (Watcher, mpsc::Receiver<()>) {
        let (woke, wakes) = mpsc::channel();
        let woke = Mutex::new(woke);
        let mut answers = values.into_iter();
        let mut last = "";
        let watcher = Watcher::start(
            Timing {
                interval: Duration::from_millis(interval_ms),
            },
            print("start"),
            move || {
                last = answers.next().unwrap_or(last);
                Fetch::Got(fetched(last), print(last))
            },
            move || {
                let _ = woke.lock().unwrap().send(());
            },
            || 0,
        )
        .unwrap();
        (watcher, wakes)
    }

    #[test]
    fn a_change_is_handed_over_once_and_sameness_is_not() {
        let (watcher, wakes) = worker(vec!["start", "start", "new"], 5);
        wakes
            .recv_timeout(Duration::from_secs(20))
            .expect("a wake-up");
        let change = watcher.take_change().expect("the new variables");
        assert_eq!(change.fetched.vars[0].1.expose(), "new");
        assert_eq!(change.names, ["A"]);
        assert!(watcher.take_change().is_none());
    }

    #[test]
    fn a_wake_up_comes_when_asked_for() {
        let (watcher, wakes) = worker(vec!["start"], 60_000);
        watcher.wake_at(Instant::now() + Duration::from_millis(10));
        wakes
            .recv_timeout(Duration::from_secs(20))
            .expect("a wake-up");
        assert!(watcher.take_change().is_none());
    }
}
