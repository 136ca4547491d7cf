//! When to try again and how long to wait: the one place where the retry policy lives.
//!
//! The policy (docs/network.md has the user's view):
//! - every try happens inside the one `--timeout` deadline, and a wait that would leave less than
//!   `MIN_TRY_TIME` of it is not taken: the fetch gives up with the last failure instead;
//! - between tries, "full jitter": a wait drawn uniformly from `0..=min(BACKOFF_CAP, BACKOFF_BASE * 2^n)`
//!   for the n-th step of the schedule (n from 0), so a fleet that failed together does not come back
//!   together;
//! - a `Retry-After` (seconds or an HTTP date) at least as long as the current ceiling of the
//!   schedule is the server's wait: it is waited out, plus up to 10% of it (at most 500 ms) of jitter,
//!   the schedule does not advance, and the try does not count against `MAX_TRIES` (under a rate
//!   limit, waiting as told is the whole strategy). Such tries are at least `BACKOFF_BASE` apart, so
//!   the deadline bounds them. If the wait does not fit in what is left of the deadline, the fetch
//!   fails at once and says when to come back;
//! - a `Retry-After` shorter than that (`0`, or a date in the past from a server whose clock lags)
//!   never shortens the backoff: the wait is the longer of the two, the schedule advances and the
//!   try counts, exactly as if no `Retry-After` had been sent;
//! - every other failed try counts: at most `MAX_TRIES` of them.

use std::time::{Duration, SystemTime};

pub const MAX_TRIES: u32 = 8;
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A try needs some time of its own; sleeping until there is less than this left is pointless.
pub const MIN_TRY_TIME: Duration = Duration::from_millis(100);
/// A `Retry-After` beyond a day is nonsense; clamp it so arithmetic stays sane.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(86_400);
/// The most jitter added to a `Retry-After` wait: enough to spread a fleet over a window, small next
/// to the minute-long windows of the R4 limits.
const RETRY_AFTER_SPREAD_MAX: Duration = Duration::from_millis(500);

/// The retry state of one fetch: where the backoff schedule is, how many tries counted, and a small
/// random source for the jitter.
pub struct Policy {
    /// Steps taken on the backoff schedule.
    steps: u32,
    /// Failed tries that count against `MAX_TRIES`.
    counted: u32,
    rng: SplitMix64,
}

/// What to do after a try that failed in a way worth another try.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Wait this long, then try again.
    Retry { wait: Duration, why: Why },
    /// Stop here.
    GiveUp(GiveUp),
}

/// Why the wait is what it is (for `-v`).
#[derive(Debug, PartialEq)]
pub enum Why {
    /// The server's `Retry-After`, plus jitter.
    RetryAfter { asked: Duration, jitter: Duration },
    /// Our own backoff, drawn below `ceiling`; a shorter `Retry-After` the server sent, if any.
    Backoff {
        ceiling: Duration,
        shorter_retry_after: Option<Duration>,
    },
}

#[derive(Debug, PartialEq)]
pub enum GiveUp {
    /// `MAX_TRIES` tries counted.
    TriesUsed,
    /// Our own next wait does not fit in what is left of the deadline.
    NoTimeForBackoff { wait: Duration },
    /// The server asks for a wait that does not fit in what is left of the deadline.
    NoTimeForRetryAfter { asked: Duration },
}

impl Policy {
    pub fn new() -> Self {
        Self {
            steps: 0,
            counted: 0,
            rng: SplitMix64::seeded(),
        }
    }

