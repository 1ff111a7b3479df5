//! `minimilter`: the program is the library's `main` (so that its command
//! line can be had as data, for the man page and completions).

fn main() -> std::process::ExitCode {
    minimilter_cli::main()
}
