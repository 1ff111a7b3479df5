//! The filter API: one async method per step of the SMTP session.
//!
//! A filter is policy only. It never sees a socket or a packet: the runtime
//! negotiates with the MTA, calls these methods in order, and turns their
//! verdicts into exactly the replies the MTA expects. Every method has a
//! default that continues, so a filter implements only the steps it declares
//! in [`Milter::requirements`].

use std::borrow::Cow;
use std::future::Future;
use std::net::IpAddr;

use bytes::Bytes;
use milter_proto::{ConnectAddress, Requirements, Verdict};

use crate::context::{Context, Modifications};
use crate::envelope_address::EnvelopeAddress;

/// An error from a filter; the runtime answers with the fail-safe reply.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result of one step.
pub type StepResult = Result<Verdict, BoxError>;

/// The context type of filter `F`.
pub type Ctx<'a, F> = Context<'a, <F as Milter>::Connection, <F as Milter>::Message>;

/// The SMTP client, as the MTA describes it at connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The client's host name; `[addr]` if it did not resolve (Postfix).
    pub hostname: Bytes,
    /// The client's address.
    pub address: ConnectAddress,
}

impl ConnectInfo {
    /// The host name as text.
    pub fn hostname_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.hostname)
    }

    /// The client's IP address, if it connected over IPv4 or IPv6 and the
    /// MTA's text parses (an `IPv6:` prefix, as Sendmail may write it, is
    /// allowed). `None` for unix-socket and unknown clients.
    pub fn ip(&self) -> Option<IpAddr> {
        let text = match &self.address {
            ConnectAddress::Inet { addr, .. } | ConnectAddress::Inet6 { addr, .. } => addr,
            _ => return None,
        };
        let text = std::str::from_utf8(text).ok()?.trim();
        let text = text
            .strip_prefix("IPv6:")
            .or_else(|| text.strip_prefix("ipv6:"))
            .unwrap_or(text);
        text.parse().ok()
    }

    /// The client's port, for IPv4 and IPv6 clients.
    pub fn port(&self) -> Option<u16> {
        match &self.address {
            ConnectAddress::Inet { port, .. } | ConnectAddress::Inet6 { port, .. } => Some(*port),
            _ => None,
        }
    }
}

/// An envelope address (MAIL FROM or RCPT TO) with its ESMTP arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The address as the MTA sent it, usually in angle brackets.
    pub raw: Bytes,
    /// ESMTP arguments (`SIZE=123`, `BODY=8BITMIME`, ...).
    pub args: Vec<Bytes>,
}

impl Envelope {
    pub(crate) fn from_args(mut args: Vec<Bytes>) -> Envelope {
        let raw = if args.is_empty() {
            Bytes::new()
        } else {
            args.remove(0)
        };
        Envelope { raw, args }
    }

    /// The address without angle brackets (empty for the null sender `<>`).
    pub fn address(&self) -> Cow<'_, str> {
        let raw: &[u8] = &self.raw;
        let trimmed = raw.trim_ascii();
        let inner = trimmed
            .strip_prefix(b"<")
            .and_then(|r| r.strip_suffix(b">"))
            .unwrap_or(trimmed);
        String::from_utf8_lossy(inner)
    }

    /// The address canonicalised for comparing (quoting undone, domain
    /// lower-cased, source route dropped; `<>` is
    /// [`EnvelopeAddress::Null`]). See [`crate::envelope_address`].
    pub fn parsed(&self) -> EnvelopeAddress {
        EnvelopeAddress::parse(&self.address())
    }

    /// The arguments as text.
    pub fn args_str(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.args.iter().map(|a| String::from_utf8_lossy(a))
    }
}

/// One message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Field name.
    pub name: Bytes,
    /// Field value; folded lines are joined with LF. Without
    /// `header_leading_space` the MTA has removed one space after the colon.
    pub value: Bytes,
}

impl Header {
    /// The name as text.
    pub fn name_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.name)
    }

    /// The value as text.
    pub fn value_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }

    /// True if the name matches, ignoring ASCII case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// A mail filter.
