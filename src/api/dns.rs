//! Host name lookups that nothing ever waits for past the deadline or an ending signal.
//!
//! reqwest's default resolver runs getaddrinfo on tokio's blocking pool, and dropping the runtime
//! joins that pool: a resolver that never answers held the run for glibc's own timeout (10 s and
//! more) after the deadline or a SIGTERM. Here each lookup runs on a detached thread of its own and
//! hands its answer back over a channel; a fetch that stops waiting simply drops the receiving end,
//! and the thread ends (or is ended with the process) whenever getaddrinfo returns.
//!
//! A failed lookup is a `DnsError`, so the failure is recognised by its type, not its text.
//!
//! Two answers need no thread and no resolver at all, and come first:
//! - `localhost` and `*.localhost` are loopback (RFC 6761), whatever a hosts file says: plain http is
//!   allowed to them only because they are loopback, so they must not lead anywhere else;
//! - a name in `/etc/hosts`, where the system looks there first (glibc's `hosts: files …`, the
//!   default): a file read, faster than a thread, and it leaves no thread behind (in a container, a
//!   thread takes a process id, and the command would no longer be PID 2).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError};

/// A host name lookup that failed.
#[derive(Debug)]
pub struct DnsError {
    pub host: String,
    pub kind: DnsErrorKind,
}

#[derive(Debug)]
pub enum DnsErrorKind {
    /// getaddrinfo failed (no such host, no DNS server reachable, ...).
    Lookup(std::io::Error),
    /// The name resolved to no address at all.
    NoAddress,
    /// The lookup thread could not be started, or ended without answering.
    NoThread(Option<std::io::Error>),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        match &self.kind {
            DnsErrorKind::Lookup(e) => write!(f, "cannot resolve {host}: {e}"),
            DnsErrorKind::NoAddress => write!(f, "{host} resolves to no address"),
            DnsErrorKind::NoThread(Some(e)) => {
                write!(f, "cannot start a thread to resolve {host}: {e}")
            }
            DnsErrorKind::NoThread(None) => {
                write!(f, "the lookup of {host} ended without an answer")
            }
        }
    }
}

impl std::error::Error for DnsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            DnsErrorKind::Lookup(e) | DnsErrorKind::NoThread(Some(e)) => Some(e),
            _ => None,
        }
    }
}

/// The resolver given to reqwest. Clones share what they know of lookups in flight.
#[derive(Clone, Default)]
pub struct Resolver {
    /// The host of the latest lookup that has not answered yet, if any: when the deadline comes,
    /// it says that DNS is what did not answer.
    unanswered: Arc<Mutex<Option<String>>>,
}

impl Resolver {
    /// The host whose lookup is still waiting for an answer, if any.
    pub fn unanswered(&self) -> Option<String> {
        self.unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_unanswered(&self, host: Option<String>) {
        *self
            .unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = host;
    }
}

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        if let Some(addrs) = answer_locally(&host) {
            return Box::pin(std::future::ready(Ok(Box::new(addrs.into_iter()) as Addrs)));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.set_unanswered(Some(host.clone()));
        let lookup = host.clone();
        // Detached on purpose: nobody joins it, so a lookup that never answers keeps no one waiting.
        let started = std::thread::Builder::new()
            .name("r4-run dns".to_owned())
            .spawn(move || {
                let answer = (lookup.as_str(), 0)
                    .to_socket_addrs()
                    .map(Iterator::collect::<Vec<SocketAddr>>);
                // The fetch may have stopped waiting: then nobody needs the answer.
                let _ = tx.send(answer);
            });
        let resolver = self.clone();
        Box::pin(async move {
            let fail = |kind| -> Box<dyn std::error::Error + Send + Sync> {
                Box::new(DnsError {
                    host: host.clone(),
                    kind,
                })
            };
            if let Err(e) = started {
                resolver.set_unanswered(None);
                return Err(fail(DnsErrorKind::NoThread(Some(e))));
            }
            let answer = rx.await;
            resolver.set_unanswered(None);
            match answer {
                Ok(Ok(addrs)) if !addrs.is_empty() => Ok(Box::new(addrs.into_iter()) as Addrs),
                Ok(Ok(_)) => Err(fail(DnsErrorKind::NoAddress)),
                Ok(Err(e)) => Err(fail(DnsErrorKind::Lookup(e))),
                Err(_) => Err(fail(DnsErrorKind::NoThread(None))),
            }
        })
    }
}

