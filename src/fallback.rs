//! `--fallback PATH`: the last-known-good variables, encrypted at rest, for when the API cannot be
//! reached.
//!
//! File layout (all integers little-endian):
//!
//! ```text
//! 0   8   magic and format version: b"R4RUNFB\x01"
//! 8   16  salt (random per write)
//! 24  12  nonce (random per write)
//! 36  ..  ChaCha20-Poly1305 ciphertext of the payload, then its 16-byte tag
//! ```
//!
//! The key is HKDF-SHA256 of the API key's secret part, with the salt, and the info
//! `"r4-run fallback v1\0" ‖ project id`: the file is useless without the key, and a file written for
//! one project cannot be passed off as another's. The header and the project id are authenticated
//! as associated data. The payload is `written_at: u64 (unix seconds)`, `count: u32`, then per
//! variable `name_len: u32, name, value_len: u32, value`. Any change to any byte makes the file fail
//! to open as a whole: never a half-read environment.

use crate::api::Request;
use crate::error::{Error, Result};
use crate::secret::{ApiKey, SecretString};
use crate::vars::Fetched;
use crate::{verbose, warn};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"R4RUNFB\x01";
const SALT_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + SALT_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
const INFO: &[u8] = b"r4-run fallback v1\0";
/// A fallback file holds at most what one answer may (api::MAX_BODY_BYTES) plus framing.
const MAX_FILE_BYTES: u64 = 2 * crate::api::MAX_BODY_BYTES as u64;

/// Encrypts `fetched` for `project` under `key` and writes it atomically, mode 0600.
pub fn save(
    path: &Path,
    key: &ApiKey,
    project: &str,
    fetched: &Fetched,
    now: SystemTime,
) -> Result<()> {
    let shown = path.display();
    let rng = SystemRandom::new();
    let mut header = [0u8; HEADER_LEN];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    rng.fill(&mut header[MAGIC.len()..]).map_err(|_| {
        Error::new("cannot get random bytes from the system to encrypt the fallback file")
    })?;

    let payload_len = 12
        + fetched
            .vars
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>();
    let mut file = Zeroizing::new(Vec::with_capacity(HEADER_LEN + payload_len + TAG_LEN));
    file.extend_from_slice(&header);
    let written_at = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    file.extend_from_slice(&written_at.to_le_bytes());
    file.extend_from_slice(&(fetched.vars.len() as u32).to_le_bytes());
    for (name, value) in &fetched.vars {
        file.extend_from_slice(&(name.len() as u32).to_le_bytes());
        file.extend_from_slice(name.as_bytes());
        file.extend_from_slice(&(value.len() as u32).to_le_bytes());
        file.extend_from_slice(value.expose().as_bytes());
    }

    let sealing = file_key(key, project, &header)?;
    let (head, payload) = file.split_at_mut(HEADER_LEN);
    let tag = sealing
        .seal_in_place_separate_tag(nonce_of(head), aad(head, project), payload)
        .map_err(|_| Error::new(format!("cannot encrypt the fallback file {shown}")))?;
    file.extend_from_slice(tag.as_ref());

    crate::dotenv::write_atomic(path, &file).map_err(|e| {
        Error::new(format!("cannot write the fallback file {shown}: {e}"))
            .hint("check that its directory exists and is writable; an earlier fallback file is unchanged")
    })
}

/// `--fallback PATH` and its companions.
#[derive(Debug, Clone)]
pub struct Options {
    pub path: PathBuf,
    /// `--fallback-max-age`: refuse an older file.
    pub max_age: Option<Duration>,
    /// `--fallback-only`: never contact the API.
    pub only: bool,
}

