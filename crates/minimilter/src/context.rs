//! What a filter sees besides the step's own data: its state, the macros, the
//! negotiated capabilities, and (at end of message) a place to put
//! modification requests.

use std::borrow::Cow;

use bytes::Bytes;
use milter_proto::{
    Actions, MacroStore, ModifyError, Negotiated, Response, check_modification, check_values,
};

/// The filter's view of one step.
pub struct Context<'a, C, M> {
    /// State for the whole connection.
    pub conn: &'a mut C,
    /// State for the current message (reset when a message starts or aborts).
    pub msg: &'a mut M,
    pub(crate) macros: &'a MacroStore,
    pub(crate) negotiated: &'a Negotiated,
    pub(crate) id: u64,
}

impl<C, M> Context<'_, C, M> {
    /// A macro's value, by name with or without braces (`i`, `{auth_authen}`).
    pub fn macro_value(&self, name: &str) -> Option<&Bytes> {
        self.macros.get(name)
    }

    /// A macro's value as text.
    pub fn macro_str(&self, name: &str) -> Option<Cow<'_, str>> {
        self.macros.get_str(name)
    }

    /// All macros in scope.
    pub fn macros(&self) -> &MacroStore {
        self.macros
    }

    /// The modification actions the MTA granted.
    pub fn actions(&self) -> Actions {
        self.negotiated.actions
    }

    /// The protocol version in use.
    pub fn protocol_version(&self) -> u32 {
        self.negotiated.version
    }

    /// A number identifying this connection in logs.
    pub fn connection_id(&self) -> u64 {
        self.id
    }
}

/// Modification requests made at end of message, sent before the final
/// verdict, in the order made.
///
/// Each request is checked when made, so the filter learns of a problem at
/// once, as a [`ModifyError`], and nothing is queued for it:
/// - the action was negotiated ([`ModifyError::NotNegotiated`]: declare it
///   in [`Requirements::actions`](crate::Requirements::actions); the MTA must
///   offer it too, see [`Context::actions`]);
/// - a header name is not empty and has no `:`, whitespace or control
///   character ([`ModifyError::BadHeaderName`]);
/// - a header value has no CR: lines break with `\n` alone, the MTA adds
///   the CR ([`ModifyError::BadHeaderValue`]);
/// - an address is not empty ([`ModifyError::EmptyAddress`]; the null
///   sender is `<>`);
/// - no string has a NUL byte ([`ModifyError::Nul`]);
/// - the request fits in one packet of the negotiated size
///   ([`ModifyError::TooLarge`]; 64 KiB unless
///   [`Requirements::data_size`](crate::Requirements::data_size) asked for
///   more and the MTA offered it). A replacement body has no limit: it is
///   sent in chunks.
///
/// Returning the error with `?` makes the step fail, and the runtime
/// answers with the fail-safe reply (tempfail by default) and sends none of
/// the requests; a filter that can do without the modification may ignore
/// the error instead.
#[derive(Debug)]
pub struct Modifications {
    /// The actions the MTA granted: all a request is checked against.
    granted: Actions,
    /// The negotiated packet payload limit.
    max_payload: usize,
    requests: Vec<Response>,
}

impl Modifications {
    pub(crate) fn new(granted: Actions, max_payload: usize) -> Self {
        Modifications {
            granted,
            max_payload,
            requests: Vec::new(),
        }
    }

    /// An empty set of requests checked against `granted` and a 64 KiB
    /// packet, outside any connection: for unit tests of code that makes
    /// requests. (The runtime makes the one a filter gets, with what the MTA
    /// granted and the negotiated packet size.)
    pub fn with_actions(granted: Actions) -> Self {
        Modifications::new(granted, milter_proto::DataSize::K64.max_payload())
    }

    pub(crate) fn into_requests(self) -> Vec<Response> {
        self.requests
    }

    fn push(&mut self, r: Response) -> Result<(), ModifyError> {
        check_modification(self.granted, &r)?;
        check_values(&r)?;
        let mut packet = bytes::BytesMut::new();
        r.encode(&mut packet);
        // Length word and command byte are not payload.
        let len = packet.len() - 5;
        if len > self.max_payload {
            return Err(ModifyError::TooLarge {
                len,
                max: self.max_payload,
            });
        }
        self.requests.push(r);
        Ok(())
    }