    /// The ceiling of the next backoff wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.steps.min(16);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
    }

    /// Decides after a failed try: `retry_after` is what the server asked for, if anything;
    /// `remaining` is what is left of the deadline.
    pub fn after_failure(&mut self, retry_after: Option<Duration>, remaining: Duration) -> Next {
        let ceiling = self.ceiling();
        if let Some(asked) = retry_after.filter(|&asked| asked >= ceiling) {
            let Some(room) = remaining.checked_sub(asked + MIN_TRY_TIME) else {
                return Next::GiveUp(GiveUp::NoTimeForRetryAfter { asked });
            };
            // Never more jitter than there is room for.
            let jitter = self.spread(asked).min(room);
            return Next::Retry {
                wait: asked + jitter,
                why: Why::RetryAfter { asked, jitter },
            };
        }
        self.counted += 1;
        if self.counted >= MAX_TRIES {
            return Next::GiveUp(GiveUp::TriesUsed);
        }
        let wait = self.next_wait().max(retry_after.unwrap_or_default());
        if wait + MIN_TRY_TIME > remaining {
            return Next::GiveUp(GiveUp::NoTimeForBackoff { wait });
        }
        Next::Retry {
            wait,
            why: Why::Backoff {
                ceiling,
                shorter_retry_after: retry_after,
            },
        }
    }

    /// The next backoff wait, uniform in `0..=ceiling` in whole milliseconds; advances the schedule.
    fn next_wait(&mut self) -> Duration {
        let ceiling_ms = self.ceiling().as_millis() as u64;
        self.steps += 1;
        Duration::from_millis(self.rng.next() % (ceiling_ms + 1))
    }

    /// Jitter added to a `Retry-After` wait: uniform in `0..=min(wait / 10, RETRY_AFTER_SPREAD_MAX)`.
    fn spread(&mut self, wait: Duration) -> Duration {
        let ceiling_ms = (wait / 10).min(RETRY_AFTER_SPREAD_MAX).as_millis() as u64;
        Duration::from_millis(self.rng.next() % (ceiling_ms + 1))
    }
}

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

    const PLENTY: Duration = Duration::from_secs(3600);

    fn wait_of(next: Next) -> Duration {
        match next {
            Next::Retry { wait, .. } => wait,
            other => panic!("gave up: {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let mut p = Policy::new();
        let mut ceilings = Vec::new();
        for _ in 0..MAX_TRIES - 1 {
            let ceiling = p.ceiling();
            let wait = wait_of(p.after_failure(None, PLENTY));
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(
            p.after_failure(None, PLENTY),
            Next::GiveUp(GiveUp::TriesUsed)
        );
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let mut p = Policy::new();
        let waits: std::collections::BTreeSet<_> = (0..50)
            .map(|_| {
                p.steps = 5; // ceiling 5 s
                p.counted = 0;
                wait_of(p.after_failure(None, PLENTY))
            })
            .collect();
        assert!(waits.len() > 20, "{waits:?}");
    }

    #[test]
    fn a_retry_after_of_zero_or_in_the_past_never_shortens_the_backoff_and_counts() {
        // Parsed, a date in the past is a wait of zero.
        let now = SystemTime::now();
        let past = httpdate::fmt_http_date(now - Duration::from_secs(3600));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        let mut p = Policy::new();
        let mut tries = 1;
        loop {
            let ceiling = p.ceiling();
            match p.after_failure(Some(Duration::ZERO), PLENTY) {
                Next::Retry { wait, why } => {
                    assert!(wait <= ceiling);
                    assert_eq!(
                        why,
                        Why::Backoff {
                            ceiling,
                            shorter_retry_after: Some(Duration::ZERO)
                        }
                    );
                    tries += 1;
                }
                Next::GiveUp(why) => {
                    assert_eq!(why, GiveUp::TriesUsed);
                    break;
                }
            }
        }
        assert_eq!(tries, MAX_TRIES);
    }

    #[test]
    fn a_retry_after_below_the_ceiling_is_a_floor_under_the_backoff() {
        let mut p = Policy::new();
        p.steps = 4; // ceiling 3.2 s
        for _ in 0..50 {
            p.steps = 4;
            p.counted = 0;
            let wait = wait_of(p.after_failure(Some(Duration::from_secs(1)), PLENTY));
            assert!(
                (Duration::from_secs(1)..=Duration::from_millis(3200)).contains(&wait),
                "{wait:?}"
            );
            assert_eq!(p.counted, 1);
            assert_eq!(p.steps, 5);
        }
    }

    #[test]
    fn a_retry_after_at_least_the_ceiling_is_waited_out_uncounted() {
        let mut p = Policy::new();
        // A fleet under a rate limit: told to come back in 2 s, many times over.
        for _ in 0..3 * MAX_TRIES {
            let next = p.after_failure(Some(Duration::from_secs(2)), PLENTY);
            let Next::Retry {
                wait,
                why: Why::RetryAfter { asked, jitter },
            } = next
            else {
                panic!("{next:?}");
            };
            assert_eq!(asked, Duration::from_secs(2));
            assert!(jitter <= Duration::from_millis(200), "{jitter:?}");
            assert_eq!(wait, asked + jitter);
        }
        assert_eq!((p.counted, p.steps), (0, 0));
    }

    #[test]
    fn a_wait_that_does_not_fit_gives_up() {
        let mut p = Policy::new();
        assert_eq!(
            p.after_failure(Some(Duration::from_secs(120)), Duration::from_secs(10)),
            Next::GiveUp(GiveUp::NoTimeForRetryAfter {
                asked: Duration::from_secs(120)
            })
        );
        // The jitter never eats into the last try's time.
        let wait =
            wait_of(p.after_failure(Some(Duration::from_secs(2)), Duration::from_millis(2100)));
        assert_eq!(wait, Duration::from_secs(2));
        p.steps = 5; // ceiling 5 s, a draw up to 5 s
        p.counted = 0;
        let next = p.after_failure(
            Some(Duration::from_millis(4900)),
            Duration::from_millis(4950),
        );
        assert!(
            matches!(next, Next::GiveUp(GiveUp::NoTimeForBackoff { wait }) if wait >= Duration::from_millis(4900)),
            "{next:?}"
        );
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