/// The projects' variables from the API, merged in order (a later project wins a name clash);
/// with `--fallback`, saved after a good fetch, and used instead when the API cannot be reached (never
/// when it answered that the key or a project is wrong). One file holds the merged set of exactly
/// these projects, in this order.
pub fn fetch_or_fall_back(
    mut requests: Vec<Request<'_>>,
    fallback: Option<&Options>,
) -> Result<Fetched> {
    for request in &requests {
        crate::api::check_project_id(request.project)?;
    }
    let Some(key) = requests.first().map(|r| r.key) else {
        return Ok(Fetched::default());
    };
    // The fallback file is bound to the set of projects: one id, or the ids joined by commas.
    let ids: Vec<&str> = requests.iter().map(|r| r.project).collect();
    let project = ids.join(",");
    let project = project.as_str();
    let load = |fb: &Options| load(&fb.path, key, project, fb.max_age, SystemTime::now());
    let fb = match fallback {
        Some(fb) if fb.only => {
            let loaded = load(fb)?;
            verbose!(
                1,
                "using the fallback file {} ({} old; --fallback-only)",
                fb.path.display(),
                human(loaded.age)
            );
            return Ok(loaded.fetched);
        }
        other => other,
    };
    // With a file to fall back on, a fleet whose API is down starts from it at once.
    let give_up = fb.is_some_and(|fb| fb.path.exists());
    for request in &mut requests {
        request.give_up_when_unreachable = give_up;
    }
    let fetched = crate::api::fetch_all(&requests).map(|sets| {
        let (merged, overrides) = Fetched::merge_in_order(sets);
        for o in overrides {
            verbose!(
                1,
                "{} from project {} overrides the one from project {}",
                crate::report::shown(&o.name),
                ids[o.winner],
                ids[o.overridden]
            );
        }
        merged
    });
    match (fetched, fb) {
        (Ok(fetched), Some(fb)) => {
            match save(&fb.path, key, project, &fetched, SystemTime::now()) {
                Ok(()) => verbose!(1, "saved the fallback file {}", fb.path.display()),
                Err(e) => warn!("{e}; the run goes on without refreshing it"),
            }
            Ok(fetched)
        }
        (Err(e), Some(fb)) if e.is_transient() => match load(fb) {
            Ok(loaded) => {
                warn!(
                    "{}; using the fallback file {}, written {} ago",
                    e.what(),
                    fb.path.display(),
                    human(loaded.age)
                );
                Ok(loaded.fetched)
            }
            Err(fe) => Err(Error::new(format!(
                "{} (and no usable fallback: {})",
                e.what(),
                fe.what()
            ))
            .hint(e.hint_text().unwrap_or("try again later").to_owned())),
        },
        (result, _) => result,
    }
}

/// A fallback file that opened: the variables and how old they are.
#[derive(Debug)]
pub struct Loaded {
    pub fetched: Fetched,
    pub age: Duration,
}

/// Reads and decrypts the fallback file for `project`; refuses one older than `max_age`.
pub fn load(
    path: &Path,
    key: &ApiKey,
    project: &str,
    max_age: Option<Duration>,
    now: SystemTime,
) -> Result<Loaded> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        Error::new(format!("cannot open the fallback file {shown}: {e}"))
            .hint("a fallback file is written by a run that reached the API with the same --fallback PATH")
    })?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::new(format!("cannot read the fallback file {shown}: {e}")))?;
    let damaged = || {
        Error::new(format!(
            "the fallback file {shown} cannot be opened: it was written with another API key or for another project, or it was changed or cut short"
        ))
        .hint("delete it; the next run that reaches the API writes a new one")
    };
    if bytes.len() as u64 > MAX_FILE_BYTES
        || bytes.len() < HEADER_LEN + TAG_LEN
        || !bytes.starts_with(MAGIC)
    {
        return Err(damaged());
    }
    let (head, sealed) = bytes.split_at_mut(HEADER_LEN);
    let opening = file_key(key, project, head)?;
    let payload = opening
        .open_in_place(nonce_of(head), aad(head, project), sealed)
        .map_err(|_| damaged())?;
    let (written_at, fetched) = parse_payload(payload).ok_or_else(damaged)?;

    let written = UNIX_EPOCH + Duration::from_secs(written_at);
    let age = now.duration_since(written).unwrap_or_default();
    if let Some(max) = max_age {
        if age > max {
            return Err(Error::new(format!(
                "the fallback file {shown} is {} old, more than --fallback-max-age {} allows",
                human(age),
                human(max)
            ))
            .hint(
                "reach the API once to refresh it, or allow an older file with --fallback-max-age",
            ));
        }
    }
    Ok(Loaded { fetched, age })
}