///
/// `Connection` is state kept for one SMTP connection (from connect until
/// close); `Message` is state kept for one message, reset to its `Default`
/// when a new message starts or the current one is aborted, so nothing leaks
/// from one message to the next.
///
/// Methods run one at a time per connection, in protocol order. Returning an
/// error, panicking, or taking longer than the configured step timeout makes
/// the runtime answer that step with the fail-safe reply (tempfail by default).
///
/// Write the methods as `async fn`. Connections run on tokio's worker
/// threads, so each method's future must be `Send`: do not hold a
/// `std::sync::MutexGuard` (or an `Rc`) across an `.await` (take what you
/// need and drop the guard first, or use `tokio::sync::Mutex`); the
/// compiler's complaint about a future that "is not `Send`" means this.
/// CPU-heavy work belongs in `tokio::task::spawn_blocking`, so other
/// connections are not held up.
pub trait Milter: Send + Sync + 'static {
    /// Per-connection state.
    type Connection: Default + Send + 'static;
    /// Per-message state.
    type Message: Default + Send + 'static;

    /// The steps, actions and macros this filter needs. The runtime asks the
    /// MTA for exactly these (and never for what the MTA did not offer).
    fn requirements(&self) -> Requirements;

    /// The SMTP client connected.
    fn connect(
        &self,
        cx: Ctx<'_, Self>,
        info: &ConnectInfo,
    ) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, info);
        async { Ok(Verdict::Continue) }
    }

    /// HELO or EHLO.
    fn helo(&self, cx: Ctx<'_, Self>, name: &Bytes) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, name);
        async { Ok(Verdict::Continue) }
    }

    /// MAIL FROM.
    fn mail(
        &self,
        cx: Ctx<'_, Self>,
        sender: &Envelope,
    ) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, sender);
        async { Ok(Verdict::Continue) }
    }

    /// RCPT TO. Reject or tempfail here refuses this recipient only.
    fn rcpt(
        &self,
        cx: Ctx<'_, Self>,
        recipient: &Envelope,
    ) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, recipient);
        async { Ok(Verdict::Continue) }
    }

    /// DATA.
    fn data(&self, cx: Ctx<'_, Self>) -> impl Future<Output = StepResult> + Send {
        let _ = cx;
        async { Ok(Verdict::Continue) }
    }

    /// One header.
    fn header(
        &self,
        cx: Ctx<'_, Self>,
        header: &Header,
    ) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, header);
        async { Ok(Verdict::Continue) }
    }

    /// End of headers.
    fn end_of_headers(&self, cx: Ctx<'_, Self>) -> impl Future<Output = StepResult> + Send {
        let _ = cx;
        async { Ok(Verdict::Continue) }
    }

    /// One body chunk (CRLF line ends, at most 64 KiB unless negotiated
    /// larger). The chunk shares the read buffer: keeping it costs no copy.
    fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, chunk);
        async { Ok(Verdict::Continue) }
    }

    /// End of message: the last chance to decide, and the only step where
    /// modifications may be requested (through `mods`).
    fn end_of_message(
        &self,
        cx: Ctx<'_, Self>,
        mods: &mut Modifications,
    ) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, mods);
        async { Ok(Verdict::Continue) }
    }

    /// An SMTP command the MTA did not recognise.
    fn unknown(
        &self,
        cx: Ctx<'_, Self>,
        command: &Bytes,
    ) -> impl Future<Output = StepResult> + Send {
        let _ = (cx, command);
        async { Ok(Verdict::Continue) }
    }

    /// The current message ended without end of message (RSET, a new MAIL,
    /// a rejection, a lost client). Message state is reset after this.
    fn abort(&self, cx: Ctx<'_, Self>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }

    /// Why the current message got its verdict, for the runtime's one log
    /// line per message (`reason=`; the line also has the queue id,
    /// client, sender, recipients, verdict and milliseconds). Asked once,
    /// when the message's outcome is settled. Default: none, and the line
    /// shows the reply text of a refusal, or `-`.
    fn reason(&self, msg: &Self::Message) -> Option<String> {
        let _ = msg;
        None
    }

    /// A small fixed set of words classing [`Milter::reason`] for metrics
    /// (`milter_messages_total{reason="..."}`), e.g. `unencrypted`,
    /// `nonmember`. Default: none, and the runtime counts `policy` for a
    /// refusal, `none` otherwise (`fail_safe`, `aborted` whatever this says).
    fn reason_class(&self, msg: &Self::Message) -> Option<&'static str> {
        let _ = msg;
        None
    }

    /// The connection is ending (QUIT, disconnect, shutdown).
    fn close(&self, cx: Ctx<'_, Self>) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = cx;
        async { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(address: ConnectAddress) -> ConnectInfo {
        ConnectInfo {
            hostname: Bytes::from_static(b"h"),
            address,
        }
    }

    #[test]
    fn ip_and_port_of_each_family() {
        let v4 = info(ConnectAddress::Inet {
            port: 25,
            addr: Bytes::from_static(b"192.0.2.1"),
        });
        assert_eq!(v4.ip(), Some(IpAddr::from([192, 0, 2, 1])));
        assert_eq!(v4.port(), Some(25));
        for text in [&b"2001:db8::1"[..], b"IPv6:2001:db8::1"] {
            let v6 = info(ConnectAddress::Inet6 {
                port: 587,
                addr: Bytes::copy_from_slice(text),
            });
            assert_eq!(v6.ip(), "2001:db8::1".parse().ok(), "{text:?}");
        }
        let bad = info(ConnectAddress::Inet {
            port: 25,
            addr: Bytes::from_static(b"not an address"),
        });
        assert_eq!(bad.ip(), None);
        let unix = info(ConnectAddress::Unix {
            port: 0,
            path: Bytes::new(),
        });
        assert_eq!((unix.ip(), unix.port()), (None, None));
        assert_eq!(info(ConnectAddress::Unknown).ip(), None);
    }
}
