//! `mailman-milter`: the daemon and its `export` command
//! ([`mailman_milter::cli`]).

fn main() -> std::process::ExitCode {
    mailman_milter::cli::main()
}