fn parse_payload(payload: &[u8]) -> Option<(u64, Fetched)> {
    let mut rest = payload;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let written_at = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut vars = Vec::with_capacity(count.min(payload.len() / 8));
    for _ in 0..count {
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let name = std::str::from_utf8(take(len)?).ok()?.to_owned();
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let value = SecretString::new(std::str::from_utf8(take(len)?).ok()?.to_owned());
        vars.push((name, value));
    }
    if !take(0).is_some_and(|_| rest.is_empty()) {
        return None;
    }
    vars.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Some((written_at, Fetched { vars }))
}

fn file_key(key: &ApiKey, project: &str, header: &[u8]) -> Result<LessSafeKey> {
    let salt = hkdf::Salt::new(
        hkdf::HKDF_SHA256,
        &header[MAGIC.len()..MAGIC.len() + SALT_LEN],
    );
    let prk = salt.extract(key.expose_secret_part().as_bytes());
    let info = [INFO, project.as_bytes()];
    let okm = prk
        .expand(&info, &CHACHA20_POLY1305)
        .map_err(|_| Error::new("cannot derive the fallback file's key"))?;
    Ok(LessSafeKey::new(UnboundKey::from(okm)))
}

fn nonce_of(header: &[u8]) -> Nonce {
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&header[MAGIC.len() + SALT_LEN..HEADER_LEN]);
    Nonce::assume_unique_for_key(nonce)
}

/// The header and the project id, authenticated but not encrypted.
fn aad(header: &[u8], project: &str) -> Aad<Vec<u8>> {
    let mut data = header.to_vec();
    data.extend_from_slice(project.as_bytes());
    Aad::from(data)
}

/// `--fallback-max-age`: plain seconds, or a number with a unit `s`, `m`, `h` or `d` (`90`, `15m`, `7d`).
pub fn parse_max_age(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => f64::NAN,
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && scale.is_finite() && n * scale < 1e12 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(
            Error::new(format!("--fallback-max-age {text:?} is not a duration"))
                .hint("give seconds or a number with s, m, h or d: 3600, 90m, 12h, 7d"),
        ),
    }
}

/// An age as people say it: `42s`, `17m`, `5h 3m`, `2d 4h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> ApiKey {
        ApiKey::parse(SecretString::new(k.to_owned())).unwrap()
    }

    fn sample() -> Fetched {
        Fetched {
            vars: vec![
                ("A".into(), SecretString::new("first\nline".into())),
                ("B".into(), SecretString::new(String::new())),
                ("C".into(), SecretString::new("ünïcode ✓".into())),
            ],
        }
    }

    fn flat(f: &Fetched) -> Vec<(String, String)> {
        f.vars
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect()
    }

    #[test]
    fn round_trips_and_reports_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        let k = key("rk_a.secret1");
        let then = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        save(&path, &k, "p1", &sample(), then).unwrap();
        let loaded = load(&path, &k, "p1", None, then + Duration::from_secs(90)).unwrap();
        assert_eq!(flat(&loaded.fetched), flat(&sample()));
        assert_eq!(loaded.age, Duration::from_secs(90));
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"first\nline"));
    }

    #[test]
    fn refuses_another_key_project_tampering_truncation_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fb");
        let k = key("rk_a.secret1");
        let now = SystemTime::now();
        save(&path, &k, "p1", &sample(), now).unwrap();
        assert!(load(&path, &key("rk_a.secret2"), "p1", None, now).is_err());
        assert!(load(&path, &k, "p2", None, now).is_err());
        let good = std::fs::read(&path).unwrap();
        for i in [0, 9, 30, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                load(&path, &k, "p1", None, now).is_err(),
                "flipped byte {i}"
            );
        }
        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(load(&path, &k, "p1", None, now).is_err());
        std::fs::write(&path, &good).unwrap();
        let later = now + Duration::from_secs(7200);
        let e = load(&path, &k, "p1", Some(Duration::from_secs(3600)), later).unwrap_err();
        assert!(e.what().contains("2h 0m old"), "{e}");
        assert!(load(&path, &k, "p1", Some(Duration::from_secs(3 * 3600)), later).is_ok());
    }

    #[test]
    fn max_age_syntax() {
        assert_eq!(parse_max_age("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_max_age("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_max_age("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["", "0", "-1h", "5w", "h", "1e30d"] {
            assert!(parse_max_age(bad).is_err(), "{bad}");
        }
    }
}
