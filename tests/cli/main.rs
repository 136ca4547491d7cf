//! Integration tests: the real r4-run binary against real HTTP servers on 127.0.0.1.

mod support;

mod faults;
mod run;
