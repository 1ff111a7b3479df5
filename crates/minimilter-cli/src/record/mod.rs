//! `minimilter record`: a transparent milter proxy that writes one
//! transcript per SMTP transaction (see `docs/transcript.md`).

pub mod priority;
pub mod proxy;
pub mod relay;
pub mod socket;
pub mod store;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use minimilter::listener::Accepted;
use minimilter::{Listener, SocketSpec, UnixSocketOptions};

use crate::exit;
use crate::timeouts::positive_seconds;
use crate::transcript::Bodies;

/// Options of `minimilter record`.
#[derive(Args, Debug)]
pub struct RecordArgs {
    /// Where the MTA connects (put this in its milter setting instead of
    /// the milter's socket): unix:/path, inet:host:port, ...
    #[arg(long, value_name = "SOCKET")]
    pub listen: String,
    /// The real milter's socket.
    #[arg(long, value_name = "MILTER_SOCKET")]
    pub to: String,
    /// Directory for the transcripts (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// What transcripts keep of message bodies: the bytes (replay can send
    /// them again), a SHA-256 hash and length, or the length only.
    #[arg(long, value_enum, default_value = "keep")]
    pub bodies: Bodies,
    /// Most bytes of transcripts kept in DIR; the oldest are deleted first.
    #[arg(long, default_value_t = 1 << 30, value_name = "BYTES")]
    pub max_bytes: u64,
    /// Seconds per rotation period: each period's transcripts go to a
    /// subdirectory of DIR named for its start (UTC).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub rotate: u64,
    /// File mode of a unix listening socket, octal (e.g. 660, or 666 when
    /// the MTA runs as another user).
    #[arg(long, value_name = "OCTAL")]
    pub socket_mode: Option<String>,
    /// Group of a unix listening socket, a name or number (e.g. postfix,
    /// with --socket-mode 660: the MTA's group may connect, nobody else).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Owner of a unix listening socket, a name or number.
    #[arg(long, value_name = "USER")]
    pub socket_owner: Option<String>,
    /// Seconds to connect to the milter; keep it below the MTA's own
    /// milter connect timeout.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub connect_timeout: f64,
    /// Seconds with nothing from either side before both connections are
    /// closed.
    #[arg(long, default_value_t = 3600.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub idle_timeout: f64,
    /// Seconds to write one packet to either side.
    #[arg(long, default_value_t = 300.0, value_name = "SECONDS", value_parser = positive_seconds)]
    pub write_timeout: f64,
    /// Most MTA connections relayed at once (each takes a thread); one
    /// more is closed at once, so the MTA applies its default action as
    /// with the milter down.
    #[arg(long, default_value_t = 1024, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Microseconds a connection's thread polls without sleeping where the
    /// next packet is due at once (the milter's answer to a command, the
    /// MTA's next part of a message), before it sleeps; 0: never. Meant to
    /// save waking a sleeping CPU per hop, at the cost of up to this much
    /// CPU per wait; only while the CPUs have half a CPU idle, on at most
    /// half of them at once (see docs/performance.md before turning it on).
    #[arg(long, default_value_t = relay::DEFAULT_SPIN_US, value_name = "US", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub spin_us: u64,
}

/// How many notes (a connection's packets up to a transaction boundary,
/// mostly) may wait for the transcript writer; beyond that recording stops
/// for the connection that finds the queue full (counted and logged) until
/// its next transaction, rather than slowing the mail.
const WRITER_QUEUE: usize = 4096;

