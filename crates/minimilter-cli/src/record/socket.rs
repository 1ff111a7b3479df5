//! The relay's sockets, registered with the event loop for *reading only*.
//!
//! tokio's own socket types register every socket for both read and write
//! readiness. For a unix or TCP socket that means: each time the peer reads
//! what was sent to it, the kernel signals "writable" to this side, and a
//! relay asleep waiting for the peer's answer is woken for nothing (and the
//! peer, which triggered the wake-up from inside its read, is often
//! preempted by it). A relay makes two hops per milter step, so that was
//! two needless wake-ups and context switches per step on the mail's path.
//!
//! Here a socket is registered for read readiness only. A write is tried
//! directly; only if the socket buffer is full (a large body chunk to a slow
//! reader) is a second descriptor of the same socket registered for write
//! readiness, for as long as that write waits.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A connected unix or TCP socket (non-blocking).
#[derive(Debug)]
pub enum Inner {
    /// Unix domain.
    Unix(std::os::unix::net::UnixStream),
    /// TCP.
    Tcp(std::net::TcpStream),
}

impl Inner {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Inner::Unix(s) => (&*s).read(buf),
            Inner::Tcp(s) => (&*s).read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Inner::Unix(s) => (&*s).write(buf),
            Inner::Tcp(s) => (&*s).write(buf),
        }
    }

    fn try_clone(&self) -> io::Result<Inner> {
        Ok(match self {
            Inner::Unix(s) => Inner::Unix(s.try_clone()?),
            Inner::Tcp(s) => Inner::Tcp(s.try_clone()?),
        })
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Inner::Unix(s) => s.shutdown(Shutdown::Write),
            Inner::Tcp(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl AsRawFd for Inner {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl AsFd for Inner {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Inner::Unix(s) => s.as_fd(),
            Inner::Tcp(s) => s.as_fd(),
        }
    }
}

/// Room for a read when no longer packet is under way, and the size a
/// read buffer returns to once empty if a long packet made it larger than
/// [`KEEP`].
const MIN_READ: usize = 16 * 1024;
/// Most room added for one read of a long packet: memory follows the bytes
/// that arrive, not what a (possibly hostile) length field promises.
const MAX_STEP: usize = 256 * 1024;
/// A read buffer up to this size is kept as it is when it empties (room for
/// one 64 KiB body chunk, Postfix's and Sendmail's largest, and its header).
const KEEP: usize = 128 * 1024;

/// One direction's read buffer: read into in place and reused for the
/// connection's life, so relaying allocates nothing per packet or message.
/// (Packets handed to the transcript writer are copied out of it; see
/// `proxy::Batch`.)
#[derive(Debug)]
pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf {
            data: vec![0; MIN_READ],
            start: 0,
            end: 0,
        }
    }
}

impl ReadBuf {
    /// The bytes read and not yet consumed.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Drops the first `n` bytes of [`ReadBuf::bytes`].
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end);
        if self.start >= self.end {
            (self.start, self.end) = (0, 0);
            if self.data.len() > KEEP {
                self.data.truncate(MIN_READ);
                self.data.shrink_to_fit();
            }
        }
    }

    /// Room for the next read: [`MIN_READ`], or what the packet at the front
    /// still lacks, up to [`MAX_STEP`] more. Moves a partial packet to the
    /// front first if that makes the room.
    fn spare(&mut self) -> &mut [u8] {
        let have = self.bytes();
        let want = match have.get(..4) {
            Some(h) => (4 + u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize)
                .saturating_sub(have.len())
                .clamp(MIN_READ, MAX_STEP),
            None => MIN_READ,
        };
        if self.data.len() - self.end < want {
            self.data.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.data.len() - self.end < want {
                self.data.resize(self.end + want, 0);
            }
        }
        &mut self.data[self.end..]
    }
}

/// Registers `inner` with the runtime for `interest` only.
///
/// `unsafe` is needed because tokio (1.54) offers no safe way to register
/// a socket for one kind of readiness: its socket types always register
/// both, and `AsyncFd::with_interest`, the safe constructor, is deprecated
/// as unsound in general (for a type whose descriptor could change).
fn register(inner: Inner, interest: Interest) -> io::Result<AsyncFd<Inner>> {
    // SAFETY: `register_with_interest` requires the descriptor to stay open
    // and the same for the `AsyncFd`'s whole life. `Inner` owns its socket
    // (a std `UnixStream` or `TcpStream`, closed only when dropped), has no
    // method that replaces it, and `AsyncFd` only hands out `&Inner` here
    // (this module never calls `get_mut` or `into_inner`), so the socket,
    // and with it the descriptor, lives exactly as long as the `AsyncFd`.
    unsafe { AsyncFd::register_with_interest(inner, interest) }.map_err(io::Error::from)
}

/// One end of a relayed connection.
pub struct Socket {
    fd: AsyncFd<Inner>,
}

