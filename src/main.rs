use std::process::ExitCode;

/// Every freed block is wiped, so library copies of secrets do not outlive their use.
#[global_allocator]
static ALLOCATOR: r4_run::wipe_alloc::WipingAllocator = r4_run::wipe_alloc::WipingAllocator;

fn main() -> ExitCode {
    r4_run::wipe_alloc::configure_from_env();
    let outcome = r4_run::run(std::env::args_os());
    if let Some(error) = outcome.error() {
        r4_run::report::error(error);
    }
    ExitCode::from(outcome.exit_code())
}
