//! When to try again and how long to wait: the one place where the retry policy lives.
//!
//! The policy (docs/network.md has the user's view, docs/fleet.md the arithmetic for a fleet):
//! - every try happens inside the one `--timeout` deadline, and a wait that would leave less than
//!   `MIN_TRY_TIME` of it is not taken: the fetch gives up with the last failure instead;
//! - between tries, "full jitter": a wait drawn uniformly from `0..=min(BACKOFF_CAP, BACKOFF_BASE * 2^n)`
//!   for the n-th step of the schedule (n from 0), so a fleet that failed together does not come back
//!   together;
//! - a `Retry-After` (seconds or an HTTP date) at least as long as the current ceiling of the
//!   schedule is the server's wait: it is waited out, the schedule does not advance, and the try
//!   does not count against `MAX_TRIES` (under a rate limit, waiting as told is the whole strategy).
//!   Such tries are at least `BACKOFF_BASE` apart, so the deadline bounds them. If the wait does not
//!   fit in what is left of the deadline, the fetch fails at once and says when to come back;
//! - on a 429, the wait is the `Retry-After` plus a draw that spreads a refused fleet over the
//!   next windows of the limit instead of sending all of it to the next window's start (see
//!   `Policy::rate_limit_spread`); on any other status, plus up to 10% of it (at most 500 ms);
//! - a `Retry-After` shorter than that (`0`, or a date in the past from a server whose clock lags)
//!   never shortens the backoff: the wait is the longer of the two, the schedule advances and the
//!   try counts, exactly as if no `Retry-After` had been sent;
//! - every other failed try counts: at most `MAX_TRIES` of them.
//!
//! The clock and the random draws come from a `Source`, so the tests drive both.

use std::time::{Duration, Instant, SystemTime};

pub const MAX_TRIES: u32 = 8;
pub const BACKOFF_BASE: Duration = Duration::from_millis(200);
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A try needs some time of its own; sleeping until there is less than this left is pointless.
pub const MIN_TRY_TIME: Duration = Duration::from_millis(100);
/// A `Retry-After` beyond a day is nonsense; clamp it so arithmetic stays sane.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(86_400);
/// The most jitter added to the `Retry-After` of a status other than 429: such a wait is the end
/// of an outage, not of a window with room for a few.
const RETRY_AFTER_JITTER_MAX: Duration = Duration::from_millis(500);
/// How far past a 429's `Retry-After` the next try is drawn, in windows of the limit: after the
/// first 429, which cannot tell a small crowd from a large one;
const SPREAD_FIRST_WINDOWS: u32 = 2;
/// after a refusal early in its window (a window full before its middle: a large crowd), or the
/// time waited so far divided by `SPREAD_ELAPSED_DIVISOR` if that is longer;
const SPREAD_HEAVY_WINDOWS: u32 = 3;
const SPREAD_ELAPSED_DIVISOR: u32 = 3;
/// after a refusal late in its window (a window that filled late: a crowd about its size).
const SPREAD_LIGHT_WINDOWS: u32 = 2;

/// The clock and the dice of the policy: the real ones in r4-run, scripted ones in tests.
pub trait Source {
    fn now(&self) -> Instant;
    /// A uniformly distributed 64-bit number.
    fn next_u64(&mut self) -> u64;
}

/// The monotonic clock and a SplitMix64 seeded from the clock, the pid and a stack address.
pub struct System(SplitMix64);

impl System {
    pub fn new() -> Self {
        Self(SplitMix64::seeded())
    }
}

impl Source for System {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next()
    }
}

/// The retry state of one fetch: where the backoff schedule is, how many tries counted, what the
/// 429s told so far, and the source of time and jitter.
pub struct Policy<S: Source = System> {
    source: S,
    /// When the fetch started (its first try).
    started: Instant,
    /// The end of the one deadline.
    deadline: Instant,
    /// Steps taken on the backoff schedule.
    steps: u32,
    /// Failed tries that count against `MAX_TRIES`.
    counted: u32,
    /// The longest `Retry-After` a 429 asked for: the estimate of the limit's window (zero before
    /// the first).
    window: Duration,
}

