//! A DNS resolver that never answers: the run still ends at its deadline, or at once on an ending
//! signal. r4-run runs in a private mount namespace whose /etc/resolv.conf names a loopback UDP socket
//! the test holds and never answers.

use crate::support::{r4_run, Spawned, DEADLINE};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// glibc's own give-up time with one silent nameserver (timeout 5 s × 2 attempts): what the run used
/// to wait out. The checks below allow far less, and far more than the run needs.
const PROMPT: Duration = Duration::from_secs(5);

/// A silent "nameserver": a UDP socket on port 53 of a loopback address of its own.
struct SilentNameserver {
    socket: UdpSocket,
    ip: Ipv4Addr,
}

impl SilentNameserver {
    /// Binds one, or says why it cannot (port 53 needs root).
    fn bind() -> Result<Self, String> {
        // 127.0.0.0/8 is all loopback on Linux; 127.0.0.53 may be systemd-resolved's, so stay clear.
        let mut last = String::new();
        for last_byte in 10..40 {
            let ip = Ipv4Addr::new(127, 8, 9, last_byte);
            match UdpSocket::bind((ip, 53)) {
                Ok(socket) => return Ok(Self { socket, ip }),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = e.to_string(),
                Err(e) => return Err(format!("cannot bind {ip}:53: {e}")),
            }
        }
        Err(format!("no free loopback address for port 53: {last}"))
    }

