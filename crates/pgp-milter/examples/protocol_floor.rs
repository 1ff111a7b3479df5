//! What pgp-milter's conversation with the MTA costs before it reads a
//! single byte: a milter that negotiates exactly what pgp-milter (embedded
//! defaults) negotiates — the same steps, no-reply flags and macro lists,
//! taken from [`PgpMilter`]'s own `requirements()` so the two cannot drift
//! apart — and answers continue to everything.
//!
//! ```text
//! cargo build --release -p pgp-milter --example protocol_floor
//! target/release/examples/protocol_floor unix:/tmp/floor.sock
//! ```
//!
//! `scripts/bench/pgp-small-cpu.sh target/release/examples/protocol_floor DIR`
//! then measures the runtime's and the kernel's share of a small message's
//! CPU (the encrypted message is accepted; the plain one is accepted too,
//! so that run reports unexpected verdicts and is not a measurement). The
//! difference to the same script against `target/release/pgp-milter` is
//! what pgp-milter's own reading costs.

use minimilter::{Milter, Requirements, ServerConfig, SocketSpec, UnixSocketOptions};
use pgp_milter::{PgpMilter, Policy};

/// pgp-milter's negotiation, and nothing else.
struct ProtocolFloor(Requirements);

impl Milter for ProtocolFloor {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        self.0.clone()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut specs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // The options pgp-small-cpu.sh passes to pgp-milter.
            "--listen" => specs.push(
                args.next()
                    .ok_or("--listen needs a value")?
                    .parse::<SocketSpec>()?,
            ),
            "--socket-mode" => {
                args.next();
            }
            other => specs.push(other.parse::<SocketSpec>()?),
        }
    }
    if specs.is_empty() {
        return Err("usage: protocol_floor [--listen] SOCKET".into());
    }
    let floor = ProtocolFloor(PgpMilter::new(Policy::default()).requirements());
    let unix = UnixSocketOptions {
        mode: Some(0o666),
        ..UnixSocketOptions::default()
    };
    minimilter::run(floor, &specs, &unix, ServerConfig::default()).await?;
    Ok(())
}