/// What a failed try's answer said about waiting.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Failure {
    /// The server's `Retry-After`, if it sent one that parses.
    pub retry_after: Option<Duration>,
    /// A 429: the key's rate limit, which admits a few requests per window.
    pub rate_limited: bool,
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
    /// A 429's `Retry-After`, plus `drawn`, uniform below `spread` (or below what is left of the
    /// deadline, if less).
    RateLimit {
        asked: Duration,
        spread: Duration,
        drawn: Duration,
    },
    /// Another status's `Retry-After`, plus jitter.
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
    /// The policy of a fetch that starts now and must end by `deadline`.
    pub fn new(deadline: Instant) -> Self {
        Self::with_source(System::new(), deadline)
    }
}

impl<S: Source> Policy<S> {
    pub fn with_source(source: S, deadline: Instant) -> Self {
        let started = source.now();
        Self {
            source,
            started,
            deadline,
            steps: 0,
            counted: 0,
            window: Duration::ZERO,
        }
    }

    /// The ceiling of the next backoff wait (before jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.steps.min(16);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
    }

    /// Decides after a failed try.
    pub fn after_failure(&mut self, failure: Failure) -> Next {
        let now = self.source.now();
        let remaining = self.deadline.saturating_duration_since(now);
        let ceiling = self.ceiling();
        if let Some(asked) = failure.retry_after.filter(|&asked| asked >= ceiling) {
            let Some(room) = remaining.checked_sub(asked.saturating_add(MIN_TRY_TIME)) else {
                return Next::GiveUp(GiveUp::NoTimeForRetryAfter { asked });
            };
            // Never a draw past what is left of the deadline: the last try keeps its time.
            if failure.rate_limited {
                let spread = self.rate_limit_spread(asked, now);
                let drawn = self.uniform(spread.min(room));
                return Next::Retry {
                    wait: asked + drawn,
                    why: Why::RateLimit {
                        asked,
                        spread,
                        drawn,
                    },
                };
            }
            let jitter = self.uniform((asked / 10).min(RETRY_AFTER_JITTER_MAX).min(room));
            return Next::Retry {
                wait: asked + jitter,
                why: Why::RetryAfter { asked, jitter },
            };
        }
        self.counted += 1;
        if self.counted >= MAX_TRIES {
            return Next::GiveUp(GiveUp::TriesUsed);
        }
        let wait = self
            .next_wait()
            .max(failure.retry_after.unwrap_or_default());
        if wait + MIN_TRY_TIME > remaining {
            return Next::GiveUp(GiveUp::NoTimeForBackoff { wait });
        }
        Next::Retry {
            wait,
            why: Why::Backoff {
                ceiling,
                shorter_retry_after: failure.retry_after,
            },
        }
    }

    /// How far past a 429's `Retry-After` the next try may be drawn (docs/fleet.md has the
    /// arithmetic). A limit of C requests per window refuses everyone past the first C and tells
    /// each to come back when the window ends: if all do, the next window sees the whole refused
    /// crowd again, and so on, one refusal per waiting client per window. A client cannot see the
    /// crowd, only what its own 429s say:
    ///
    /// - the window: the longest `Retry-After` seen (one refused at a window's start is told all of
    ///   it);
    /// - how contended the window was: a refusal with more than half the window still to run means
    ///   the window was full before its middle, at least twice its capacity asking ("heavy"); one in
    ///   its second half, a window that filled late ("light");
    /// - how long it has waited: a fleet that has kept it waiting long is large.
    ///
    /// Spreading the crowd over more windows lowers each window's arrivals (a start costs about
    /// arrivals / capacity requests) but leaves the last windows part empty while the last clients
    /// wait for their draw (the last start comes later). `SPREAD_*` weigh the two.
    fn rate_limit_spread(&mut self, asked: Duration, now: Instant) -> Duration {
        let first = self.window.is_zero();
        self.window = self.window.max(asked);
        if first {
            return self.window.saturating_mul(SPREAD_FIRST_WINDOWS);
        }
        let heavy = asked.saturating_mul(2) > self.window;
        if heavy {
            let waited = now.saturating_duration_since(self.started);
            (self.window.saturating_mul(SPREAD_HEAVY_WINDOWS)).max(waited / SPREAD_ELAPSED_DIVISOR)
        } else {
            self.window.saturating_mul(SPREAD_LIGHT_WINDOWS)
        }
    }

    /// The next backoff wait, uniform in `0..=ceiling`; advances the schedule.
    fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.steps += 1;
        self.uniform(ceiling)
    }

    /// Uniform in `0..=most`, in whole milliseconds: the draw scaled by multiplication (no modulo
    /// bias), so the lowest draw gives 0 and the highest gives `most`.
    fn uniform(&mut self, most: Duration) -> Duration {
        let choices = most.as_millis().min(u128::from(u64::MAX - 1)) + 1;
        let ms = (u128::from(self.source.next_u64()) * choices) >> 64;
        Duration::from_millis(ms as u64)
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
    use std::cell::Cell;
    use std::rc::Rc;

    const PLENTY: Duration = Duration::from_secs(3600);
    const LOWEST: u64 = 0;
    const HIGHEST: u64 = u64::MAX;

    /// A clock that moves only when the test moves it, and dice that show what the test says (or
    /// roll a seeded SplitMix64).
    #[derive(Clone)]
    struct Scripted {
        now: Rc<Cell<Instant>>,
        dice: Rc<Cell<Option<u64>>>,
        rng: Rc<Cell<u64>>,
    }

    impl Scripted {
        fn new(start: Instant) -> Self {
            Self {
                now: Rc::new(Cell::new(start)),
                dice: Rc::new(Cell::new(None)),
                rng: Rc::new(Cell::new(0x5EED)),
            }
        }
        fn seeded(start: Instant, seed: u64) -> Self {
            let s = Self::new(start);
            s.rng.set(seed);
            s
        }
        fn advance(&self, by: Duration) {
            self.now.set(self.now.get() + by);
        }
        fn show(&self, value: u64) {
            self.dice.set(Some(value));
        }
    }

    impl Source for Scripted {
        fn now(&self) -> Instant {
            self.now.get()
        }
        fn next_u64(&mut self) -> u64 {
            if let Some(value) = self.dice.get() {
                return value;
            }
            let mut rng = SplitMix64(self.rng.get());
            let value = rng.next();
            self.rng.set(rng.0);
            value
        }
    }

    fn policy(deadline_in: Duration) -> (Policy<Scripted>, Scripted) {
        let start = Instant::now();
        let source = Scripted::new(start);
        (
            Policy::with_source(source.clone(), start + deadline_in),
            source,
        )
    }

    fn limited(secs: u64) -> Failure {
        Failure {
            retry_after: Some(Duration::from_secs(secs)),
            rate_limited: true,
        }
    }

    fn unavailable(retry_after: Option<Duration>) -> Failure {
        Failure {
            retry_after,
            rate_limited: false,
        }
    }

    fn wait_of(next: Next) -> Duration {
        match next {
            Next::Retry { wait, .. } => wait,
            other => panic!("gave up: {other:?}"),
        }
    }

    fn spread_of(next: Next) -> Duration {
        match next {
            Next::Retry {
                why: Why::RateLimit { spread, .. },
                ..
            } => spread,
            other => panic!("not a rate-limit wait: {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_full_jitter() {
        let (mut p, dice) = policy(PLENTY);
        dice.show(HIGHEST);
        let mut waits = Vec::new();
        for _ in 0..MAX_TRIES - 1 {
            waits.push(wait_of(p.after_failure(unavailable(None))).as_millis());
        }
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(
            p.after_failure(unavailable(None)),
            Next::GiveUp(GiveUp::TriesUsed)
        );
        let (mut p, dice) = policy(PLENTY);
        dice.show(LOWEST);
        assert_eq!(wait_of(p.after_failure(unavailable(None))), Duration::ZERO);
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let (mut p, _) = policy(PLENTY);
        let waits: std::collections::BTreeSet<_> = (0..50)
            .map(|_| {
                p.steps = 5; // ceiling 5 s
                p.counted = 0;
                wait_of(p.after_failure(unavailable(None)))
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
        for rate_limited in [true, false] {
            let (mut p, _) = policy(PLENTY);
            let mut tries = 1;
            loop {
                let ceiling = p.ceiling();
                let failure = Failure {
                    retry_after: Some(Duration::ZERO),
                    rate_limited,
                };
                match p.after_failure(failure) {
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
    }

    #[test]
    fn a_missing_retry_after_on_a_429_is_backed_off_and_counts() {
        let (mut p, dice) = policy(PLENTY);
        dice.show(HIGHEST);
        let next = p.after_failure(Failure {
            retry_after: None,
            rate_limited: true,
        });
        assert_eq!(
            next,
            Next::Retry {
                wait: BACKOFF_BASE,
                why: Why::Backoff {
                    ceiling: BACKOFF_BASE,
                    shorter_retry_after: None
                }
            }
        );
        assert_eq!(p.counted, 1);
    }

    #[test]
    fn a_retry_after_below_the_ceiling_is_a_floor_under_the_backoff() {
        let (mut p, _) = policy(PLENTY);
        for _ in 0..50 {
            p.steps = 4; // ceiling 3.2 s
            p.counted = 0;
            let wait = wait_of(p.after_failure(unavailable(Some(Duration::from_secs(1)))));
            assert!(
                (Duration::from_secs(1)..=Duration::from_millis(3200)).contains(&wait),
                "{wait:?}"
            );
            assert_eq!(p.counted, 1);
            assert_eq!(p.steps, 5);
        }
    }

    #[test]
    fn a_503s_retry_after_is_waited_out_uncounted_with_a_little_jitter() {
        let (mut p, dice) = policy(PLENTY);
        dice.show(HIGHEST);
        for _ in 0..3 * MAX_TRIES {
            let next = p.after_failure(unavailable(Some(Duration::from_secs(2))));
            assert_eq!(
                next,
                Next::Retry {
                    wait: Duration::from_millis(2200),
                    why: Why::RetryAfter {
                        asked: Duration::from_secs(2),
                        jitter: Duration::from_millis(200)
                    }
                }
            );
        }
        assert_eq!((p.counted, p.steps), (0, 0));
        // At most 500 ms, however long the wait.
        let next = p.after_failure(unavailable(Some(Duration::from_secs(60))));
        assert_eq!(wait_of(next), Duration::from_millis(60_500));
    }

    #[test]
    fn a_429_is_spread_over_two_windows_then_three_after_each_heavy_refusal() {
        let (mut p, dice) = policy(PLENTY);
        dice.show(HIGHEST);
        // Each 429 with the whole 2 s window still to run: a window full from its start. (The clock
        // stands still: the time waited is another rule's business.)
        let mut spreads = Vec::new();
        for _ in 0..5 {
            let next = p.after_failure(limited(2));
            let Next::Retry {
                wait,
                why:
                    Why::RateLimit {
                        asked,
                        spread,
                        drawn,
                    },
            } = next
            else {
                panic!("{next:?}");
            };
            assert_eq!((asked, drawn), (Duration::from_secs(2), spread));
            assert_eq!(wait, asked + spread);
            spreads.push(spread.as_secs());
        }
        assert_eq!(spreads, [4, 6, 6, 6, 6]);
        // Waiting is what a rate limit asks for: no try counted, the backoff did not advance.
        assert_eq!((p.counted, p.steps), (0, 0));
        // The lowest draw is the Retry-After itself: never sooner than the server asked.
        dice.show(LOWEST);
        assert_eq!(wait_of(p.after_failure(limited(2))), Duration::from_secs(2));
    }

    #[test]
    fn a_refusal_late_in_its_window_spreads_over_two_windows() {
        let (mut p, _) = policy(PLENTY);
        let spreads: Vec<u64> = [2, 2, 1, 2, 1]
            .into_iter()
            .map(|secs| spread_of(p.after_failure(limited(secs))).as_secs())
            .collect();
        // 1 s left of a 2 s window: it filled late, the crowd is about its size.
        assert_eq!(spreads, [4, 6, 4, 6, 4]);
    }

    #[test]
    fn a_long_wait_lets_the_spread_grow_to_a_third_of_the_time_waited() {
        let (mut p, dice) = policy(PLENTY);
        for _ in 0..3 {
            p.after_failure(limited(2));
        }
        dice.advance(Duration::from_secs(18));
        // A third of 18 s is the three windows' 6 s: no more yet.
        assert_eq!(
            spread_of(p.after_failure(limited(2))),
            Duration::from_secs(6)
        );
        dice.advance(Duration::from_secs(42));
        assert_eq!(
            spread_of(p.after_failure(limited(2))),
            Duration::from_secs(20)
        );
        // Not after a light refusal: two windows.
        assert_eq!(
            spread_of(p.after_failure(limited(1))),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn the_window_is_the_longest_retry_after_seen() {
        let spreads = |asked: &[u64]| -> Vec<u64> {
            let (mut p, _) = policy(PLENTY);
            asked
                .iter()
                .map(|&secs| spread_of(p.after_failure(limited(secs))).as_secs())
                .collect()
        };
        // Refused late in a window first: 1 s is all it knows of the window, until told 2 s.
        assert_eq!(spreads(&[1, 2, 1]), [2, 6, 4]);
        // On a minute's window (the R4 limits), the same in minutes: 20 s left is a light window,
        // 45 s left a heavy one.
        assert_eq!(spreads(&[60, 20, 45]), [120, 120, 180]);
    }

    #[test]
    fn a_wait_that_does_not_fit_gives_up_and_the_draw_keeps_the_last_tries_time() {
        let (mut p, dice) = policy(Duration::from_secs(10));
        assert_eq!(
            p.after_failure(limited(120)),
            Next::GiveUp(GiveUp::NoTimeForRetryAfter {
                asked: Duration::from_secs(120)
            })
        );
        assert_eq!(
            p.after_failure(unavailable(Some(Duration::from_secs(120)))),
            Next::GiveUp(GiveUp::NoTimeForRetryAfter {
                asked: Duration::from_secs(120)
            })
        );
        // 2.1 s left: a 2 s Retry-After fits, its spread of 4 s does not, so nothing is drawn.
        dice.show(HIGHEST);
        dice.advance(Duration::from_millis(7900));
        let next = p.after_failure(limited(2));
        assert_eq!(
            next,
            Next::Retry {
                wait: Duration::from_secs(2),
                why: Why::RateLimit {
                    asked: Duration::from_secs(2),
                    spread: Duration::from_secs(4),
                    drawn: Duration::ZERO
                }
            }
        );
        // 3 s left: a draw of at most 900 ms.
        let (mut p, dice) = policy(Duration::from_secs(3));
        dice.show(HIGHEST);
        assert_eq!(
            wait_of(p.after_failure(limited(2))),
            Duration::from_millis(2900)
        );
        // Our own backoff that does not fit.
        let (mut p, dice) = policy(Duration::from_millis(4950));
        dice.show(HIGHEST);
        p.steps = 5; // ceiling 5 s, drawn at 5 s
        let next = p.after_failure(unavailable(Some(Duration::from_millis(4900))));
        assert_eq!(
            next,
            Next::GiveUp(GiveUp::NoTimeForBackoff {
                wait: Duration::from_secs(5)
            })
        );
    }

    #[test]
    fn the_longest_wait_a_duration_holds_gives_up_without_overflowing() {
        for rate_limited in [true, false] {
            let (mut p, _) = policy(PLENTY);
            let next = p.after_failure(Failure {
                retry_after: Some(Duration::MAX),
                rate_limited,
            });
            assert_eq!(
                next,
                Next::GiveUp(GiveUp::NoTimeForRetryAfter {
                    asked: Duration::MAX
                })
            );
        }
    }

    /// The emulator's limit (emulator/src/auth.rs): fixed windows of `period`, each opened by the
    /// first request after the last one closed, admitting `capacity` requests; a refusal's
    /// `Retry-After` is what is left of the window in whole seconds, rounded up, at least 1.
    struct FixedWindows {
        capacity: u32,
        period: Duration,
        opened: Option<Instant>,
        admitted: u32,
    }

    impl FixedWindows {
        fn request(&mut self, at: Instant) -> Result<(), Duration> {
            let opened = match self.opened {
                Some(opened) if at - opened < self.period => opened,
                _ => {
                    self.opened = Some(at);
                    self.admitted = 0;
                    at
                }
            };
            if self.admitted < self.capacity {
                self.admitted += 1;
                return Ok(());
            }
            let left = (opened + self.period) - at;
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            Err(Duration::from_secs(secs.max(1)))
        }
    }

    struct FleetFigures {
        requests: usize,
        last_start: Duration,
        failed: usize,
    }

    /// `n` clients start together (one every 2 ms, as `bench/fleet` spawns them) against a limit
    /// of `capacity` per `period`, each with its own policy and dice; a request takes 3 ms.
    fn fleet(
        n: usize,
        capacity: u32,
        period: Duration,
        deadline: Duration,
        seed: u64,
    ) -> FleetFigures {
        use std::cmp::Reverse;
        use std::collections::BinaryHeap;
        const SPAWN: Duration = Duration::from_millis(2);
        const ROUND_TRIP: Duration = Duration::from_millis(3);
        let t0 = Instant::now();
        let mut limit = FixedWindows {
            capacity,
            period,
            opened: None,
            admitted: 0,
        };
        let mut clients: Vec<(Policy<Scripted>, Scripted)> = (0..n)
            .map(|i| {
                let start = t0 + SPAWN * i as u32;
                let source =
                    Scripted::seeded(start, seed.wrapping_mul(1000).wrapping_add(i as u64));
                (
                    Policy::with_source(source.clone(), start + deadline),
                    source,
                )
            })
            .collect();
        let mut queue: BinaryHeap<Reverse<(Instant, usize)>> = (0..n)
            .map(|i| Reverse((t0 + SPAWN * i as u32, i)))
            .collect();
        let (mut requests, mut failed, mut last_start) = (0, 0, Duration::ZERO);
        while let Some(Reverse((at, i))) = queue.pop() {
            requests += 1;
            let Err(retry_after) = limit.request(at) else {
                last_start = last_start.max(at - t0);
                continue;
            };
            let (policy, source) = &mut clients[i];
            source.now.set(at + ROUND_TRIP);
            match policy.after_failure(Failure {
                retry_after: Some(retry_after),
                rate_limited: true,
            }) {
                Next::Retry { wait, .. } => queue.push(Reverse((at + ROUND_TRIP + wait, i))),
                Next::GiveUp(_) => failed += 1,
            }
        }
        FleetFigures {
            requests,
            last_start,
            failed,
        }
    }

    #[test]
    fn a_fleet_of_200_under_20_per_2_s_starts_near_the_floor_with_at_most_4_requests_a_start() {
        // The floor N / rate is 20 s; the default --timeout of 30 s is the deadline.
        for seed in 1..=10 {
            let f = fleet(
                200,
                20,
                Duration::from_secs(2),
                Duration::from_secs(30),
                seed,
            );
            eprintln!(
                "seed {seed}: {} requests ({:.2} a start), last start {:.2} s",
                f.requests,
                f.requests as f64 / 200.0,
                f.last_start.as_secs_f64()
            );
            assert_eq!(f.failed, 0, "seed {seed}");
            assert!(
                f.requests <= 4 * 200,
                "seed {seed}: {} requests",
                f.requests
            );
            assert!(
                f.last_start <= Duration::from_secs(26),
                "seed {seed}: last start {:?}",
                f.last_start
            );
        }
    }

    #[test]
    fn fleets_of_other_sizes_and_limits_cost_less_than_coming_back_whole_each_window() {
        // (starts, capacity, window): the benchmark's limit, and the R4 API's 100 a minute. The
        // deadline is three times the floor N / rate (at least 30 s), as a big rollout would set
        // --timeout. `cargo test --lib fleets_of -- --nocapture` prints the figures (docs/fleet.md).
        for (n, capacity, window) in [
            (50, 20, 2),
            (500, 20, 2),
            (150, 100, 60),
            (300, 100, 60),
            (500, 100, 60),
            (1000, 100, 60),
        ] {
            let floor = Duration::from_secs(window) * n as u32 / capacity;
            let deadline = (floor * 3).max(Duration::from_secs(30));
            // Everyone still waiting asks again at each window's start: N + (N - C) + (N - 2C) + …
            let whole_crowd: usize = (0..n).step_by(capacity as usize).map(|k| n - k).sum();
            for seed in 1..=3 {
                let f = fleet(n, capacity, Duration::from_secs(window), deadline, seed);
                eprintln!(
                    "{n} starts, {capacity} per {window} s, seed {seed}: {:.2} requests a start \
                     (coming back whole: {:.2}), last start {:.1} s = {:.2}x the floor",
                    f.requests as f64 / n as f64,
                    whole_crowd as f64 / n as f64,
                    f.last_start.as_secs_f64(),
                    f.last_start.as_secs_f64() / floor.as_secs_f64()
                );
                assert_eq!(f.failed, 0, "{n}/{capacity}/{window}, seed {seed}");
                assert!(
                    f.requests <= whole_crowd,
                    "{n}/{capacity}/{window}, seed {seed}: {} requests",
                    f.requests
                );
            }
        }
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
