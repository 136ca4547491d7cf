//! Which proxy, if any, the request goes through. r4-run decides this itself, from the usual
//! variables and with the rules reqwest applies, instead of letting reqwest read them: knowing that a
//! proxy is in use is what lets a connect failure be told apart as the proxy's.
//!
//! - Only an `https://` base goes through a proxy: plain http is only ever to loopback, and a proxy
//!   (possibly across the network) would see the key in clear.
//! - The proxy: `HTTPS_PROXY`, else `https_proxy`, else `ALL_PROXY`, else `all_proxy` (an empty value is
//!   unset). `host:port` without a scheme means `http://host:port`; `http://` and `https://` proxies are
//!   spoken to, anything else (`socks5://`) is refused with a clear error rather than ignored.
//! - `NO_PROXY` (else `no_proxy`): comma-separated entries; `*` matches every host; an IP address or a
//!   CIDR range (`10.0.0.0/8`, `fd00::/8`) matches an IP host; any other entry is a domain that matches
//!   itself and its subdomains, with or without a leading dot (`example.com` = `.example.com`), without
//!   regard to case.
//! - As reqwest does, no proxy is used in a CGI script (`REQUEST_METHOD` set), where a client's
//!   `Proxy:` header would arrive as `HTTP_PROXY`.

use crate::error::{Error, Result};
use reqwest::Url;
use std::ffi::OsString;
use std::net::IpAddr;

/// The proxy an `https://` request goes through.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// The URL as given, credentials and all: only ever handed to reqwest.
    url: Url,
    /// `scheme://host:port`: what messages and `-v` show (never the credentials).
    pub shown: String,
    /// The variable it came from.
    pub from: &'static str,
}

impl Proxy {
    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// What was decided, for `-v`.
#[derive(Debug)]
pub enum Decision {
    Direct,
    /// A proxy is set, but NO_PROXY (or no_proxy) exempts the host.
    Exempted {
        by: &'static str,
    },
    Via(Proxy),
}

const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];

/// Decides for `target`, reading variables through `env`.
pub fn decide(target: &Url, env: impl Fn(&str) -> Option<OsString>) -> Result<Decision> {
    if target.scheme() != "https" || env("REQUEST_METHOD").is_some() {
        return Ok(Decision::Direct);
    }
    let Some((from, value)) = first_set(&PROXY_VARS, &env)? else {
        return Ok(Decision::Direct);
    };
    if let (Some(host), Some((by, list))) = (target.host(), first_set(&NO_PROXY_VARS, &env)?) {
        if no_proxy_matches(&list, &host) {
            return Ok(Decision::Exempted { by });
        }
    }
    parse_proxy(&value, from).map(Decision::Via)
}

/// The first of `names` that is set to something other than blanks.
fn first_set(
    names: &[&'static str],
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<Option<(&'static str, String)>> {
    for &name in names {
        let Some(value) = env(name) else { continue };
        let Ok(value) = value.into_string() else {
            return Err(Error::new(format!("{name} is not valid UTF-8"))
                .hint(format!("fix or unset {name}")));
        };
        if !value.trim().is_empty() {
            return Ok(Some((name, value.trim().to_owned())));
        }
    }
    Ok(None)
}

fn parse_proxy(value: &str, from: &'static str) -> Result<Proxy> {
    // The value is not quoted in messages: it may hold a password.
    let bad = |why: &str| {
        Error::new(format!("{from} is not a usable proxy URL: {why}")).hint(format!(
            "set {from} to http://HOST:PORT (or http://USER:PASSWORD@HOST:PORT), or unset it"
        ))
    };
    let with_scheme = if value.contains("://") {
        value.to_owned()
    } else {
        format!("http://{value}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other if other.starts_with("socks") => {
            return Err(bad(&format!(
                "it names a {other} proxy, and r4-run speaks only to http:// and https:// proxies"
            )))
        }
        other => return Err(bad(&format!("the scheme {other}:// is not a proxy's"))),
    }
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err(bad("it names no host"));
    };
    let port = url.port_or_known_default().unwrap_or(80);
    let shown = format!("{}://{host}:{port}", url.scheme());
    Ok(Proxy { url, shown, from })
}

/// Whether a NO_PROXY list exempts `host`.
pub fn no_proxy_matches(list: &str, host: &url::Host<&str>) -> bool {
    let ip = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
        url::Host::Domain(_) => None,
    };
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            match (ip, host) {
                (Some(ip), _) => ip_entry_matches(entry, ip),
                (None, url::Host::Domain(domain)) => domain_entry_matches(entry, domain),
                (None, _) => false,
            }
        })
}

/// `entry` is an address (`10.1.2.3`, `::1`, `[::1]`) or a range (`10.0.0.0/8`).
fn ip_entry_matches(entry: &str, ip: IpAddr) -> bool {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, len)) => match len.parse::<u8>() {
            Ok(len) => (addr, Some(len)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let Ok(net) = addr.parse::<IpAddr>() else {
        return false;
    };
    let (ip, net, bits): (u128, u128, u8) = match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => (
            u128::from(u32::from(ip)) << 96,
            u128::from(u32::from(net)) << 96,
            32,
        ),
        (IpAddr::V6(ip), IpAddr::V6(net)) => (u128::from(ip), u128::from(net), 128),
        _ => return false,
    };
    let len = prefix.unwrap_or(bits);
    if len > bits {
        return false;
    }
    // The address sits in the top bits (a v4 one shifted up), so the mask counts from the top.
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    ip & mask == net & mask
}

