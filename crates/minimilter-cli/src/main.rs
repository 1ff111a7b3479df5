//! `minimilter`: the program is the library ([`minimilter_cli`]).

fn main() -> std::process::ExitCode {
    minimilter_cli::main()
}