/// At SIGTERM, how long connections in progress may go on (then they are
/// closed), and how long their relays may then take to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the proxy until SIGTERM or SIGINT.
pub async fn run(args: RecordArgs) -> anyhow::Result<u8> {
    let listen: SocketSpec = args.listen.parse().context("--listen")?;
    let to: SocketSpec = args.to.parse().context("--to")?;
    let mut unix = UnixSocketOptions::default();
    if let Some(m) = &args.socket_mode {
        unix.mode = Some(
            u32::from_str_radix(m, 8)
                .with_context(|| format!("--socket-mode {m:?} is not an octal mode"))?,
        );
    }
    // Names checked here, so the error names the option.
    if let Some(g) = &args.socket_group {
        minimilter::listener::lookup_group(g).with_context(|| format!("--socket-group {g:?}"))?;
    }
    if let Some(u) = &args.socket_owner {
        minimilter::listener::lookup_user(u).with_context(|| format!("--socket-owner {u:?}"))?;
    }
    unix.group = args.socket_group.clone();
    unix.owner = args.socket_owner.clone();
    let store = store::Store::open(&args.dir, args.max_bytes, args.rotate)?;
    let priority = Arc::new(priority::WriterPriority::new());
    let settings = Arc::new(proxy::Settings {
        writer: priority.clone(),
        to,
        connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        write_timeout: Duration::from_secs_f64(args.write_timeout),
    });
    let listener = Listener::bind(&listen, &unix)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<proxy::Note>(WRITER_QUEUE);
    let bodies = args.bodies;
    let writer = std::thread::Builder::new()
        .name("transcripts".into())
        .spawn(move || writer::run(rx, store, bodies, &priority))
        .context("starting the transcript writer")?;
    crate::output::note(&format!(
        "minimilter record: {} -> {}, transcripts in {} (bodies: {}, at most {} bytes). \
         Relays protocol versions 2 to {}, the actions and protocol flags of libmilter 8.18 \
         and packets up to {} bytes; anything else an MTA offers is refused at negotiation.\n",
        listener.local_description(),
        settings.to,
        args.dir.display(),
        args.bodies.name(),
        args.max_bytes,
        milter_proto::MAX_VERSION,
        proxy::MAX_PAYLOAD,
    ));
    let relays = relay::Relays::new(
        args.max_connections as usize,
        relay::Spin::new(args.spin_us),
    );
    // Only connecting to the milter runs on the runtime; the relay itself
    // runs on the connection's threads (see `relay`).
    let mut connecting = tokio::task::JoinSet::new();
    let mut connection = 0u64;
    let stop = minimilter::shutdown::signal();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut stop => break,
        };
        while connecting.try_join_next().is_some() {}
        let accepted = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        connection += 1;
        let accepted_at = std::time::Instant::now();
        let Some(slot) = relays.reserve() else {
            tracing::warn!(
                connection,
                "{} connections are open (--max-connections); closing this one so the MTA \
                 applies its default action",
                args.max_connections
            );
            continue;
        };
        let mta = match accepted {
            Accepted::Tcp(s, _) => socket::Stream::tcp(s),
            Accepted::Unix(s) => socket::Stream::unix(s),
        };
        let mta = match mta {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(connection, "taking over the MTA's connection: {e}");
                continue;
            }
        };
        let (settings, tx, relays) = (settings.clone(), tx.clone(), relays.clone());
        connecting.spawn(async move {
            let milter =
                match tokio::time::timeout(settings.connect_timeout, proxy::open(&settings.to))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::warn!(
                            connection,
                            "cannot connect to the milter {}: {e}; closing the MTA's connection so it applies its default action",
                            settings.to
                        );
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(
                            connection,
                            "connecting to the milter {} timed out; closing the MTA's connection so it applies its default action",
                            settings.to
                        );
                        return;
                    }
                };
            relays.start(slot, connection, accepted_at, mta, milter, settings, tx);
        });
    }
    drop(listener);
    // Connections in progress get a moment to finish their transaction,
    // then are closed.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while relays.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    connecting.abort_all();
    while connecting.join_next().await.is_some() {}
    relays.close_all();
    drop(tx);
    // Each closed relay sends its end to the writer (waiting at most a
    // bounded time for room), then lets go of its sender; the writer then
    // drains and ends.
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while relays.active() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (found, empty) = relays.spins();
    tracing::info!(
        spins_found = found,
        spins_empty = empty,
        "relays done (spins that found the next packet, and that found nothing)"
    );
    if relays.active() > 0 {
        tracing::warn!("relays still running at exit; their transcripts may be incomplete");
        return Ok(exit::ACCEPTED);
    }
    if let Ok(Ok(t)) = tokio::task::spawn_blocking(move || writer.join()).await {
        tracing::info!(
            written = t.written,
            failed = t.failed,
            dropped = t.dropped,
            resumed = t.resumed,
            not_recorded = t.not_recorded,
            "transcript writer done"
        );
    }
    Ok(exit::ACCEPTED)
}