/// `entry` (`example.com` or `.example.com`) matches the domain itself and its subdomains.
fn domain_entry_matches(entry: &str, domain: &str) -> bool {
    let entry = entry.strip_prefix('.').unwrap_or(entry);
    if entry.is_empty() {
        return false;
    }
    if domain.eq_ignore_ascii_case(entry) {
        return true;
    }
    domain.len() > entry.len()
        && domain.as_bytes()[domain.len() - entry.len() - 1] == b'.'
        && domain[domain.len() - entry.len()..].eq_ignore_ascii_case(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide_with(target: &str, vars: &[(&str, &str)]) -> Result<Decision> {
        let target = Url::parse(target).unwrap();
        decide(&target, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    fn via(target: &str, vars: &[(&str, &str)]) -> Option<(String, &'static str)> {
        match decide_with(target, vars).unwrap() {
            Decision::Via(p) => Some((p.shown, p.from)),
            _ => None,
        }
    }

    #[test]
    fn the_variables_in_order_and_only_for_https() {
        let all = [
            ("HTTPS_PROXY", "http://upper:3128"),
            ("https_proxy", "http://lower:3128"),
            ("ALL_PROXY", "http://all:3128"),
            ("all_proxy", "http://all-lower:3128"),
        ];
        for skip in 0..all.len() {
            let (name, value) = all[skip];
            let host = value.trim_start_matches("http://");
            assert_eq!(
                via("https://r4.dev", &all[skip..]),
                Some((format!("http://{host}"), name))
            );
        }
        assert_eq!(via("http://127.0.0.1:8080", &all), None);
        assert_eq!(via("https://r4.dev", &[]), None);
        // Empty is unset.
        assert_eq!(
            via(
                "https://r4.dev",
                &[("HTTPS_PROXY", " "), ("ALL_PROXY", "p:1")]
            ),
            Some(("http://p:1".into(), "ALL_PROXY"))
        );
        // A CGI script never uses one.
        assert_eq!(
            via(
                "https://r4.dev",
                &[("HTTPS_PROXY", "p:1"), ("REQUEST_METHOD", "GET")]
            ),
            None
        );
    }

    #[test]
    fn credentials_go_to_reqwest_but_are_never_shown() {
        let decision = decide_with(
            "https://r4.dev",
            &[("HTTPS_PROXY", "http://u:p%40ss@proxy:8080/")],
        )
        .unwrap();
        let Decision::Via(p) = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(p.shown, "http://proxy:8080");
        assert_eq!(
            (p.url().username(), p.url().password()),
            ("u", Some("p%40ss"))
        );
        assert_eq!(
            via("https://r4.dev", &[("HTTPS_PROXY", "https://proxy")]),
            Some(("https://proxy:443".into(), "HTTPS_PROXY"))
        );
    }

    #[test]
    fn unusable_proxies_are_errors_that_do_not_quote_the_value() {
        for value in [
            "socks5://u:secretpw@proxy:1080",
            "ftp://u:secretpw@proxy",
            "http://u:secretpw@",
            "http://u:secretpw@[::1",
        ] {
            let e = decide_with("https://r4.dev", &[("HTTPS_PROXY", value)]).unwrap_err();
            assert!(
                e.what()
                    .starts_with("HTTPS_PROXY is not a usable proxy URL"),
                "{e}"
            );
            assert!(!e.what().contains("secretpw"), "{e}");
            assert!(e.hint_text().is_some());
        }
    }

    #[test]
    fn no_proxy_entries() {
        let url = |h: &str| Url::parse(&format!("https://{h}/")).unwrap();
        let cases: &[(&str, &str, bool)] = &[
            ("*", "r4.dev", true),
            ("*", "10.1.2.3", true),
            ("r4.dev", "r4.dev", true),
            ("r4.dev", "api.R4.dev", true),
            (".r4.dev", "r4.dev", true),
            (".r4.dev", "eu.api.r4.dev", true),
            ("r4.dev", "notr4.dev", false),
            ("r4.dev", "r4.dev.evil", false),
            ("example.com, r4.dev ", "r4.dev", true),
            ("example.com", "r4.dev", false),
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
            ("0.0.0.0/0", "192.0.2.1", true),
            ("fd00::/8", "[fd12::1]", true),
            ("[::1]", "[::1]", true),
            ("::1", "127.0.0.1", false),
            ("10.0.0.0/8", "ten.example", false),
            ("10.0.0.0/40", "10.0.0.1", false),
            ("", "r4.dev", false),
            (" , ", "r4.dev", false),
        ];
        for &(list, h, want) in cases {
            let target = url(h);
            let host = target.host().unwrap();
            assert_eq!(no_proxy_matches(list, &host), want, "{list:?} vs {h}");
        }
    }

    #[test]
    fn no_proxy_exempts_and_says_which_variable() {
        let decision = decide_with(
            "https://api.r4.dev",
            &[("HTTPS_PROXY", "p:1"), ("no_proxy", "r4.dev")],
        )
        .unwrap();
        assert!(
            matches!(decision, Decision::Exempted { by: "no_proxy" }),
            "{decision:?}"
        );
        // NO_PROXY comes first; blank is unset.
        let decision = decide_with(
            "https://api.r4.dev",
            &[("HTTPS_PROXY", "p:1"), ("NO_PROXY", ""), ("no_proxy", "*")],
        )
        .unwrap();
        assert!(
            matches!(decision, Decision::Exempted { by: "no_proxy" }),
            "{decision:?}"
        );
        let decision = decide_with(
            "https://api.r4.dev",
            &[
                ("HTTPS_PROXY", "p:1"),
                ("NO_PROXY", "other.dev"),
                ("no_proxy", "*"),
            ],
        )
        .unwrap();
        assert!(matches!(decision, Decision::Via(_)), "{decision:?}");
    }
}
