//! When to try again and how long to wait: the backoff schedule, its jitter, and `Retry-After`.
//!
//! The policy (docs/network.md has the user's view):
//! - at most `MAX_TRIES` tries, all inside the one `--timeout` deadline; a try answered with
//!   `Retry-After` does not count (the deadline bounds those);
//! - between tries, "full jitter": a wait drawn uniformly from `0..=min(BACKOFF_CAP, BACKOFF_BASE * 2^n)`
//!   for the n-th retry (n from 0), so a fleet that failed together does not come back together;
//! - a `Retry-After` (seconds or an HTTP date) replaces the backoff for that wait, plus up to 10% of
//!   it (at most 500 ms) of jitter; if it does not fit
//!   in what is left of the deadline the fetch fails at once and says when to come back;
//! - a wait that would leave less than `MIN_TRY_TIME` of the deadline is not taken: the fetch gives up
//!   with the last failure instead of sleeping into the deadline.

use std::time::{Duration, SystemTime};

pub const MAX_TRIES: u32 = 8;
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A try needs some time of its own; sleeping until there is less than this left is pointless.
pub const MIN_TRY_TIME: Duration = Duration::from_millis(100);
/// A `Retry-After` beyond a day is nonsense; clamp it so arithmetic stays sane.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(86_400);

/// The backoff schedule with its own small random source.
pub struct Backoff {
    retries: u32,
    rng: SplitMix64,
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            retries: 0,
            rng: SplitMix64::seeded(),
        }
    }

    /// The ceiling for the next wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.retries.min(16);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
    }

    /// The next wait: uniform in `0..=ceiling`, in whole milliseconds.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling_ms = self.ceiling().as_millis() as u64;
        self.retries += 1;
        Duration::from_millis(self.rng.next() % (ceiling_ms + 1))
    }
}

impl Backoff {
    /// Jitter added to a `Retry-After` wait: uniform in `0..=min(wait / 10, RETRY_AFTER_SPREAD_MAX)`.
    pub fn spread(&mut self, wait: Duration) -> Duration {
        let ceiling_ms = (wait / 10).min(RETRY_AFTER_SPREAD_MAX).as_millis() as u64;
        Duration::from_millis(self.rng.next() % (ceiling_ms + 1))
    }
}

/// The most jitter added to a `Retry-After` wait: enough to spread a fleet over a window, small next
/// to the minute-long windows of the R4 limits.
const RETRY_AFTER_SPREAD_MAX: Duration = Duration::from_millis(500);

/// SplitMix64: tiny, dependency-free, good enough to spread retries (not for secrets). Seeded from
/// the clock, the pid and a stack address, so processes started in the same instant still differ.
struct SplitMix64(u64);

impl SplitMix64 {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        let addr = std::ptr::addr_of!(local) as u64;
        let pid = u64::from(std::process::id());
        Self(nanos ^ pid.rotate_left(32) ^ addr.rotate_left(17))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in the
/// past means "now". Anything unparsable is ignored (the backoff applies instead).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: a huge number is simply a very long wait.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(RETRY_AFTER_MAX))
}

/// When `wait` from now will be, as an HTTP date (`Tue, 15 Nov 1994 08:12:31 GMT`), for messages.
pub fn http_date_after(wait: Duration) -> String {
    httpdate::fmt_http_date(SystemTime::now() + wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let mut b = Backoff::new();
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = b.ceiling();
            let wait = b.next_wait();
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut b = Backoff::new();
        b.retries = 5; // ceiling 5 s
        let waits: std::collections::BTreeSet<_> = (0..50)
            .map(|_| {
                b.retries = 5;
                b.next_wait()
            })
            .collect();
        assert!(waits.len() > 20, "{waits:?}");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_887_151); // Tue, 15 Nov 1994 08:12:31 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 15 Nov 1994 08:12:41 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Tue, 15 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(RETRY_AFTER_MAX)
        );
        for junk in ["", "-1", "1.5", "soon", "Tue, 99 Nov 1994"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk}");
        }
    }
}
