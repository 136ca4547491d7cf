//! The `r4-emulator` binary; everything is in the library (`src/lib.rs`).

fn main() -> std::process::ExitCode {
    r4_emulator::main()
}
