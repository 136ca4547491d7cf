//! Integration tests: the real r4-run binary against real HTTP servers on 127.0.0.1.

mod support;

mod container;
mod dns;
mod dotenv;
mod emulator;
mod fallback;
mod faults;
mod https;
mod hygiene;
mod mask;
mod mount;
mod project;
mod projects;
mod proxy;
mod run;
mod settings;
mod shells;
mod signals;
mod trust;
mod watch;