    /// From now on, answers every query: no such name (NXDOMAIN).
    fn answer_no_such_name(&self) {
        let socket = self.socket.try_clone().unwrap();
        socket.set_read_timeout(None).unwrap();
        std::thread::spawn(move || {
            let mut query = [0u8; 512];
            while let Ok((len, from)) = socket.recv_from(&mut query) {
                if let Some(reply) = no_such_name(&query[..len]) {
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
    }

    /// Waits for the first query to arrive (the lookup is under way).
    #[track_caller]
    fn await_query(&self) {
        self.socket.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut datagram = [0u8; 512];
        match self.socket.recv_from(&mut datagram) {
            Ok((len, _)) => assert!(len >= 12, "not a DNS query: {len} bytes"),
            Err(e) => panic!("no DNS query reached {}:53: {e}", self.ip),
        }
    }
}

/// The NXDOMAIN reply to a DNS query: its id and question, flags "response, recursion available,
/// no such name", no records.
fn no_such_name(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    while *query.get(at)? != 0 {
        at += 1 + usize::from(query[at]);
    }
    let question_end = at + 1 + 4; // the root label, QTYPE, QCLASS
    let mut reply = query.get(..question_end)?.to_vec();
    reply[2] = 0x80 | (query[2] & 0x79); // QR, the query's opcode and RD
    reply[3] = 0x83; // RA, RCODE 3
    reply[6..12].fill(0); // no answer, authority or additional records
    Some(reply)
}

/// The files the namespace sees: only DNS answers host lookups (no /etc/hosts, no
/// systemd-resolved), and DNS is the silent nameserver.
fn namespace_files(dir: &Path, nameserver: Ipv4Addr) -> [(std::path::PathBuf, &'static str); 3] {
    let resolv = dir.join("resolv.conf");
    let nsswitch = dir.join("nsswitch.conf");
    let hosts = dir.join("hosts");
    std::fs::write(&resolv, format!("nameserver {nameserver}\n")).unwrap();
    std::fs::write(&nsswitch, "hosts: dns\n").unwrap();
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    [
        (resolv, "/etc/resolv.conf"),
        (nsswitch, "/etc/nsswitch.conf"),
        (hosts, "/etc/hosts"),
    ]
}

/// `unshare --mount` and a shell that bind-mounts the files, then execs what follows: the wrapper for
/// r4-run (no fork: the pid the test signals is r4-run's own).
fn wrapper(files: &[(std::path::PathBuf, &'static str)]) -> Vec<String> {
    let mounts: Vec<String> = files
        .iter()
        .map(|(from, to)| format!("mount --bind '{}' {to}", from.display()))
        .collect();
    // A host without nscd has no /run/nscd; with one, glibc would ask it instead of DNS.
    let script = format!(
        "{} && {{ [ ! -d /run/nscd ] || mount -t tmpfs none /run/nscd; }} && exec \"$@\"",
        mounts.join(" && ")
    );
    ["unshare", "--mount", "--", "sh", "-c", &script, "sh"]
        .map(str::to_owned)
        .to_vec()
}

/// Everything the tests need, or the reason the machine refuses it.
fn set_up(dir: &Path) -> Result<(SilentNameserver, Vec<String>), String> {
    let nameserver = SilentNameserver::bind()?;
    let wrapper = wrapper(&namespace_files(dir, nameserver.ip));
    let tried = Command::new(&wrapper[0])
        .args(&wrapper[1..])
        .arg("true")
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if !tried.status.success() {
        return Err(format!(
            "a private mount namespace with bind mounts is refused: {}",
            String::from_utf8_lossy(&tried.stderr).trim()
        ));
    }
    Ok((nameserver, wrapper))
}

fn start(wrapper: Vec<String>, timeout: &str) -> (Spawned, Instant) {
    let started = Instant::now();
    let spawned = r4_run()
        .wrapped_in(wrapper)
        .against("https://r4-hang.example")
        .args(["--timeout", timeout])
        .probe()
        .spawn();
    (spawned, started)
}

#[test]
fn a_resolver_that_never_answers_ends_the_run_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (nameserver, wrapper) = match set_up(dir.path()) {
        Ok(ready) => ready,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let (mut run, started) = start(wrapper, "1");
    let (status, stderr) = run.wait();
    let took = started.elapsed();
    eprintln!("--timeout 1 against a silent resolver: exit after {took:?}");
    nameserver.await_query();
    assert_eq!(status.code(), Some(125), "{status}; stderr:\n{stderr}");
    assert!(took < PROMPT, "the run took {took:?}; stderr:\n{stderr}");
    assert!(
        stderr.starts_with("r4-run: error: cannot find the host r4-hang.example")
            && stderr.contains("DNS did not answer within the 1 s deadline")
            && stderr.contains("  hint: "),
        "{stderr}"
    );
}

#[test]
fn a_sigterm_during_a_lookup_that_never_answers_ends_the_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (nameserver, wrapper) = match set_up(dir.path()) {
        Ok(ready) => ready,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let (mut run, _) = start(wrapper, "60");
    nameserver.await_query();
    let signalled = Instant::now();
    run.signal(libc::SIGTERM);
    let (status, stderr) = run.wait();
    let took = signalled.elapsed();
    eprintln!("SIGTERM during a silent lookup: exit {took:?} after the signal");
    assert_eq!(status.code(), Some(143), "{status}; stderr:\n{stderr}");
    assert!(
        took < PROMPT,
        "the run took {took:?} to end; stderr:\n{stderr}"
    );
}

#[test]
fn a_name_that_does_not_exist_is_named_as_the_apis_or_the_proxys() {
    let dir = tempfile::tempdir().unwrap();
    let (nameserver, wrapper) = match set_up(dir.path()) {
        Ok(ready) => ready,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    nameserver.answer_no_such_name();
    let ran = r4_run()
        .wrapped_in(wrapper.clone())
        .against("https://r4-nx.example")
        .args(["--timeout", "5"])
        .probe()
        .run();
    ran.assert_failed_with("cannot find the host r4-nx.example (DNS: ");
    assert!(ran.stderr().contains("--base-url"), "{}", ran.stderr());

    let ran = r4_run()
        .wrapped_in(wrapper)
        .env("HTTPS_PROXY", "http://r4-proxy-nx.example:3128")
        .against("https://r4-nx.example")
        .args(["--timeout", "5"])
        .probe()
        .run();
    ran.assert_failed_with(
        "cannot find the host of the proxy http://r4-proxy-nx.example:3128 (DNS: ",
    );
    assert!(ran.stderr().contains("HTTPS_PROXY"), "{}", ran.stderr());
}
