//! Authentication (which key a request carries) and per-key rate limiting (fixed windows).

use std::time::Duration;

use hyper::header::{HeaderMap, AUTHORIZATION};

/// The key a request carries: `X-API-Key: KEY` (preferred), else `Authorization: ApiKey KEY`
/// (the scheme word is matched case-insensitively, as HTTP auth schemes are). Surrounding blanks
/// are ignored. `None` when neither header holds a usable value.
pub fn request_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-api-key") {
        let key = value.to_str().ok()?.trim();
        return (!key.is_empty()).then_some(key);
    }
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("ApiKey") {
        return None;
    }
    let key = rest.trim();
    (!key.is_empty()).then_some(key)
}

/// A limit of `limit` requests per `period`, or none.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub limit: u64,
    pub period: Duration,
}

impl Limit {
    /// Parse `N/SECS` (e.g. `100/60`), or `off` for no limit. N and SECS are at least 1.
    pub fn parse_rate(text: &str) -> Result<Option<Limit>, String> {
        if text == "off" {
            return Ok(None);
        }
        let (n, secs) = text
            .split_once('/')
            .ok_or_else(|| format!("expected N/SECS or off, got {text:?}"))?;
        let limit = parse_positive(n)?;
        let secs = parse_positive(secs)?;
        Ok(Some(Limit {
            limit,
            period: Duration::from_secs(secs),
        }))
    }

    /// Parse a daily limit `N` (at least 1), or `off`.
    pub fn parse_daily(text: &str) -> Result<Option<Limit>, String> {
        if text == "off" {
            return Ok(None);
        }
        Ok(Some(Limit {
            limit: parse_positive(text)?,
            period: Duration::from_secs(24 * 60 * 60),
        }))
    }
}

fn parse_positive(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a whole number of at least 1, got {text:?}"
        )),
    }
}

/// One fixed window: it opens with the first request after the previous one closed.
#[derive(Clone, Debug, Default)]
struct Window {
    start: Duration,
    count: u64,
}

impl Window {
    /// Close the window if its period is over at `now`.
    fn roll(&mut self, limit: &Limit, now: Duration) {
        if self.count == 0 || now.saturating_sub(self.start) >= limit.period {
            self.start = now;
            self.count = 0;
        }
    }

    /// Whole seconds until the window closes, rounded up, at least 1.
    fn retry_after(&self, limit: &Limit, now: Duration) -> u64 {
        let left = (self.start + limit.period).saturating_sub(now);
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// The rate-limit state of one key: a short window (`--rate-limit`) and a daily one.
#[derive(Clone, Debug, Default)]
pub struct KeyLimiter {
    short: Window,
    daily: Window,
}

impl KeyLimiter {
    /// Count one request at `now` (time since the emulator started). `Err(seconds)` when a limit is
    /// reached: the request is refused and not counted; `seconds` is what `Retry-After` says.
    pub fn check(
        &mut self,
        short: Option<&Limit>,
        daily: Option<&Limit>,
        now: Duration,
    ) -> Result<(), u64> {
        let mut retry = 0;
        for (window, limit) in [(&mut self.short, short), (&mut self.daily, daily)] {
            if let Some(limit) = limit {
                window.roll(limit, now);
                if window.count >= limit.limit {
                    retry = retry.max(window.retry_after(limit, now));
                }
            }
        }
        if retry > 0 {
            return Err(retry);
        }
        for (window, limit) in [(&mut self.short, short), (&mut self.daily, daily)] {
            if limit.is_some() {
                window.count += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn key_from_headers() {
        assert_eq!(
            request_key(&headers(&[("x-api-key", "rk_a.s")])),
            Some("rk_a.s")
        );
        assert_eq!(
            request_key(&headers(&[("x-api-key", " rk_a.s ")])),
            Some("rk_a.s")
        );
        assert_eq!(
            request_key(&headers(&[("authorization", "ApiKey rk_a.s")])),
            Some("rk_a.s")
        );
        assert_eq!(
            request_key(&headers(&[("authorization", "apikey   rk_a.s")])),
            Some("rk_a.s")
        );
        assert_eq!(
            request_key(&headers(&[("authorization", "Bearer rk_a.s")])),
            None
        );
        assert_eq!(request_key(&headers(&[("authorization", "ApiKey")])), None);
        assert_eq!(
            request_key(&headers(&[("authorization", "ApiKey  ")])),
            None
        );
        assert_eq!(request_key(&headers(&[("x-api-key", "")])), None);
        assert_eq!(request_key(&headers(&[])), None);
        // X-API-Key wins over Authorization.
        assert_eq!(
            request_key(&headers(&[
                ("authorization", "ApiKey rk_b.s"),
                ("x-api-key", "rk_a.s")
            ])),
            Some("rk_a.s")
        );
    }

    #[test]
    fn parse_limits() {
        assert_eq!(
            Limit::parse_rate("100/60").unwrap(),
            Some(Limit {
                limit: 100,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(Limit::parse_rate("off").unwrap(), None);
        for bad in ["", "100", "0/60", "1/0", "a/60", "1/-1", "1/60/2"] {
            assert!(Limit::parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(Limit::parse_daily("10000").unwrap().unwrap().limit, 10000);
        assert!(Limit::parse_daily("0").is_err());
        assert_eq!(Limit::parse_daily("off").unwrap(), None);
    }

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn fixed_window_arithmetic() {
        let short = Limit::parse_rate("2/60").unwrap();
        let mut l = KeyLimiter::default();
        // The window opens at the first request, t = 10 s.
        assert_eq!(l.check(short.as_ref(), None, s(10.0)), Ok(()));
        assert_eq!(l.check(short.as_ref(), None, s(11.0)), Ok(()));
        // Full: closes at 70 s.
        assert_eq!(l.check(short.as_ref(), None, s(12.0)), Err(58));
        assert_eq!(l.check(short.as_ref(), None, s(68.5)), Err(2), "rounded up");
        assert_eq!(l.check(short.as_ref(), None, s(69.999)), Err(1));
        // Refused requests are not counted; the window is over at exactly 70 s.
        assert_eq!(l.check(short.as_ref(), None, s(70.0)), Ok(()));
        assert_eq!(l.check(short.as_ref(), None, s(71.0)), Ok(()));
        assert_eq!(l.check(short.as_ref(), None, s(72.0)), Err(58));
    }

    #[test]
    fn daily_limit_and_both() {
        let short = Limit::parse_rate("10/60").unwrap();
        let daily = Limit::parse_daily("3").unwrap();
        let mut l = KeyLimiter::default();
        for i in 0..3 {
            assert_eq!(l.check(short.as_ref(), daily.as_ref(), s(i as f64)), Ok(()));
        }
        assert_eq!(
            l.check(short.as_ref(), daily.as_ref(), s(3.0)),
            Err(86_400 - 3)
        );
        // A short window that is also full does not shorten the wait.
        let short = Limit::parse_rate("1/60").unwrap();
        let mut l = KeyLimiter::default();
        assert_eq!(
            l.check(
                short.as_ref(),
                Limit::parse_daily("1").unwrap().as_ref(),
                s(0.0)
            ),
            Ok(())
        );
        assert_eq!(
            l.check(
                short.as_ref(),
                Limit::parse_daily("1").unwrap().as_ref(),
                s(0.5)
            ),
            Err(86_400)
        );
    }

    #[test]
    fn no_limits_never_refuse() {
        let mut l = KeyLimiter::default();
        for i in 0..1000 {
            assert_eq!(l.check(None, None, s(i as f64 / 1000.0)), Ok(()));
        }
    }
}