    /// The requests made so far.
    pub fn requests(&self) -> &[Response] {
        &self.requests
    }

    /// Appends a header. Multi-line values are folded with `\n` followed by
    /// a space or tab (the MTA adds the CR; a line that starts with neither
    /// gets a tab from Postfix, so it stays part of this header).
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), ModifyError> {
        self.push(Response::AddHeader {
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
    }

    /// Inserts a header at `index` (0 = topmost; on Postfix, above its own `Received:`).
    pub fn insert_header(
        &mut self,
        index: u32,
        name: &str,
        value: &str,
    ) -> Result<(), ModifyError> {
        self.push(Response::InsertHeader {
            index,
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
    }

    /// Changes the `index`-th header called `name` (1-based, counted among
    /// the headers of that name, ignoring case; 0 counts as 1); if there
    /// are fewer, the MTA adds one. An empty `value` is sent as a single
    /// space (an empty value on the wire would delete the header; use
    /// [`delete_header`](Self::delete_header) for that).
    pub fn change_header(
        &mut self,
        name: &str,
        index: u32,
        value: &str,
    ) -> Result<(), ModifyError> {
        if value.is_empty() {
            // An empty value means "delete" on the wire; a change to an empty
            // value is a single space.
            return self.push(Response::ChangeHeader {
                index,
                name: Bytes::copy_from_slice(name.as_bytes()),
                value: Bytes::from_static(b" "),
            });
        }
        self.push(Response::ChangeHeader {
            index,
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
    }

    /// Deletes the `index`-th header called `name` (1-based). Postfix
    /// renumbers after a delete, so to delete several of one name go from the
    /// highest index down.
    pub fn delete_header(&mut self, name: &str, index: u32) -> Result<(), ModifyError> {
        self.push(Response::ChangeHeader {
            index,
            name: Bytes::copy_from_slice(name.as_bytes()),
            value: Bytes::new(),
        })
    }

    /// Adds an envelope recipient.
    pub fn add_recipient(&mut self, rcpt: &str) -> Result<(), ModifyError> {
        self.push(Response::AddRcpt(Bytes::copy_from_slice(rcpt.as_bytes())))
    }

    /// Adds an envelope recipient with ESMTP arguments (Postfix keeps only
    /// `NOTIFY` and `ORCPT`).
    pub fn add_recipient_with_args(&mut self, rcpt: &str, args: &str) -> Result<(), ModifyError> {
        self.push(Response::AddRcptPar {
            rcpt: Bytes::copy_from_slice(rcpt.as_bytes()),
            args: Some(Bytes::copy_from_slice(args.as_bytes())),
        })
    }

    /// Removes an envelope recipient (as given at RCPT TO).
    pub fn delete_recipient(&mut self, rcpt: &str) -> Result<(), ModifyError> {
        self.push(Response::DelRcpt(Bytes::copy_from_slice(rcpt.as_bytes())))
    }

    /// Changes the envelope sender, optionally with ESMTP arguments (Postfix
    /// keeps only `RET` and `ENVID`).
    pub fn change_sender(&mut self, sender: &str, args: Option<&str>) -> Result<(), ModifyError> {
        self.push(Response::ChangeFrom {
            sender: Bytes::copy_from_slice(sender.as_bytes()),
            args: args.map(|a| Bytes::copy_from_slice(a.as_bytes())),
        })
    }

    /// Replaces the whole body (CRLF line ends). Sent in 65535-byte chunks.
    /// Replaces any earlier replacement made in this call.
    pub fn replace_body(&mut self, body: Bytes) -> Result<(), ModifyError> {
        check_modification(self.granted, &Response::ReplaceBody(Bytes::new()))?;
        self.requests
            .retain(|r| !matches!(r, Response::ReplaceBody(_)));
        self.requests.push(Response::ReplaceBody(body));
        Ok(())
    }

    /// Puts the message on hold with a reason (Postfix keeps 100 bytes of it).
    pub fn quarantine(&mut self, reason: &str) -> Result<(), ModifyError> {
        self.push(Response::Quarantine(Bytes::copy_from_slice(
            reason.as_bytes(),
        )))
    }
}
