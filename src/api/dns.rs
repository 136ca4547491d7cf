//! Host name lookups that nothing ever waits for past the deadline or an ending signal.
//!
//! reqwest's default resolver runs getaddrinfo on tokio's blocking pool, and dropping the runtime
//! joins that pool: a resolver that never answers held the run for glibc's own timeout (10 s and
//! more) after the deadline or a SIGTERM. Here each lookup runs on a detached thread of its own and
//! hands its answer back over a channel; a fetch that stops waiting simply drops the receiving end,
//! and the thread ends (or is ended with the process) whenever getaddrinfo returns.
//!
//! A failed lookup is a `DnsError`, so the failure is recognised by its type, not its text.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

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
