//! Routing and handlers: auth and rate limit first, then the two Machine API routes.
//!
//! - `GET /api/v1/machine/vault/env/{projectId}`: the project's env answer, built at load time.
//! - `GET /api/v1/machine/project`: the projects the key may see, built at load time.
//!
//! Anything outside `/api/v1/machine` is 404 `not_found` without authentication; inside it, a
//! request is authenticated and counted against its key's limits before it is routed.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use hyper::{Method, Request, Response, StatusCode};

use crate::auth::{request_key, KeyLimiter, Limit};
use crate::data::Data;
use crate::errors::{json, project_not_found, Body, Canned};

pub const PREFIX: &str = "/api/v1/machine";

/// Everything a request needs; shared by all connections of the single-threaded server.
pub struct State {
    /// What is served. Replaced whole when it changes (a data file edited while serving,
    /// `Emulator::set_project_env`); a request sees one version from start to end.
    data: RwLock<Arc<Data>>,
    /// The data file, re-read when its modification time changes.
    source: Option<DataFile>,
    pub short_limit: Option<Limit>,
    pub daily_limit: Option<Limit>,
    pub log: bool,
    started: Instant,
    /// One limiter per key, indexed like `data.key_list`.
    limiters: Mutex<Vec<KeyLimiter>>,
    canned: Canned,
}

impl State {
    pub fn new(
        data: Data,
        short_limit: Option<Limit>,
        daily_limit: Option<Limit>,
        log: bool,
    ) -> State {
        let limiters = Mutex::new(vec![KeyLimiter::default(); data.key_list.len()]);
        State {
            data: RwLock::new(Arc::new(data)),
            source: None,
            short_limit,
            daily_limit,
            log,
            started: Instant::now(),
            limiters,
            canned: Canned::new(),
        }
    }

    /// Serves `path`, and re-reads it whenever its modification time changes (checked at each
    /// request): an edited data file is served from the next request on, for trying `--watch`.
    pub fn reloading_from(mut self, path: PathBuf) -> State {
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        self.source = Some(DataFile {
            path,
            modified: Mutex::new(modified),
        });
        self
    }

