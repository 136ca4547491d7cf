//! The emulator's data: API keys and projects, loaded once from a JSON file (or the built-in demo),
//! with every success answer serialized once at load time.
//!
//! # Data file schema
//!
//! ```json
//! {
//!   "keys": [
//!     { "key": "rk_abc.secretpart", "projects": ["p1"], "archived": false },
//!     { "key": "rk_all.othersecret", "projects": "*" }
//!   ],
//!   "projects": [
//!     { "id": "p1", "name": "Production", "env": { "NAME": "value" }, "archived": false }
//!   ]
//! }
//! ```
//!
//! - `keys[].key` (required): the whole API key `{accessKey}.{secret}`; both halves non-empty and made
//!   of visible ASCII (as an HTTP header can carry it). Keys must be unique.
//! - `keys[].projects` (default `"*"`): the ids the key may see, or `"*"` for every project. An id
//!   that names no project is allowed (the key then gets `project_not_found` for it).
//! - `keys[].archived` (default `false`): an archived key is refused with 401 like an unknown one.
//! - `projects[].id` (required, unique, non-empty): any string; it is percent-decoded from the path.
//! - `projects[].name` (default: the id): shown by `GET /project`.
//! - `projects[].env` (default `{}`): ANY JSON value, served as written in the file: every token
//!   byte for byte, in the file's order, only the whitespace between tokens removed (non-string
//!   values, nested objects, duplicate names, `\u` escapes and non-objects included), so that
//!   clients' error paths can be exercised. `count` in the answer is the number of members written in `env`
//!   when it is an object (duplicates counted), else 0.
//! - `projects[].archived` (default `false`): an archived project is hidden from `GET /project` and
//!   answers `project_not_found`.
//!
//! Unknown fields are rejected, so a typo in the file is an error rather than a silent default.

use std::collections::{HashMap, HashSet};
use std::fmt;

use hyper::body::Bytes;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The built-in demo data (`--demo`).
pub const DEMO_KEY: &str = "rk_demo.demo-secret-do-not-use";
pub const DEMO_PROJECT: &str = "demo";
pub const DEMO_JSON: &str = r#"{
  "keys": [ { "key": "rk_demo.demo-secret-do-not-use", "projects": "*" } ],
  "projects": [
    {
      "id": "demo",
      "name": "Demo project",
      "env": {
        "DATABASE_URL": "postgres://app:s3cret@db.internal:5432/app?sslmode=require",
        "STRIPE_API_KEY": "sk_test_51DemoOnlyNotARealKey0000000000",
        "REDIS_URL": "redis://cache.internal:6379/0",
        "PORT": "8080",
        "GREETING": "say \"hello\" for $5 (it's 'quoted')",
        "TLS_KEY": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDemoDemoDemo\nNotARealKeyJustSomeBase64LookingTextForTheDemoOnly0123456789ab\n-----END PRIVATE KEY-----\n"
      }
    },
    {
      "id": "demo-archived",
      "name": "Archived demo project",
      "env": { "OLD_TOKEN": "gone" },
      "archived": true
    }
  ]
}"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileData {
    #[serde(default)]
    keys: Vec<FileKey>,
    #[serde(default)]
    projects: Vec<FileProject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    key: String,
    #[serde(default)]
    projects: Visibility,
    #[serde(default)]
    archived: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProject {
    id: String,
    name: Option<String>,
    env: Option<Box<RawValue>>,
    #[serde(default)]
    archived: bool,
}

/// One entry of the `GET /project` answer, in the documented field order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedProject<'a> {
    id: &'a str,
    name: &'a str,
    external_id: Option<&'a str>,
    description: Option<&'a str>,
    vaults_count: u32,
    licenses_count: u32,
    license_groups_count: u32,
    archived_at: Option<&'a str>,
}

#[derive(Serialize)]
struct ProjectList<'a> {
    projects: Vec<&'a ListedProject<'a>>,
}

/// Which projects a key may see.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Visibility {
    #[default]
    All,
    Only(HashSet<String>),
}

impl<'de> Deserialize<'de> for Visibility {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Star(String),
            List(Vec<String>),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::Star(s)) if s == "*" => Ok(Visibility::All),
            Ok(Raw::List(ids)) => Ok(Visibility::Only(ids.into_iter().collect())),
            _ => Err(de::Error::custom(
                r#""projects" must be "*" or an array of project ids"#,
            )),
        }
    }
}

impl Visibility {
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Visibility::All => true,
            Visibility::Only(ids) => ids.contains(id),
        }
    }
}

