//! The relay's sockets: plain blocking sockets, each direction read and
//! written by its own thread (see `super::relay`).
//!
//! A blocked `recv(2)` is woken by the kernel when the peer writes, with no
//! event loop in between: per hop one `recvfrom` and one `sendto`, as an
//! MTA's own blocking milter client does. Timeouts are the sockets' own
//! (`SO_RCVTIMEO` for the idle timeout, `SO_SNDTIMEO` for the write
//! timeout), and a thread blocked in either is woken by `shutdown(2)` of
//! its socket from another thread.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// A connected unix or TCP socket, in blocking mode.
#[derive(Debug)]
pub enum Stream {
    /// Unix domain.
    Unix(std::os::unix::net::UnixStream),
    /// TCP.
    Tcp(std::net::TcpStream),
}

impl Stream {
    /// Takes over a tokio unix socket (it is switched to blocking mode).
    pub fn unix(s: tokio::net::UnixStream) -> io::Result<Stream> {
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        Ok(Stream::Unix(s))
    }

    /// Takes over a tokio TCP socket (it is switched to blocking mode).
    pub fn tcp(s: tokio::net::TcpStream) -> io::Result<Stream> {
        let s = s.into_std()?;
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        Ok(Stream::Tcp(s))
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    fn write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    /// `shutdown(2)`: `Write` is a half close (the peer reads its end);
    /// `Both` also wakes a thread blocked reading or writing this socket.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Tcp(s) => s.shutdown(how),
        }
    }

    /// `SO_RCVTIMEO`: a read that waits this long fails with `WouldBlock`.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }

    /// `SO_SNDTIMEO`: a write that waits this long for room returns what
    /// it wrote, or fails with `WouldBlock` if nothing.
    pub fn set_write_timeout(&self, t: Duration) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
        }
    }

    /// Reads what has arrived onto the end of `buf`; waits until something
    /// has, or the read timeout. 0 is the end of the stream.
    pub fn read_into(&self, buf: &mut ReadBuf) -> io::Result<usize> {
        let n = self.read(buf.spare())?;
        buf.end += n;
        Ok(n)
    }

    /// Writes all of `data` within `timeout` (the socket's write timeout,
    /// which this leaves as it found it). A write that fits the socket
    /// buffer is one system call.
    pub fn write_all(&self, mut data: &[u8], timeout: Duration) -> io::Result<()> {
        // (Reading the clock is a vDSO call, not a system call.)
        let deadline = Instant::now() + timeout;
        let mut shortened = false;
        let result = loop {
            if data.is_empty() {
                break Ok(());
            }
            match self.write(data) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    data = &data[n..];
                    if data.is_empty() {
                        break Ok(());
                    }
                    // A partial write (the peer reads slowly): what is left
                    // gets only what remains of the timeout, not a new one.
                    match deadline.checked_duration_since(Instant::now()) {
                        Some(left) if !left.is_zero() => {
                            shortened = true;
                            if let Err(e) = self.set_write_timeout(left) {
                                break Err(e);
                            }
                        }
                        _ => break Err(io::ErrorKind::TimedOut.into()),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    break Err(io::ErrorKind::TimedOut.into());
                }
                Err(e) => break Err(e),
            }
        };
        if shortened {
            let _ = self.set_write_timeout(timeout);
        }
        result
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Stream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        (Stream::Unix(a), b)
    }

    #[test]
    fn reads_writes_and_half_closes() {
        let (s, mut peer) = pair();
        let mut buf = ReadBuf::default();
        peer.write_all(b">").unwrap();
        s.read_into(&mut buf).unwrap();
        peer.write_all(b"hello").unwrap();
        s.read_into(&mut buf).unwrap();
        assert_eq!(buf.bytes(), b">hello", "appended to what the buffer held");
        buf.consume(1);
        assert_eq!(buf.bytes(), b"hello");
        s.write_all(b"world", Duration::from_secs(5)).unwrap();
        let mut got = [0u8; 5];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"world");
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(peer.read(&mut got).unwrap(), 0, "the peer sees the end");
        drop(peer);
        assert_eq!(
            s.read_into(&mut buf).unwrap(),
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

    #[test]
    fn a_write_larger_than_the_socket_buffer_waits_for_the_reader() {
        let (s, mut peer) = pair();
        // Far more than a unix socket buffers: the write must wait for room.
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        s.set_write_timeout(Duration::from_secs(60)).unwrap();
        s.write_all(&data, Duration::from_secs(60)).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(reader.join().unwrap(), data);
    }

    #[test]
    fn a_write_the_reader_does_not_take_times_out_as_a_whole() {
        let (s, _peer) = pair();
        let timeout = Duration::from_millis(300);
        s.set_write_timeout(timeout).unwrap();
        // Fills the socket buffer and more; nobody reads.
        let data = vec![7u8; 8 << 20];
        let e = s.write_all(&data, timeout).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn a_read_with_nothing_arriving_ends_at_the_read_timeout() {
        let (s, _peer) = pair();
        s.set_read_timeout(Duration::from_millis(50)).unwrap();
        let e = s.read_into(&mut ReadBuf::default()).unwrap_err();
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        );
    }

    #[test]
    fn shutdown_from_another_thread_wakes_a_blocked_read() {
        let (s, _peer) = pair();
        let s = std::sync::Arc::new(s);
        let other = s.clone();
        let t = std::thread::spawn(move || other.read_into(&mut ReadBuf::default()));
        std::thread::sleep(Duration::from_millis(50));
        s.shutdown(Shutdown::Both).unwrap();
        assert_eq!(
            t.join().unwrap().unwrap(),
            0,
            "woken with the end of stream"
        );
    }
}
