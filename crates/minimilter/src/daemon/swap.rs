//! A filter whose policy a reload replaces while the daemon serves.
//!
//! [`Reloadable`] holds the filter in force; [`Swap::replace`] puts a new
//! one in its place. Each MTA connection keeps the filter it started with
//! until it closes, so one message (and its connection's state) is judged
//! by one policy from start to end; the next connection gets the new one.
//! Postfix opens a milter connection per SMTP session, so a new policy is
//! in force from the next SMTP session on.
//!
//! A connection negotiates with the MTA (the steps and macros it gets)
//! before its first step takes the filter in force, so a new filter must
//! ask the MTA for exactly what the old one did: [`Swap::replace`]
//! refuses one that does not (that change needs a restart).

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use milter_proto::Requirements;

use crate::context::{Context, Modifications};
use crate::filter::{ConnectInfo, Ctx, Envelope, Header, Milter, StepResult};

/// The filter in force, shared by [`Reloadable`] and its [`Swap`]s.
type Slot<M> = Arc<RwLock<Arc<M>>>;

/// A filter that serves `M` and can be given a new `M` while serving.
pub struct Reloadable<M> {
    current: Slot<M>,
}

/// Replaces the filter a [`Reloadable`] serves.
pub struct Swap<M> {
    current: Slot<M>,
}

impl<M> Clone for Swap<M> {
    fn clone(&self) -> Self {
        Swap {
            current: self.current.clone(),
        }
    }
}

impl<M: Milter> Reloadable<M> {
    /// Serves `milter` until replaced through the returned [`Swap`].
    pub fn new(milter: M) -> (Reloadable<M>, Swap<M>) {
        let current = Arc::new(RwLock::new(Arc::new(milter)));
        (
            Reloadable {
                current: current.clone(),
            },
            Swap { current },
        )
    }

    fn current(&self) -> Arc<M> {
        read(&self.current)
    }
}

impl<M: Milter> Swap<M> {
    /// New connections get `milter`; those open keep theirs. Refused
    /// (the running filter stays) if `milter` needs other steps, actions
    /// or macros from the MTA than the running one.
    pub fn replace(&self, milter: M) -> Result<(), String> {
        let mut slot = self.current.write().unwrap_or_else(|e| e.into_inner());
        if milter.requirements() != slot.requirements() {
            return Err(
                "the new settings change what the milter asks of the MTA (steps, actions, \
                 macros); restart to apply them"
                    .into(),
            );
        }
        *slot = Arc::new(milter);
        Ok(())
    }

    /// The filter new connections get.
    pub fn current(&self) -> Arc<M> {
        read(&self.current)
    }
}

fn read<M>(slot: &Slot<M>) -> Arc<M> {
    // A panic while the lock was held cannot leave a half-written Arc.
    slot.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// One connection's state: the filter it was given, and that filter's own
/// connection state.
pub struct Pinned<M: Milter> {
    milter: Option<Arc<M>>,
    inner: M::Connection,
}

impl<M: Milter> Default for Pinned<M> {
    fn default() -> Self {
        Pinned {
            milter: None,
            inner: M::Connection::default(),
        }
    }
}

/// The inner filter's view of a step, and the filter the connection is
/// pinned to (taken at its first step).
fn split<'a, M: Milter>(
    slot: &Slot<M>,
    cx: Ctx<'a, Reloadable<M>>,
) -> (Arc<M>, Context<'a, M::Connection, M::Message>) {
    let Context {
        conn,
        msg,
        macros,
        negotiated,
        id,
    } = cx;
    let milter = conn.milter.get_or_insert_with(|| read(slot)).clone();
    (
        milter,
        Context {
            conn: &mut conn.inner,
            msg,
            macros,
            negotiated,
            id,
        },
    )
}

impl<M: Milter> Milter for Reloadable<M> {
    type Connection = Pinned<M>;
    type Message = M::Message;

    fn requirements(&self) -> Requirements {
        self.current().requirements()
    }

    async fn connect(&self, cx: Ctx<'_, Self>, info: &ConnectInfo) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.connect(cx, info).await
    }

    async fn helo(&self, cx: Ctx<'_, Self>, name: &Bytes) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.helo(cx, name).await
    }

    async fn mail(&self, cx: Ctx<'_, Self>, sender: &Envelope) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.mail(cx, sender).await
    }

    async fn rcpt(&self, cx: Ctx<'_, Self>, recipient: &Envelope) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.rcpt(cx, recipient).await
    }

    async fn data(&self, cx: Ctx<'_, Self>) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.data(cx).await
    }

    async fn header(&self, cx: Ctx<'_, Self>, header: &Header) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.header(cx, header).await
    }

    async fn end_of_headers(&self, cx: Ctx<'_, Self>) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.end_of_headers(cx).await
    }

    async fn body(&self, cx: Ctx<'_, Self>, chunk: Bytes) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.body(cx, chunk).await
    }

    async fn end_of_message(&self, cx: Ctx<'_, Self>, mods: &mut Modifications) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.end_of_message(cx, mods).await
    }

    async fn unknown(&self, cx: Ctx<'_, Self>, command: &Bytes) -> StepResult {
        let (m, cx) = split(&self.current, cx);
        m.unknown(cx, command).await
    }

    async fn abort(&self, cx: Ctx<'_, Self>) -> Result<(), crate::BoxError> {
        let (m, cx) = split(&self.current, cx);
        m.abort(cx).await
    }

    // The message state alone says why (the trait gives no connection
    // here): any instance of `M` reads it the same way.
    fn reason(&self, msg: &Self::Message) -> Option<String> {
        self.current().reason(msg)
    }

    fn reason_class(&self, msg: &Self::Message) -> Option<&'static str> {
        self.current().reason_class(msg)
    }

    async fn close(&self, cx: Ctx<'_, Self>) -> Result<(), crate::BoxError> {
        let (m, cx) = split(&self.current, cx);
        m.close(cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use milter_proto::Steps;

    struct Steps1(Steps, &'static str);

    impl Milter for Steps1 {
        type Connection = ();
        type Message = ();
        fn requirements(&self) -> Requirements {
            Requirements {
                steps: self.0,
                ..Requirements::default()
            }
        }
    }

    #[test]
    fn a_filter_needing_other_steps_is_refused_and_the_old_stays() {
        let (r, swap) = Reloadable::new(Steps1(Steps::RCPT, "first"));
        assert!(swap.replace(Steps1(Steps::RCPT, "second")).is_ok());
        assert_eq!(r.current().1, "second");
        let refused = swap.replace(Steps1(Steps::RCPT | Steps::HEADER, "third"));
        assert!(refused.unwrap_err().contains("restart"));
        assert_eq!(swap.current().1, "second");
    }
}
