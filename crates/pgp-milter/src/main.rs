//! `pgp-milter`: the daemon ([`pgp_milter::cli`]).

fn main() -> std::process::ExitCode {
    pgp_milter::cli::main()
}
