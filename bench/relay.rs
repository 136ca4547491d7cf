//! A relay that holds every chunk DELAY ms in each direction: a link of 2×DELAY ms round trip,
//! between the clients bench/startup measures and their servers on loopback.
//!
//!     relay DELAY_MS UPSTREAM_PORT...   serve: one loopback port per upstream port, `listening on
//!                                       127.0.0.1:PORT` printed for each, in order; exits when its
//!                                       standard input ends
//!     relay --round-trip DELAY_MS       print the median one-byte round trip through a relay to an
//!                                       echo server, both in this process, in ms: on an open
//!                                       connection, then on a new one (connect included)
//!
//! bench/startup compiles it with plain `rustc` (std only) on first use. Linux only.
//!
//! Why not Python: the Python relay it replaces added ~0.5 ms to every round trip and more to every
//! new connection (threads waking one another under the GIL, sleeps that end late, four threads
//! started before the first chunk was read), which a real link does not add and every client paid.
//! What makes this one keep time:
//! - each chunk is stamped with the time the kernel received it (SO_TIMESTAMPNS), not when a thread
//!   got round to reading it, so a thread still starting or waking costs nothing;
//! - the sending thread sleeps until just before the chunk is due, by how late a sleep ends on this
//!   machine (measured at start; ~0.15-0.2 ms on a virtual machine), then spins to the time.
//!
//! The TCP handshake with the relay is not delayed (the kernel completes it before `accept`): a real
//! link would add one round trip to every client alike.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A chunk read and the time it is due on the far side (wall clock, as the kernel stamps); an empty
/// chunk is the end of the stream.
type Chunk = (SystemTime, Vec<u8>);

/// How long before a chunk is due its sender stops sleeping and starts spinning.
static WAKE_EARLY: OnceLock<Duration> = OnceLock::new();

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--round-trip", delay] => {
            WAKE_EARLY.get_or_init(calibrate);
            let (established, new) = round_trip_ms(parse_delay(delay));
            println!("{established:.3} {new:.3}");
        }
        [delay, upstreams @ ..] if !upstreams.is_empty() => {
            WAKE_EARLY.get_or_init(calibrate);
            let delay = parse_delay(delay);
            for upstream in upstreams {
                let upstream: u16 = upstream.parse().expect("UPSTREAM_PORT is a port");
                let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a loopback port");
                println!("listening on {}", listener.local_addr().unwrap());
                thread::spawn(move || serve(listener, upstream, delay));
            }
            std::io::stdout().flush().unwrap();
            // Until the bench closes our stdin (or dies).
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        }
        _ => {
            eprintln!("usage: relay DELAY_MS UPSTREAM_PORT... | relay --round-trip DELAY_MS");
            std::process::exit(2);
        }
    }
}

fn parse_delay(ms: &str) -> Duration {
    Duration::from_secs_f64(ms.parse::<f64>().expect("DELAY_MS is a number") / 1e3)
}

fn serve(listener: TcpListener, upstream: u16, delay: Duration) {
    // On the listener, so that each accepted socket has it from the start: a client's first chunk
    // often arrives before the thread that would set it on the accepted socket runs.
    enable_arrival_stamps(&listener);
    for client in listener.incoming().flatten() {
        thread::spawn(move || connection(client, upstream, delay));
    }
}

fn connection(client: TcpStream, upstream: u16, delay: Duration) {
    let _ = client.set_nodelay(true);
    let (to_server, from_client) = channel();
    let reading = reader(client.try_clone().unwrap(), delay, to_server);
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = server.set_nodelay(true);
    let (to_client, from_server) = channel();
    let back_reading = reader(server.try_clone().unwrap(), delay, to_client);
    let back = {
        let client = client.try_clone().unwrap();
        thread::spawn(move || writer(from_server, client))
    };
    writer(from_client, server);
    let _ = back.join();
    let _ = reading.join();
    let _ = back_reading.join();
}

/// Reads `from` and hands each chunk over with the time it is due: its arrival plus `delay`.
fn reader(from: TcpStream, delay: Duration, chunks: Sender<Chunk>) -> thread::JoinHandle<()> {
    let stamped = enable_arrival_stamps(&from);
    thread::spawn(move || {
        let mut buf = vec![0; 65536];
        loop {
            let (n, arrived) = if stamped {
                read_stamped(&from, &mut buf)
            } else {
                ((&from).read(&mut buf).unwrap_or(0), None)
            };
            let due = arrived.unwrap_or_else(SystemTime::now) + delay;
            if chunks.send((due, buf[..n].to_vec())).is_err() || n == 0 {
                return;
            }
        }
    })
}