impl Socket {
    /// Takes over a tokio unix socket.
    pub fn unix(s: tokio::net::UnixStream) -> io::Result<Socket> {
        Socket::new(Inner::Unix(s.into_std()?))
    }

    /// Takes over a tokio TCP socket.
    pub fn tcp(s: tokio::net::TcpStream) -> io::Result<Socket> {
        Socket::new(Inner::Tcp(s.into_std()?))
    }

    fn new(inner: Inner) -> io::Result<Socket> {
        match &inner {
            Inner::Unix(s) => s.set_nonblocking(true)?,
            Inner::Tcp(s) => s.set_nonblocking(true)?,
        }
        Ok(Socket {
            fd: register(inner, Interest::READABLE)?,
        })
    }

    /// Reads what has arrived onto the end of `buf`; waits until something
    /// has. 0 is the end of the stream. Cancel-safe: nothing is read unless
    /// this returns.
    pub async fn read(&self, buf: &mut ReadBuf) -> io::Result<usize> {
        loop {
            let mut ready = self.fd.readable().await?;
            let spare = buf.spare();
            let room = spare.len();
            match ready.try_io(|s| s.get_ref().read(spare)) {
                Ok(Ok(n)) => {
                    // A read that did not fill the room emptied the socket:
                    // the next one would only fail with EAGAIN (one system
                    // call per read for nothing), so readiness is cleared
                    // now. (Only the readiness this guard saw: data that
                    // arrived since then still wakes the next read.)
                    if n > 0 && n < room {
                        ready.clear_ready();
                    }
                    buf.end += n;
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                // Not readable after all: readiness is cleared; wait again.
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        // Registered for write readiness only while a write has to wait.
        let mut waiting: Option<AsyncFd<Inner>> = None;
        while !data.is_empty() {
            let written = match &waiting {
                None => self.fd.get_ref().write(data),
                Some(w) => {
                    let mut ready = w.writable().await?;
                    match ready.try_io(|s| s.get_ref().write(data)) {
                        Ok(r) => r,
                        Err(_would_block) => continue,
                    }
                }
            };
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && waiting.is_none() => {
                    let dup = self.fd.get_ref().try_clone()?;
                    waiting = Some(register(dup, Interest::WRITABLE)?);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Ends the stream this way (a half close): the peer reads its end.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.fd.get_ref().shutdown_write()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (Socket, tokio::net::UnixStream) {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        (Socket::unix(a).unwrap(), b)
    }

    #[tokio::test]
    async fn reads_writes_and_half_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (s, mut peer) = pair().await;
        let mut buf = ReadBuf::default();
        peer.write_all(b">").await.unwrap();
        s.read(&mut buf).await.unwrap();
        peer.write_all(b"hello").await.unwrap();
        s.read(&mut buf).await.unwrap();
        assert_eq!(buf.bytes(), b">hello", "appended to what the buffer held");
        buf.consume(1);
        assert_eq!(buf.bytes(), b"hello");
        s.write_all(b"world").await.unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world");
        s.shutdown_write().unwrap();
        assert_eq!(
            peer.read(&mut got).await.unwrap(),
            0,
            "the peer sees the end"
        );
        drop(peer);
        assert_eq!(
            s.read(&mut buf).await.unwrap(),
            0,
            "and this side sees its end"
        );
        assert_eq!(buf.bytes(), b"hello");
    }

    #[test]
    fn a_read_buffer_grows_with_what_arrives_and_shrinks_once_empty() {
        let mut b = ReadBuf::default();
        // A packet header promising 1 MiB: the room offered grows by at most
        // MAX_STEP per read, not to the promised size at once.
        let header = ((1u32 << 20) + 1).to_be_bytes();
        b.spare()[..4].copy_from_slice(&header);
        b.end += 4;
        assert_eq!(b.spare().len(), MAX_STEP);
        let mut filled = 4;
        while filled < 4 + (1 << 20) + 1 {
            let room = b.spare().len();
            assert!(room <= MAX_STEP + MIN_READ, "room {room}");
            let n = room.min(4 + (1 << 20) + 1 - filled);
            b.end += n;
            filled += n;
        }
        assert_eq!(b.bytes().len(), filled);
        b.consume(filled);
        assert_eq!(b.data.len(), MIN_READ, "back to its first size");
        // A partial packet near the end moves to the front, kept as it was.
        b.data[MIN_READ - 4..MIN_READ - 2].copy_from_slice(b"ab");
        b.end = MIN_READ - 2;
        b.consume(MIN_READ - 4);
        assert!(b.spare().len() >= MIN_READ);
        assert_eq!((b.start, b.bytes()), (0, &b"ab"[..]));
    }

    #[tokio::test]
    async fn a_write_larger_than_the_socket_buffer_waits_for_the_reader() {
        use tokio::io::AsyncReadExt;
        let (s, mut peer) = pair().await;
        // Far more than a unix socket buffers: the write must wait for room.
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        s.write_all(&data).await.unwrap();
        s.shutdown_write().unwrap();
        assert_eq!(reader.await.unwrap(), data);
    }
}
