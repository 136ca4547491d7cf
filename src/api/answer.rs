//! Parsing `{"env": {NAME: value}, "projectId", "count"}` straight into secret types.
//!
//! A hand-written visitor puts each value into a `SecretString` as it is read, rejects a value that is
//! not a string (naming the variable, never guessing a conversion) and a name given twice. It also
//! reads `projectId`, the project the answer was built from: an answer for another project (a cache
//! or a proxy mixing up answers) is refused, never injected. A missing `projectId` is accepted.

use crate::error::{Error, Result};
use crate::secret::SecretString;
use crate::vars::Fetched;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

pub fn parse_env_answer(body: &[u8], project: &str) -> Result<Fetched> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = AnswerSeed
        .deserialize(&mut de)
        .and_then(|a| de.end().map(|()| a));
    let problem = match parsed {
        Ok(Answer {
            project_id: Some(id),
            ..
        }) if id != project => {
            return Err(Error::new(format!(
                "the server answered with the variables of project {}, not of project {project} that r4-run asked for",
                shown_id(&id)
            ))
            .hint("a cache or a proxy between here and R4 may have mixed up answers: check --base-url / R4_BASE_URL and\nHTTPS_PROXY; if it persists, report it to R4 support"));
        }
        Ok(Answer {
            env: Some(mut vars),
            ..
        }) => {
            vars.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = vars.windows(2).find(|w| w[0].0 == w[1].0) {
                format!("names the variable {:?} twice", w[0].0)
            } else {
                return Ok(Fetched { vars });
            }
        }
        Ok(Answer { env: None, .. }) => "has no \"env\" object".to_owned(),
        Err(e) => describe(&e),
    };
    Err(Error::new(format!(
        "the answer for project {project} is not usable: it {problem}"
    ))
    .hint("check --base-url points at the R4 Machine API; if it does, report this to R4 support"))
}

/// Says what is wrong with the answer without quoting it: serde_json's own "invalid type" messages
/// can quote a string from the input, which may be a secret, so only our own messages pass through.
fn describe(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("(line {}, column {})", e.line(), e.column());
    match e.classify() {
        Category::Eof => format!("ends too early, as if cut off {at}"),
        Category::Syntax => format!("is not valid JSON {at}"),
        Category::Io => format!("could not be read {at}"),
        Category::Data => {
            let text = e.to_string();
            if OUR_MESSAGES.iter().any(|m| text.starts_with(m)) {
                text
            } else {
                format!("does not have the shape {{\"env\": {{NAME: \"value\"}}}} {at}")
            }
        }
    }
}

const OUR_MESSAGES: [&str; 3] = ["gives the variable ", "gives \"projectId\" ", "has two "];

