//! A strict, streaming MIME reader: bytes in (any chunking), events out, no
//! I/O.
//!
//! Mail readers disagree about malformed MIME, and every disagreement is a
//! place where a filter and the reader a person uses see different parts.
//! So this reader has **one strict reading**: where two widely used readers
//! could read the bytes differently, it refuses and names the construct
//! ([`MimeError`]). Structure that is merely unusual but unambiguous (an
//! inner boundary that extends the outer one, LF line ends, a missing
//! `MIME-Version`) is read as RFC 2045/2046 say.
//!
//! Layers, one module each:
//! * [`fields`]: RFC 5322 header fields of one entity, and the MIME fields
//!   among them (`Content-Type`, `Content-Transfer-Encoding`,
//!   `Content-Disposition`) parsed into a [`Part`];
//! * [`structure`]: RFC 2046 nesting (multiparts with exact delimiter
//!   matching, encapsulated `message/rfc822`), the [`Reader`];
//! * [`transfer`]: incremental base64 / quoted-printable decoding.
//!
//! Memory is a small constant per message whatever its size: one line of at
//! most 998 octets, the three MIME fields of each open entity (at most
//! [`fields::MAX_FIELD`] each), one boundary per open multipart, and a
//! decoding buffer the size of the chunk being fed.

pub mod fields;
pub mod structure;
pub mod transfer;

use thiserror::Error;

pub use fields::{Encoding, MediaType, Part};
pub use structure::{MAX_MESSAGE_NESTING, MAX_MULTIPART_NESTING, Reader};

/// Why the reader refuses a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MimeError {
    /// A construct widely used readers read differently.
    #[error("ambiguous MIME: {0}")]
    Ambiguous(String),
    /// Structure that is incomplete or exceeds what is read (truncated,
    /// nested too deep).
    #[error("{0}")]
    Malformed(String),
}

impl MimeError {
    pub(crate) fn ambiguous(why: impl Into<String>) -> MimeError {
        MimeError::Ambiguous(why.into())
    }
    pub(crate) fn malformed(why: impl Into<String>) -> MimeError {
        MimeError::Malformed(why.into())
    }
}

/// What the reader reports, in message order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// An entity begins (the message itself at depth 0, then every part
    /// and encapsulated message). Its body follows: leaf bytes, or
    /// preamble, child entities and epilogue, or one encapsulated entity.
    Start(&'a Part),
    /// Decoded bytes of the current leaf (transfer encoding undone).
    Body(&'a [u8]),
    /// Raw text before the first delimiter of the innermost multipart.
    Preamble(&'a [u8]),
    /// Raw text after the closing delimiter of the innermost multipart.
    Epilogue(&'a [u8]),
    /// The innermost open entity ends.
    End,
    /// The message ends (after every `End`).
    Finished,
}

/// A reader error, or the sink's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError<E> {
    /// The bytes are refused.
    Mime(MimeError),
    /// The event sink stopped the reading.
    Sink(E),
}

impl<E> From<MimeError> for ReadError<E> {
    fn from(e: MimeError) -> Self {
        ReadError::Mime(e)
    }
}

/// What a message reads as: the events with adjacent text merged, or the
/// refusal. The same for every chunking of the same bytes; for tests and
/// fuzzing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transcript {
    /// The events in order.
    Read(Vec<Item>),
    /// Refused, after the events so far.
    Refused(Vec<Item>, MimeError),
}

/// One merged event of a [`Transcript`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A part begins.
    Start(Part),
    /// Decoded leaf bytes.
    Body(Vec<u8>),
    /// Preamble text.
    Preamble(Vec<u8>),
    /// Epilogue text.
    Epilogue(Vec<u8>),
    /// A part ends.
    End,
    /// The message ends.
    Finished,
}

/// Reads `message` fed in pieces cut at `cuts` (offsets, any order).
pub fn transcript(message: &[u8], cuts: &[usize]) -> Transcript {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(message.len())).collect();
    cuts.push(0);
    cuts.push(message.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut items: Vec<Item> = Vec::new();
    let mut sink = |e: Event<'_>| -> Result<(), std::convert::Infallible> {
        let merge = |items: &mut Vec<Item>, b: &[u8], f: fn(Vec<u8>) -> Item| match (
            items.last_mut(),
            f(Vec::new()),
        ) {
            (Some(Item::Body(v)), Item::Body(_))
            | (Some(Item::Preamble(v)), Item::Preamble(_))
            | (Some(Item::Epilogue(v)), Item::Epilogue(_)) => v.extend_from_slice(b),
            _ => items.push(f(b.to_vec())),
        };
        match e {
            Event::Start(p) => items.push(Item::Start(p.clone())),
            Event::Body(b) => merge(&mut items, b, Item::Body),
            Event::Preamble(b) => merge(&mut items, b, Item::Preamble),
            Event::Epilogue(b) => merge(&mut items, b, Item::Epilogue),
            Event::End => items.push(Item::End),
            Event::Finished => items.push(Item::Finished),
        }
        Ok(())
    };
    let mut reader = Reader::new();
    let mut result = Ok(());
    for w in cuts.windows(2) {
        result = reader.feed(&message[w[0]..w[1]], &mut sink);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = reader.finish(&mut sink);
    }
    match result {
        Ok(()) => Transcript::Read(items),
        Err(ReadError::Mime(e)) => Transcript::Refused(items, e),
        Err(ReadError::Sink(never)) => match never {},
    }
}
