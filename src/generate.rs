//! `--generate KIND`: the man page and the shell completion scripts, made from the same clap
//! definition as the parser, so they never drift from it.

use crate::cli::{Args, GenerateKind};
use clap::CommandFactory;
use clap_complete::Shell;
use std::io::Write;

/// Prints what `kind` asks for to stdout.
pub fn print(kind: GenerateKind) -> std::io::Result<()> {
    let mut command = Args::command();
    let mut out = Vec::new();
    match kind {
        GenerateKind::Man => clap_mangen::Man::new(command).render(&mut out)?,
        GenerateKind::CompleteBash => complete(Shell::Bash, &mut command, &mut out),
        GenerateKind::CompleteZsh => complete(Shell::Zsh, &mut command, &mut out),
        GenerateKind::CompleteFish => complete(Shell::Fish, &mut command, &mut out),
        GenerateKind::CompletePowershell => complete(Shell::PowerShell, &mut command, &mut out),
    }
    std::io::stdout().lock().write_all(&out)
}

fn complete(shell: Shell, command: &mut clap::Command, out: &mut Vec<u8>) {
    clap_complete::generate(shell, command, "r4-run", out);
}
