//! One MTA connection relayed to the milter, packet by packet.
//!
//! Each packet is cut off the stream by the protocol core's
//! [`FrameDecoder`] and written to the other side as it came (re-framing a
//! packet gives the same bytes), *then* handed to the recorder, so recording
//! never delays a packet. The only packet the proxy may change is the MTA's
//! option negotiation offer: bits it does not know (a future protocol
//! version, flag or action) are refused, because the proxy could not record
//! what they do to the conversation; it logs which.
//!
//! Failure keeps the milter's fail-safe semantics: if the milter cannot be
//! reached, the MTA's connection is closed before anything is said on it,
//! so the MTA applies its `milter_default_action` as with the milter down;
//! if either side breaks the framing, both connections are closed (the MTA
//! again applies its default action, the milter sees the MTA leave).

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use milter_proto::{
    Actions, Command, DataSize, FrameDecoder, FrameError, MAX_VERSION, OptNeg, Protocol,
    command::code,
};
use minimilter::SocketSpec;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::transcript::Bodies;
use crate::transcript::recorder::{Finished, Recorder};

/// Largest packet payload relayed, either way: the largest any MTA can
/// negotiate (`SMFIP_MDS_1M`).
pub const MAX_PAYLOAD: usize = DataSize::M1.max_payload();

/// What every connection shares.
pub struct Settings {
    /// The real milter.
    pub to: SocketSpec,
    /// What transcripts keep of bodies.
    pub bodies: Bodies,
    /// Connecting to the milter.
    pub connect_timeout: Duration,
    /// Neither side sent anything for this long: both are closed.
    pub idle_timeout: Duration,
    /// Writing one packet to either side.
    pub write_timeout: Duration,
}

/// A byte stream either way.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn open(spec: &SocketSpec) -> std::io::Result<Box<dyn Stream>> {
    Ok(match spec {
        SocketSpec::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        SocketSpec::Inet { host, port, v6 } => {
            let host = match (host.as_str(), v6) {
                ("" | "*", false) => "127.0.0.1",
                ("" | "*", true) => "::1",
                (h, _) => h,
            };
            let s = tokio::net::TcpStream::connect((host, *port)).await?;
            s.set_nodelay(true)?;
            Box::new(s)
        }
    })
}