/// One API key, ready to serve.
#[derive(Clone)]
pub struct Key {
    /// The public half, before the dot: the only part ever logged.
    pub access_id: String,
    pub visibility: Visibility,
    pub archived: bool,
    /// The `GET /project` answer for this key.
    pub project_list: Bytes,
}

/// One project, ready to serve.
#[derive(Clone)]
pub struct Project {
    pub archived: bool,
    /// The `GET /vault/env/{id}` answer.
    pub env_answer: Bytes,
}

/// Everything the emulator serves. Keys are indexed by the whole key string.
#[derive(Clone)]
pub struct Data {
    pub keys: HashMap<String, usize>,
    pub key_list: Vec<Key>,
    pub projects: HashMap<String, Project>,
}

impl Data {
    /// Gives project `id` these variables (a JSON object of strings, or anything a data file's `env`
    /// may hold); the project must exist.
    pub fn set_env(&mut self, id: &str, env: &serde_json::Value) -> Result<(), String> {
        let Some(project) = self.projects.get_mut(id) else {
            return Err(format!("no project {id:?}"));
        };
        let env = serde_json::to_string(env).map_err(|e| e.to_string())?;
        let count = count_members(&env).map_err(|e| format!("project {id:?}: {e}"))?;
        let id_json = serde_json::to_string(id).map_err(|e| e.to_string())?;
        project.env_answer = Bytes::from(format!(
            r#"{{"env":{env},"projectId":{id_json},"count":{count}}}"#
        ));
        Ok(())
    }

    pub fn demo() -> Data {
        Data::from_json(DEMO_JSON.as_bytes()).expect("the built-in demo data is valid")
    }

    /// Parse and check a data file, and build every success answer.
    pub fn from_json(text: &[u8]) -> Result<Data, String> {
        let file: FileData = serde_json::from_slice(text).map_err(|e| e.to_string())?;

        let mut projects = HashMap::new();
        let mut listed = Vec::new();
        for (i, p) in file.projects.iter().enumerate() {
            if p.id.is_empty() {
                return Err(format!("projects[{i}]: \"id\" is empty"));
            }
            let env = minify(p.env.as_deref().map_or("{}", RawValue::get));
            let count = count_members(&env).map_err(|e| format!("project {:?}: {e}", p.id))?;
            let id_json = serde_json::to_string(&p.id).map_err(|e| e.to_string())?;
            let env_answer = format!(r#"{{"env":{env},"projectId":{id_json},"count":{count}}}"#);
            let project = Project {
                archived: p.archived,
                env_answer: Bytes::from(env_answer),
            };
            if projects.insert(p.id.clone(), project).is_some() {
                return Err(format!("project id {:?} appears twice", p.id));
            }
            if !p.archived {
                listed.push(ListedProject {
                    id: &p.id,
                    name: p.name.as_deref().unwrap_or(&p.id),
                    external_id: None,
                    description: None,
                    vaults_count: 1,
                    licenses_count: 0,
                    license_groups_count: 0,
                    archived_at: None,
                });
            }
        }

        let mut keys = HashMap::new();
        let mut key_list = Vec::new();
        for (i, k) in file.keys.into_iter().enumerate() {
            let access_id = check_key(&k.key).map_err(|e| format!("keys[{i}]: {e}"))?;
            let visible: Vec<&ListedProject> = listed
                .iter()
                .filter(|p| k.visibility_allows(p.id))
                .collect();
            let project_list = serde_json::to_string(&ProjectList { projects: visible })
                .map_err(|e| e.to_string())?;
            if keys.insert(k.key, key_list.len()).is_some() {
                return Err(format!("keys[{i}]: key {access_id}.… appears twice"));
            }
            key_list.push(Key {
                access_id,
                visibility: k.projects,
                archived: k.archived,
                project_list: Bytes::from(project_list),
            });
        }

        Ok(Data {
            keys,
            key_list,
            projects,
        })
    }
}

impl FileKey {
    fn visibility_allows(&self, id: &str) -> bool {
        self.projects.allows(id)
    }
}

/// Check a key's shape; return its access id (the part before the first dot).
fn check_key(key: &str) -> Result<String, String> {
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("\"key\" must be visible ASCII, without spaces".into());
    }
    match key.split_once('.') {
        Some((access, secret)) if !access.is_empty() && !secret.is_empty() => Ok(access.into()),
        _ => Err("\"key\" must be ACCESSKEY.SECRET with both parts non-empty".into()),
    }
}

/// Remove the insignificant whitespace of valid JSON text, leaving every token byte for byte.
fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
            in_string = c == '"';
        }
    }
    out
}