/// The answer for `host` that needs no lookup: loopback for `localhost`, or the hosts file's.
fn answer_locally(host: &str) -> Option<Vec<SocketAddr>> {
    let host = host.trim_end_matches('.');
    if is_localhost(host) {
        return Some(vec![
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
        ]);
    }
    if !hosts_file_first(
        std::fs::read_to_string("/etc/nsswitch.conf")
            .ok()
            .as_deref(),
    ) {
        return None;
    }
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    let found = in_hosts_file(&hosts, host);
    (!found.is_empty()).then_some(found)
}

/// `localhost` or a name under it (RFC 6761 §6.3).
fn is_localhost(host: &str) -> bool {
    let lower = host.to_ascii_lowercase();
    lower == "localhost" || lower.ends_with(".localhost")
}

/// Whether the system consults the hosts file before anything else: the first source of the `hosts:`
/// line of nsswitch.conf is `files`, or there is no such line (glibc's default is `files dns`), or no
/// nsswitch.conf (the BSDs and macOS look in /etc/hosts first).
fn hosts_file_first(nsswitch: Option<&str>) -> bool {
    let Some(text) = nsswitch else {
        return true;
    };
    let line = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .find_map(|l| l.trim_start().strip_prefix("hosts:"));
    match line {
        None => true,
        Some(sources) => sources.split_whitespace().next() == Some("files"),
    }
}

/// The addresses the hosts file gives `host` (names compare without case), in file order.
fn in_hosts_file(hosts: &str, host: &str) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<std::net::IpAddr>) else {
            continue;
        };
        if fields.any(|name| name.eq_ignore_ascii_case(host)) {
            let addr = SocketAddr::new(ip, 0);
            if !found.contains(&addr) {
                found.push(addr);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn localhost_is_loopback_whatever_the_hosts_file_says() {
        for name in ["localhost", "LocalHost", "api.localhost", "localhost."] {
            let addrs = answer_locally(name).unwrap();
            assert!(
                addrs.iter().all(|a| a.ip().is_loopback()),
                "{name}: {addrs:?}"
            );
        }
        assert!(!is_localhost("localhost.evil.com"));
        assert!(!is_localhost("notlocalhost"));
    }

    #[test]
    fn the_hosts_file_is_read_as_glibc_reads_it() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.1 r4.test\n10.1.2.3  r4.test  R4  # comment\n::1 r4.test ip6-localhost\nbad line\n10.1.2.3 r4.test\n";
        assert_eq!(
            in_hosts_file(hosts, "R4.TEST"),
            [
                SocketAddr::from(([10, 1, 2, 3], 0)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
            ]
        );
        assert_eq!(in_hosts_file(hosts, "r4").len(), 1);
        assert!(in_hosts_file(hosts, "other").is_empty());
        assert!(in_hosts_file(hosts, "line").is_empty());
    }

    #[test]
    fn the_hosts_file_counts_only_where_it_comes_first() {
        assert!(hosts_file_first(None));
        assert!(hosts_file_first(Some(
            "passwd: files\nhosts:   files dns\n"
        )));
        assert!(hosts_file_first(Some("passwd: files\n")));
        assert!(hosts_file_first(Some(
            "hosts: files mdns4_minimal [NOTFOUND=return] dns"
        )));
        assert!(!hosts_file_first(Some("hosts: dns files")));
        assert!(!hosts_file_first(Some(
            "# hosts: files\nhosts: resolve [!UNAVAIL=return] files"
        )));
    }

    fn resolve(host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let resolver = Resolver::default();
        let answer = runtime.block_on(resolver.resolve(Name::from_str(host).unwrap()));
        assert_eq!(resolver.unanswered(), None);
        answer.map(Iterator::collect)
    }

    #[test]
    fn resolves_through_the_system() {
        // From /etc/hosts: no query leaves the machine. (The failures are tested in a namespace with a
        // nameserver of the test's own: tests/cli/dns.rs.)
        let addrs = resolve("localhost").unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn a_failure_is_a_dns_error_naming_the_host() {
        let e: Box<dyn std::error::Error + Send + Sync> = Box::new(DnsError {
            host: "h.example".to_owned(),
            kind: DnsErrorKind::Lookup(std::io::Error::other("no such host")),
        });
        let dns = e.downcast_ref::<DnsError>().expect("a DnsError");
        assert_eq!(dns.host, "h.example");
        assert!(e.source().is_some());
        assert_eq!(e.to_string(), "cannot resolve h.example: no such host");
    }
}
