use std::process::ExitCode;

/// Every freed block is wiped, so library copies of secrets do not outlive their use.
#[global_allocator]
static ALLOCATOR: r4_run::wipe_alloc::WipingAllocator = r4_run::wipe_alloc::WipingAllocator;

/// Records the signal dispositions r4-run was started with before std's runtime start-up ignores
/// SIGPIPE, so that the child gets them as r4-run got them (see signals.rs). A constructor runs
/// before `main` and before std's start-up. Not an unsafe block, but it runs code before std is
/// set up: the function only queries sigaction and stores an atomic.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
#[used]
#[link_section = ".init_array"]
static RECORD_INHERITED_DISPOSITIONS: extern "C" fn() =
    r4_run::signals::record_inherited_dispositions;

/// The same on Apple platforms, whose constructors live in their own section.
#[cfg(any(target_os = "macos", target_os = "ios"))]
#[used]
#[link_section = "__DATA,__mod_init_func"]
static RECORD_INHERITED_DISPOSITIONS: extern "C" fn() =
    r4_run::signals::record_inherited_dispositions;

fn main() -> ExitCode {
    // Before anything reads the key: a crash or abort from here on dumps nothing.
    r4_run::hardening::forbid_dumping();
    r4_run::wipe_alloc::configure_from_env();
    let outcome = r4_run::run(std::env::args_os());
    if let Some(error) = outcome.error() {
        r4_run::report::error(error);
    }
    ExitCode::from(outcome.exit_code())
}
