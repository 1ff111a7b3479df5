//! The milter with pgp-milter's own counter: the message bytes (header
//! lines and body) handed to the policy. Counted here, around the filter,
//! so the filter stays free of metrics; the counter lives outside it and
//! outlives a reload. Refusal classes are the runtime's
//! `milter_messages_total{reason=...}` ([`crate::refusal`]).

use bytes::Bytes;
use minimilter::StepResult;
use minimilter::daemon::Counter;
use minimilter::{ConnectInfo, Ctx, Envelope, Header, Milter, Modifications, Requirements};

use crate::PgpMilter;

/// [`PgpMilter`] counting the bytes it judges.
pub struct Metered {
    inner: PgpMilter,
    bytes: Counter,
}

impl Metered {
    /// `inner`, counting into `bytes`.
    pub fn new(inner: PgpMilter, bytes: Counter) -> Metered {
        Metered { inner, bytes }
    }

    /// The filter counted.
    pub fn inner(&self) -> &PgpMilter {
        &self.inner
    }
}

type Inner = PgpMilter;

fn inner<'a>(cx: Ctx<'a, Metered>) -> Ctx<'a, Inner> {
    // Same state types: the view is the same.
    cx
}

impl Milter for Metered {
    type Connection = <Inner as Milter>::Connection;
    type Message = <Inner as Milter>::Message;

    fn requirements(&self) -> Requirements {
        self.inner.requirements()
    }

    async fn connect(&self, cx: Ctx<'_, Self>, info: &ConnectInfo) -> StepResult {
        self.inner.connect(inner(cx), info).await
    }

    async fn helo(&self, cx: Ctx<'_, Self>, name: &Bytes) -> StepResult {
        self.inner.helo(inner(cx), name).await
    }

    async fn mail(&self, cx: Ctx<'_, Self>, sender: &Envelope) -> StepResult {
        self.inner.mail(inner(cx), sender).await
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, recipient: &Envelope) -> StepResult {
        self.inner.rcpt(inner(cx), recipient).await
    }

    async fn data(&self, cx: Ctx<'_, Self>) -> StepResult {
        self.inner.data(inner(cx)).await
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        // `Name: value` and its line end, as the reader gets it.
        self.bytes
            .inc_by((header.name.len() + header.value.len() + 4) as u64);
        self.inner.header(inner(cx), header).await
    }

    async fn end_of_headers(&self, cx: Ctx<'_, Self>) -> StepResult {
        self.inner.end_of_headers(inner(cx)).await
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        self.bytes.inc_by(chunk.len() as u64);
        self.inner.body(inner(cx), chunk).await
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        self.inner.end_of_message(inner(cx), mods).await
    }

    async fn unknown(&self, cx: Ctx<'_, Self>, command: &Bytes) -> StepResult {
        self.inner.unknown(inner(cx), command).await
    }

    async fn abort(&self, cx: Ctx<'_, Self>) -> Result<(), minimilter::BoxError> {
        self.inner.abort(inner(cx)).await
    }

    fn reason(&self, msg: &Self::Message) -> Option<String> {
        self.inner.reason(msg)
    }

    fn reason_class(&self, msg: &Self::Message) -> Option<&'static str> {
        self.inner.reason_class(msg)
    }

    async fn close(&self, cx: Ctx<'_, Self>) -> Result<(), minimilter::BoxError> {
        self.inner.close(inner(cx)).await
    }
}