/// The number of members written in a JSON object (duplicates included); 0 for any other value.
fn count_members(raw: &str) -> Result<usize, String> {
    struct Counter;
    impl<'de> Visitor<'de> for Counter {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(0)
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
    }
    struct Count(usize);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Counter).map(Count)
        }
    }
    serde_json::from_str::<Count>(raw)
        .map(|c| c.0)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(data: &Data, id: &str) -> serde_json::Value {
        serde_json::from_slice(&data.projects[id].env_answer).unwrap()
    }

    #[test]
    fn demo_loads() {
        let data = Data::demo();
        let v = answer(&data, DEMO_PROJECT);
        assert_eq!(v["projectId"], DEMO_PROJECT);
        assert_eq!(v["count"], v["env"].as_object().unwrap().len());
        assert!(v["env"]["TLS_KEY"].as_str().unwrap().contains('\n'));
        let key = &data.key_list[data.keys[DEMO_KEY]];
        assert_eq!(key.access_id, "rk_demo");
        let list: serde_json::Value = serde_json::from_slice(&key.project_list).unwrap();
        assert_eq!(
            list["projects"].as_array().unwrap().len(),
            1,
            "archived one hidden"
        );
        assert_eq!(list["projects"][0]["name"], "Demo project");
        assert_eq!(list["projects"][0]["archivedAt"], serde_json::Value::Null);
    }

    #[test]
    fn env_is_served_verbatim() {
        let text = br#"{"projects":[{"id":"p\"1","env":{"B":1,"A":[true,null],"B":"x"}}]}"#;
        let data = Data::from_json(text).unwrap();
        let body = std::str::from_utf8(&data.projects["p\"1"].env_answer).unwrap();
        assert_eq!(
            body,
            r#"{"env":{"B":1,"A":[true,null],"B":"x"},"projectId":"p\"1","count":3}"#
        );
    }

    #[test]
    fn non_object_env_counts_zero_and_missing_env_is_empty() {
        let text = br#"{"projects":[{"id":"a","env":"str"},{"id":"b"}]}"#;
        let data = Data::from_json(text).unwrap();
        assert_eq!(answer(&data, "a")["count"], 0);
        assert_eq!(answer(&data, "a")["env"], "str");
        assert_eq!(answer(&data, "b")["env"], serde_json::json!({}));
    }

    #[test]
    fn visibility_and_defaults() {
        let text = br#"{"keys":[{"key":"rk_a.s","projects":["p1"]},{"key":"rk_b.s"}],
            "projects":[{"id":"p1"},{"id":"p2","name":"Two"}]}"#;
        let data = Data::from_json(text).unwrap();
        let a = &data.key_list[data.keys["rk_a.s"]];
        let b = &data.key_list[data.keys["rk_b.s"]];
        assert!(a.visibility.allows("p1") && !a.visibility.allows("p2"));
        assert_eq!(b.visibility, Visibility::All);
        let list: serde_json::Value = serde_json::from_slice(&a.project_list).unwrap();
        assert_eq!(list["projects"][0]["name"], "p1");
        assert_eq!(list["projects"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn rejects_bad_data() {
        for bad in [
            &br#"{"keys":[{"key":"nodot"}]}"#[..],
            br#"{"keys":[{"key":".secret"}]}"#,
            br#"{"keys":[{"key":"rk_a."}]}"#,
            br#"{"keys":[{"key":"rk_a.has space"}]}"#,
            br#"{"keys":[{"key":"rk_a.s"},{"key":"rk_a.s"}]}"#,
            br#"{"keys":[{"key":"rk_a.s","projects":"p1"}]}"#,
            br#"{"projects":[{"id":"p"},{"id":"p"}]}"#,
            br#"{"projects":[{"id":""}]}"#,
            br#"{"projects":[{"id":"p","nmae":"typo"}]}"#,
            br#"{"keys":[],"extra":1}"#,
            br#"not json"#,
        ] {
            assert!(
                Data::from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn minify_keeps_tokens() {
        assert_eq!(
            minify("{ \"a b\" : [ 1.50 , \"x\\\" y\" ] ,\n\t\"c\":1e3 }"),
            "{\"a b\":[1.50,\"x\\\" y\"],\"c\":1e3}"
        );
    }

    #[test]
    fn project_list_field_order() {
        let data = Data::demo();
        let list = &data.key_list[0].project_list;
        assert_eq!(
            std::str::from_utf8(list).unwrap(),
            r#"{"projects":[{"id":"demo","name":"Demo project","externalId":null,"description":null,"vaultsCount":1,"licensesCount":0,"licenseGroupsCount":0,"archivedAt":null}]}"#
        );
    }

    #[test]
    fn check_key_returns_access_id() {
        assert_eq!(check_key("rk_abc.def.ghi").unwrap(), "rk_abc");
    }
}