    /// The data being served now.
    pub fn data(&self) -> Arc<Data> {
        if let Some(source) = &self.source {
            source.reload_if_changed(self);
        }
        Arc::clone(&self.data.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Serves `data` from the next request on. Keys keep their rate-limit windows by position.
    pub fn replace(&self, data: Data) {
        let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
        limiters.resize(data.key_list.len(), KeyLimiter::default());
        drop(limiters);
        *self.data.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(data);
    }

    /// Answer one request; never panics.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Body> {
        let (response, access_id) = self.route(req);
        if self.log {
            eprintln!(
                "{} {} {} {}",
                req.method(),
                req.uri().path(),
                response.status().as_u16(),
                access_id.as_deref().unwrap_or("-")
            );
        }
        response
    }

    fn route<B>(&self, req: &Request<B>) -> (Response<Body>, Option<String>) {
        let Some(rest) = req.uri().path().strip_prefix(PREFIX) else {
            return (self.canned.not_found(), None);
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return (self.canned.not_found(), None);
        }

        // Authenticate: an unknown or archived key is refused like a missing one.
        let data = self.data();
        let key_index = request_key(req.headers())
            .and_then(|key| data.keys.get(key).copied())
            .filter(|&i| !data.key_list[i].archived);
        let Some(key_index) = key_index else {
            return (self.canned.unauthorized(), None);
        };
        let key = &data.key_list[key_index];
        let access_id = Some(key.access_id.clone());

        // Count the request against the key's limits, before routing.
        if self.short_limit.is_some() || self.daily_limit.is_some() {
            let now = self.started.elapsed();
            let mut limiters = self.limiters.lock().unwrap_or_else(|e| e.into_inner());
            let verdict = limiters[key_index].check(
                self.short_limit.as_ref(),
                self.daily_limit.as_ref(),
                now,
            );
            if let Err(retry_after) = verdict {
                return (self.canned.rate_limited(retry_after), access_id);
            }
        }

        let response = if rest == "/project" {
            if req.method() != Method::GET {
                self.canned.method_not_allowed()
            } else {
                json(StatusCode::OK, key.project_list.clone())
            }
        } else if let Some(raw_id) = rest.strip_prefix("/vault/env/") {
            if raw_id.is_empty() || raw_id.contains('/') {
                self.canned.not_found()
            } else if req.method() != Method::GET {
                self.canned.method_not_allowed()
            } else {
                match percent_decode(raw_id) {
                    None => self.canned.not_found(),
                    Some(id) => match data.projects.get(&id) {
                        Some(p) if !p.archived && key.visibility.allows(&id) => {
                            json(StatusCode::OK, p.env_answer.clone())
                        }
                        _ => project_not_found(&id),
                    },
                }
            }
        } else {
            self.canned.not_found()
        };
        (response, access_id)
    }
}

/// A data file being served, and the modification time of the version served.
struct DataFile {
    path: PathBuf,
    modified: Mutex<Option<SystemTime>>,
}

impl DataFile {
    fn reload_if_changed(&self, state: &State) {
        let now = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut seen = self.modified.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_none() || now == *seen {
            return;
        }
        *seen = now;
        // A file caught half-written, or edited into nonsense, leaves the last good data served.
        match std::fs::read(&self.path).map_err(|e| e.to_string()).and_then(|t| Data::from_json(&t)) {
            Ok(data) => {
                state.replace(data);
                if state.log {
                    eprintln!("r4-emulator: reloaded {}", self.path.display());
                }
            }
            Err(e) => eprintln!(
                "r4-emulator: warning: {} changed but is not usable ({e}); still serving the last good data",
                self.path.display()
            ),
        }
    }
}

/// Strict percent-decoding of one path segment: every `%` must start a two-digit hex escape and the
/// result must be UTF-8. `+` is left alone (it means a space only in query strings).
pub fn percent_decode(segment: &str) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn state(short: &str) -> State {
        let data = Data::from_json(
            br#"{"keys":[{"key":"rk_a.s","projects":["p1","p/2"]},{"key":"rk_old.s","archived":true}],
                "projects":[{"id":"p1","env":{"A":"1"}},{"id":"p/2"},{"id":"p3"},
                            {"id":"gone","archived":true}]}"#,
        )
        .unwrap();
        State::new(data, Limit::parse_rate(short).unwrap(), None, false)
    }

    fn get(state: &State, path: &str, key: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut builder = Request::get(path);
        if let Some(key) = key {
            builder = builder.header("x-api-key", key);
        }
        let response = state.handle(&builder.body(()).unwrap());
        let status = response.status();
        let body = futures_body(response);
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn futures_body(response: Response<Body>) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(response.into_body().collect())
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    fn code(v: &serde_json::Value) -> &str {
        v["error"]["code"].as_str().unwrap()
    }

    #[test]
    fn routes() {
        let st = state("off");
        let env = "/api/v1/machine/vault/env/";
        let (s, v) = get(&st, &format!("{env}p1"), Some("rk_a.s"));
        assert_eq!((s, v["count"].as_u64()), (StatusCode::OK, Some(1)));
        let (s, v) = get(&st, &format!("{env}p%2F2"), Some("rk_a.s"));
        assert_eq!((s, v["projectId"].as_str()), (StatusCode::OK, Some("p/2")));
        for id in ["p3", "gone", "nope", "%22q%22"] {
            let (s, v) = get(&st, &format!("{env}{id}"), Some("rk_a.s"));
            assert_eq!(
                (s, code(&v)),
                (StatusCode::NOT_FOUND, "project_not_found"),
                "{id}"
            );
        }
        let (_, v) = get(&st, &format!("{env}%22q%22"), Some("rk_a.s"));
        assert_eq!(
            v["error"]["message"],
            "The project with ID \"\"q\"\" was not found or you do not have access to it."
        );
        for path in [
            &format!("{env}%zz")[..],
            &format!("{env}%ff"),
            env,
            &format!("{env}p1/x"),
            "/api/v1/machine",
            "/api/v1/machine/",
            "/api/v1/machine/vault",
        ] {
            let (s, v) = get(&st, path, Some("rk_a.s"));
            assert_eq!(
                (s, code(&v)),
                (StatusCode::NOT_FOUND, "not_found"),
                "{path}"
            );
        }
        // Outside the prefix: 404 even without a key.
        for path in ["/", "/vault/env/p1", "/api/v1/machinery/project"] {
            let (s, v) = get(&st, path, None);
            assert_eq!(
                (s, code(&v)),
                (StatusCode::NOT_FOUND, "not_found"),
                "{path}"
            );
        }
        let (s, v) = get(&st, "/api/v1/machine/project", Some("rk_a.s"));
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["projects"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn auth() {
        let st = state("off");
        for key in [None, Some("rk_a.wrong"), Some("rk_old.s")] {
            let (s, v) = get(&st, "/api/v1/machine/project", key);
            assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
        }
        let req = Request::post("/api/v1/machine/project")
            .header("authorization", "ApiKey rk_a.s")
            .body(())
            .unwrap();
        let r = st.handle(&req);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "GET");
    }

    #[test]
    fn rate_limit_before_routing() {
        let st = state("2/60");
        assert_eq!(
            get(&st, "/api/v1/machine/nope", Some("rk_a.s")).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&st, "/api/v1/machine/project", Some("rk_a.s")).0,
            StatusCode::OK
        );
        let (s, v) = get(&st, "/api/v1/machine/project", Some("rk_a.s"));
        assert_eq!(
            (s, code(&v)),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded")
        );
        // Unauthenticated requests are not counted against anyone.
        assert_eq!(
            get(&st, "/api/v1/machine/project", None).0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[test]
    fn decode() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%G0"), None);
        assert_eq!(percent_decode("%C3"), None);
    }
}