/// The parts of an offer the proxy relays: known actions and protocol
/// flags, versions up to the core's.
pub fn relayable(offer: &OptNeg) -> OptNeg {
    OptNeg {
        version: offer.version.min(MAX_VERSION),
        actions: offer.actions & Actions::all(),
        protocol: offer.protocol & Protocol::all(),
        macros: offer.macros.clone(),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hand_over(rec: &mut Recorder, out: &SyncSender<Finished>) {
    for f in rec.take_finished() {
        tracing::info!(
            connection = f.connection,
            transaction = f.transaction,
            verdict = %f.verdict.describe(),
            "transaction recorded"
        );
        if let Err(TrySendError::Full(f)) = out.try_send(f) {
            tracing::warn!(
                connection = f.connection,
                "transcript writer is behind; transcript dropped (mail is unaffected)"
            );
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Mta,
    Milter,
}

/// Cuts the packets in `buf` and appends them to `out` for the other side;
/// the offer (first MTA packet) may be narrowed. Returns the packets for the
/// recorder, and the framing error that stopped the cutting, if one did
/// (the packets before it are still relayed).
fn cut(
    side: Side,
    buf: &mut BytesMut,
    dec: &FrameDecoder,
    first_from_mta: &mut bool,
    rec: &mut Recorder,
    out: &mut BytesMut,
) -> (Vec<milter_proto::Frame>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        let mut f = match dec.decode(buf) {
            Ok(Some(f)) => f,
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        };
        if side == Side::Mta
            && std::mem::take(first_from_mta)
            && f.code == code::OPTNEG
            && let Ok(Command::OptNeg(offer)) = Command::parse(f.clone())
            && relayable(&offer) != offer
        {
            let refused = json!({
                "version": (offer.version > MAX_VERSION).then_some(offer.version),
                "actions": (offer.actions - Actions::all()).bits(),
                "protocol": (offer.protocol - Protocol::all()).bits(),
            });
            tracing::warn!(
                "the MTA offered options this proxy cannot relay exactly; refused: {refused}"
            );
            rec.set_refused(refused);
            let mut tmp = BytesMut::new();
            Command::OptNeg(relayable(&offer)).encode(&mut tmp);
            if let Ok(Some(narrowed)) = dec.decode(&mut tmp) {
                f = narrowed;
            }
        }
        milter_proto::encode_frame(f.code, &[&f.payload], out);
        frames.push(f);
    }
}

/// Relays one MTA connection to the milter until both sides have closed,
/// either breaks the framing, or both are idle.
pub async fn relay(
    mut mta: impl Stream,
    connection: u64,
    settings: Arc<Settings>,
    transcripts: SyncSender<Finished>,
) {
    let started = Instant::now();
    let mut milter = match tokio::time::timeout(settings.connect_timeout, open(&settings.to)).await
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
    let mut rec = Recorder::new(connection, unix_ms(), settings.bodies);
    let dec = FrameDecoder::new(MAX_PAYLOAD);
    let (mut mta_buf, mut milter_buf) =
        (BytesMut::with_capacity(8192), BytesMut::with_capacity(8192));
    let mut out = BytesMut::with_capacity(8192);
    let (mut mta_open, mut milter_open) = (true, true);
    let mut first_from_mta = true;
    let at = || started.elapsed().as_micros() as u64;
    let reason: String = loop {
        if !mta_open && !milter_open {
            break "closed".into();
        }
        let idle = tokio::time::sleep(settings.idle_timeout);
        let (side, read) = tokio::select! {
            r = mta.read_buf(&mut mta_buf), if mta_open => (Side::Mta, r),
            r = milter.read_buf(&mut milter_buf), if milter_open => (Side::Milter, r),
            () = idle => break "idle".into(),
        };
        let (buf, to): (&mut BytesMut, &mut dyn Stream) = match side {
            Side::Mta => (&mut mta_buf, &mut milter),
            Side::Milter => (&mut milter_buf, &mut mta),
        };
        let n = read.unwrap_or(0);
        out.clear();
        let mut bad = None;
        let frames = if n == 0 {
            // End of stream: pass on whatever partial packet was left, then
            // the end itself (a half close), as the other side would have
            // seen it without the proxy.
            out.extend_from_slice(buf);
            buf.clear();
            match side {
                Side::Mta => mta_open = false,
                Side::Milter => milter_open = false,
            }
            Vec::new()
        } else {
            let (frames, error) = cut(side, buf, &dec, &mut first_from_mta, &mut rec, &mut out);
            bad = error;
            frames
        };
        if !out.is_empty() {
            match tokio::time::timeout(settings.write_timeout, to.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break format!("write error: {e}"),
                Err(_) => break "write timeout".into(),
            }
        }
        if n == 0 {
            let _ = to.shutdown().await;
        }
        let now = at();
        for f in frames {
            match side {
                Side::Mta => rec.mta_sent(f, now),
                Side::Milter => rec.milter_sent(f, now),
            }
        }
        hand_over(&mut rec, &transcripts);
        if let Some(e) = bad {
            let who = if side == Side::Mta { "MTA" } else { "milter" };
            tracing::warn!(
                connection,
                "bad packet from the {who}: {e}; closing both connections"
            );
            break format!("bad packet from the {who}: {e}");
        }
    };
    rec.closed(at(), &reason);
    hand_over(&mut rec, &transcripts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_offers_pass_whole_and_unknown_bits_are_refused() {
        let postfix = OptNeg {
            version: 6,
            actions: Actions::from_bits_retain(0x1FF),
            protocol: Protocol::from_bits_retain(0x1F_FFFF),
            macros: vec![],
        };
        assert_eq!(
            relayable(&postfix),
            postfix,
            "Postfix's offer is relayed as it is"
        );
        let sendmail = OptNeg {
            protocol: Protocol::from_bits_retain(0x1F_FFFF) | Protocol::MDS_256K | Protocol::MDS_1M,
            ..postfix.clone()
        };
        assert_eq!(
            relayable(&sendmail),
            sendmail,
            "so is Sendmail's, packet sizes included"
        );
        let future = OptNeg {
            version: 7,
            actions: Actions::from_bits_retain(0x1FF | 0x1000),
            protocol: Protocol::from_bits_retain(0x1F_FFFF | 0x0040_0000),
            macros: vec![],
        };
        assert_eq!(
            relayable(&future),
            postfix,
            "unknown version, action and flag refused"
        );
    }
}