/// A project id from the server, safe to print: it is hostile input, so everything but printable
/// ASCII is escaped (no terminal escape or direction override reaches the terminal), and it is cut
/// to a sane length.
fn shown_id(id: &str) -> String {
    const MAX_CHARS: usize = 100;
    let mut shown = String::from("\"");
    for (i, c) in id.chars().enumerate() {
        if i == MAX_CHARS {
            shown.push('…');
            break;
        }
        match c {
            '"' | '\\' => {
                shown.push('\\');
                shown.push(c);
            }
            ' '..='~' => shown.push(c),
            _ => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    shown.push('"');
    shown
}

struct Answer {
    env: Option<Vec<(String, SecretString)>>,
    project_id: Option<String>,
}

struct AnswerSeed;

impl<'de> DeserializeSeed<'de> for AnswerSeed {
    type Value = Answer;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Answer, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AnswerSeed {
    type Value = Answer;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with an \"env\" object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Answer, A::Error> {
        let mut env = None;
        let mut project_id = None;
        while let Some(key) = map.next_key::<KeyName>()? {
            match key.0.as_str() {
                "env" => {
                    if env.is_some() {
                        return Err(de::Error::custom("has two \"env\" fields"));
                    }
                    env = Some(map.next_value_seed(EnvSeed)?);
                }
                "projectId" => {
                    if project_id.is_some() {
                        return Err(de::Error::custom("has two \"projectId\" fields"));
                    }
                    project_id = Some(match map.next_value::<StringValue>()? {
                        StringValue::Str(id) => id.expose().to_owned(),
                        StringValue::Other(kind) => {
                            return Err(de::Error::custom(format_args!(
                                "gives \"projectId\" as {kind} instead of a string"
                            )))
                        }
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Answer { env, project_id })
    }
}

struct KeyName(String);

impl<'de> de::Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(KeyName)
    }
}
use serde::Deserialize;

struct EnvSeed;

impl<'de> DeserializeSeed<'de> for EnvSeed {
    type Value = Vec<(String, SecretString)>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EnvSeed {
    type Value = Vec<(String, SecretString)>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"env\" to be an object of NAME: \"value\" strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut vars = Vec::with_capacity(map.size_hint().unwrap_or(0).min(65_536));
        while let Some(name) = map.next_key::<String>()? {
            match map.next_value::<StringValue>()? {
                StringValue::Str(v) => vars.push((name, v)),
                StringValue::Other(kind) => {
                    return Err(de::Error::custom(format_args!(
                        "gives the variable {name:?} {kind} instead of a string"
                    )))
                }
            }
        }
        Ok(vars)
    }
}

/// A value that is a string (kept as a secret) or what it was instead (for the message).
enum StringValue {
    Str(SecretString),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for StringValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringValueVisitor)
    }
}

struct StringValueVisitor;

impl<'de> Visitor<'de> for StringValueVisitor {
    type Value = StringValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<StringValue, E> {
        Ok(StringValue::Str(SecretString::new(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<StringValue, E> {
        Ok(StringValue::Str(SecretString::new(v)))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<StringValue, E> {
        Ok(StringValue::Other("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<StringValue, E> {
        Ok(StringValue::Other("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<StringValue, E> {
        Ok(StringValue::Other("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<StringValue, E> {
        Ok(StringValue::Other("a number"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<StringValue, E> {
        Ok(StringValue::Other("null"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StringValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(StringValue::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StringValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(StringValue::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Fetched> {
        parse_env_answer(body.as_bytes(), "p1")
    }

    #[test]
    fn reads_the_documented_answer() {
        let f = parse(r#"{"env":{"B":"2","A":"x\ny\u0000"},"projectId":"p1","count":2}"#).unwrap();
        let got: Vec<_> = f
            .vars
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        assert_eq!(got, [("A", "x\ny\0"), ("B", "2")]);
    }

    #[test]
    fn a_non_string_value_names_the_variable() {
        let e = parse(r#"{"env":{"PORT":5432}}"#).unwrap_err();
        assert!(
            e.what().contains("\"PORT\" a number instead of a string"),
            "{e}"
        );
        let e = parse(r#"{"env":{"X":{"secret":"s3cret"}}}"#).unwrap_err();
        assert!(e.what().contains("\"X\" an object"), "{e}");
        assert!(!e.what().contains("s3cret"));
    }

    #[test]
    fn malformed_answers_are_errors_not_guesses() {
        for body in [
            "",
            "[]",
            "{}",
            r#"{"env":[]}"#,
            r#"{"env":"x"}"#,
            r#"{"env":{"A":"1"}} trailing"#,
            r#"{"env":{"A":"1","A":"2"}}"#,
            r#"{"env":{"A":"1"},"env":{}}"#,
            "<html>",
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }

    #[test]
    fn the_project_id_must_be_the_one_asked_for_when_given() {
        assert!(parse(r#"{"env":{"A":"1"}}"#).is_ok());
        assert!(parse(r#"{"env":{"A":"1"},"projectId":"p1"}"#).is_ok());
        let e = parse(r#"{"projectId":"p2\u001b[0m\u202e\"","env":{"A":"1"}}"#).unwrap_err();
        assert!(
            e.what()
                .contains(r#"of project "p2\u{1b}[0m\u{202e}\"", not of project p1"#),
            "{e}"
        );
        for body in [
            r#"{"env":{"A":"1"},"projectId":7}"#,
            r#"{"env":{"A":"1"},"projectId":null}"#,
            r#"{"env":{"A":"1"},"projectId":"p1","projectId":"p1"}"#,
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.what().contains("\"projectId\""), "{body}: {e}");
        }
        let long = format!(r#"{{"env":{{}},"projectId":"{}"}}"#, "x".repeat(10_000));
        assert!(parse(&long).unwrap_err().what().len() < 400);
    }

    #[test]
    fn errors_never_quote_values() {
        let e = parse(r#"{"env":{"A":"topsecret", "B": tru}}"#).unwrap_err();
        assert!(!e.what().contains("topsecret"), "{e}");
    }
}
