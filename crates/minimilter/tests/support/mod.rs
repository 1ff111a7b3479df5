//! A scripted MTA for runtime tests: sends commands, reads responses, over any stream.

#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use milter_proto::{Actions, Command, FrameDecoder, OptNeg, Protocol, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub struct Mta<S> {
    pub stream: S,
    buf: BytesMut,
    dec: FrameDecoder,
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// What Postfix 3.x offers.
pub fn postfix_offer() -> OptNeg {
    OptNeg {
        version: 6,
        actions: Actions::from_bits_retain(0x1FF),
        protocol: Protocol::from_bits_retain(0x1F_FFFF),
        macros: vec![],
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Mta<S> {
    pub fn new(stream: S) -> Self {
        Mta {
            stream,
            buf: BytesMut::new(),
            dec: FrameDecoder::new(1 << 30),
        }
    }

    pub async fn send(&mut self, cmd: Command) {
        let mut out = BytesMut::new();
        cmd.encode(&mut out);
        self.stream.write_all(&out).await.expect("write to milter");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to milter");
    }

    /// The next response, or None at EOF; panics after 10 s of silence.
    pub async fn recv(&mut self) -> Option<Response> {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("milter answered within 10 s")
    }

    /// Err(()) on timeout.
    pub async fn recv_within(&mut self, d: Duration) -> Result<Option<Response>, ()> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).expect("valid framing") {
                return Ok(Some(Response::parse(f).expect("valid response")));
            }
            let n = match tokio::time::timeout(d, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
            };
            if n == 0 {
                assert!(
                    self.buf.is_empty(),
                    "EOF inside a packet: {:?}",
                    &self.buf[..]
                );
                return Ok(None);
            }
        }
    }

    /// Reads responses until a final one; returns (modifications and progress, final).
    pub async fn until_final(&mut self) -> (Vec<Response>, Response) {
        let mut mods = Vec::new();
        loop {
            let r = self.recv().await.expect("a response, not EOF");
            if r.is_final() {
                return (mods, r);
            }
            mods.push(r);
        }
    }

    pub async fn negotiate(&mut self, offer: OptNeg) -> OptNeg {
        self.send(Command::OptNeg(offer)).await;
        match self.recv().await {
            Some(Response::OptNeg(o)) => o,
            other => panic!("expected OPTNEG reply, got {other:?}"),
        }
    }

    pub async fn expect_eof(&mut self) {
        match self.recv_within(Duration::from_secs(10)).await {
            Ok(None) => {}
            other => panic!("expected the milter to close, got {other:?}"),
        }
    }
}
