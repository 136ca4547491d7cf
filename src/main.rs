use std::process::ExitCode;

fn main() -> ExitCode {
    let outcome = r4_run::run(std::env::args_os());
    if let Some(error) = outcome.error() {
        r4_run::report::error(error);
    }
    ExitCode::from(outcome.exit_code())
}