/// Writes each chunk to `to` when it is due; the end of the stream shuts `to` for writing.
fn writer(chunks: Receiver<Chunk>, mut to: TcpStream) {
    let early = *WAKE_EARLY.get().unwrap();
    let mut broken = false;
    for (due, data) in chunks {
        wait_until(due, early);
        if data.is_empty() {
            break;
        }
        if !broken && to.write_all(&data).is_err() {
            broken = true;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn wait_until(due: SystemTime, early: Duration) {
    if let Ok(left) = due.duration_since(SystemTime::now()) {
        if left > early {
            thread::sleep(left - early);
        }
    }
    while SystemTime::now() < due {
        std::hint::spin_loop();
    }
}

/// How late a short sleep ends here (the 90th percentile of 40), plus a margin.
fn calibrate() -> Duration {
    let mut late: Vec<Duration> = (0..40)
        .map(|_| {
            let start = Instant::now();
            thread::sleep(Duration::from_micros(500));
            start.elapsed().saturating_sub(Duration::from_micros(500))
        })
        .collect();
    late.sort();
    late[36] + Duration::from_micros(20)
}

/// The medians of one-byte round trips through a relay to an echo server, in ms: 200 on one open
/// connection, then 50 each on a new connection (the connect included).
fn round_trip_ms(delay: Duration) -> (f64, f64) {
    let echo = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    thread::spawn(move || {
        for conn in echo.incoming().flatten() {
            let _ = conn.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = [0; 64];
                let mut conn = conn;
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let relay = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let relay_port = relay.local_addr().unwrap().port();
    thread::spawn(move || serve(relay, echo_port, delay));
    let one_byte = |conn: &mut TcpStream| {
        conn.write_all(b"x").unwrap();
        conn.read_exact(&mut [0]).unwrap();
    };
    let mut conn = TcpStream::connect(("127.0.0.1", relay_port)).unwrap();
    conn.set_nodelay(true).unwrap();
    let open: Vec<f64> = (0..200)
        .map(|_| {
            let start = Instant::now();
            one_byte(&mut conn);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let new: Vec<f64> = (0..50)
        .map(|_| {
            let start = Instant::now();
            let mut conn = TcpStream::connect(("127.0.0.1", relay_port)).unwrap();
            conn.set_nodelay(true).unwrap();
            one_byte(&mut conn);
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (median(open), median(new))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

// The kernel's receive time stamps, through recvmsg (std has no API for them).

const SOL_SOCKET: i32 = 1;
const SO_TIMESTAMPNS: i32 = 35; // also SCM_TIMESTAMPNS

#[repr(C)]
struct IoVec {
    base: *mut u8,
    len: usize,
}

#[repr(C)]
struct MsgHdr {
    name: *mut u8,
    namelen: u32,
    iov: *mut IoVec,
    iovlen: usize,
    control: *mut u8,
    controllen: usize,
    flags: i32,
}

#[repr(C)]
struct CmsgHdr {
    len: usize,
    level: i32,
    kind: i32,
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const u8, len: u32) -> i32;
    fn recvmsg(fd: i32, msg: *mut MsgHdr, flags: i32) -> isize;
}

/// Asks the kernel to stamp what `socket` receives; false if it will not.
fn enable_arrival_stamps(socket: &impl AsRawFd) -> bool {
    let on: i32 = 1;
    // SAFETY: a valid socket descriptor, and a pointer to an int of the length given.
    let rc = unsafe {
        setsockopt(
            socket.as_raw_fd(),
            SOL_SOCKET,
            SO_TIMESTAMPNS,
            (&on as *const i32).cast(),
            4,
        )
    };
    rc == 0
}

/// Reads into `buf`; returns the byte count (0 at the end or on an error) and when the kernel
/// received the data, if it said.
fn read_stamped(socket: &TcpStream, buf: &mut [u8]) -> (usize, Option<SystemTime>) {
    let mut iov = IoVec {
        base: buf.as_mut_ptr(),
        len: buf.len(),
    };
    // Room for one cmsghdr and a timespec, 8-byte aligned.
    let mut control = [0u64; 8];
    let mut msg = MsgHdr {
        name: std::ptr::null_mut(),
        namelen: 0,
        iov: &mut iov,
        iovlen: 1,
        control: control.as_mut_ptr().cast(),
        controllen: std::mem::size_of_val(&control),
        flags: 0,
    };
    let n = loop {
        // SAFETY: `msg` points at live, writable buffers of the lengths it gives.
        let n = unsafe { recvmsg(socket.as_raw_fd(), &mut msg, 0) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break n;
        }
    };
    if n <= 0 {
        return (0, None);
    }
    let header = std::mem::size_of::<CmsgHdr>();
    if msg.controllen < header + std::mem::size_of::<Timespec>() {
        return (n as usize, None);
    }
    // SAFETY: the kernel wrote at least one cmsghdr and its data into `control`, which is 8-byte
    // aligned; the data follows the header, which is 16 bytes (already aligned).
    let (cmsg, ts) = unsafe {
        let base = control.as_ptr().cast::<u8>();
        (
            &*base.cast::<CmsgHdr>(),
            &*base.add(header).cast::<Timespec>(),
        )
    };
    if cmsg.level != SOL_SOCKET || cmsg.kind != SO_TIMESTAMPNS {
        return (n as usize, None);
    }
    let at = UNIX_EPOCH + Duration::new(ts.sec as u64, ts.nsec as u32);
    (n as usize, Some(at))
}
