//! The transcript writer: one thread that turns the relays' packets into
//! transcripts (parsing, JSON) and writes them to the store, so that none
//! of that work sits between the MTA and the milter.
//!
//! It is fed through a bounded queue. A relay never waits for room: when
//! the queue is full it stops recording its connection (see
//! [`super::proxy`]), and this thread then drops that connection's
//! unfinished transcript, counts it and logs it. Transcripts finished
//! before that are written as usual, and recording resumes at the
//! connection's next transaction ([`Note::Resumed`]): the connection is
//! started over from the context the relay kept.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use milter_proto::Frame;
use tokio::sync::mpsc::Receiver;
use tokio::sync::mpsc::error::TryRecvError;

use super::priority::WriterPriority;
use super::proxy::{CONNECTIONS_NOT_RECORDED, Note, Side, unix_ms};
use super::store::Store;
use crate::transcript::Bodies;
use crate::transcript::recorder::{Finished, Recorder};

/// What the writer did, for its last log line (and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Transcripts written.
    pub written: u64,
    /// Transcripts that could not be written (disk errors).
    pub failed: u64,
    /// Times a connection stopped being recorded because the queue was
    /// full (its unfinished transcript is dropped).
    pub dropped: u64,
    /// Times recording of such a connection started again at a
    /// transaction boundary.
    pub resumed: u64,
    /// Transactions not recorded because of those stops: the unfinished
    /// one and those begun before recording resumed or the connection
    /// ended.
    pub not_recorded: u64,
}

/// How long a busy writer sleeps before taking what has queued (at most a
/// few hundred notes at the highest rates measured; the queue holds 4096).
const POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Feeds relayed packets to a connection's recorder.
fn feed(r: &mut Recorder, packets: Vec<(Side, u64, Frame)>) {
    for (side, at_us, frame) in packets {
        match side {
            Side::Mta => r.mta_sent(frame, at_us),
            Side::Milter => r.milter_sent(frame, at_us),
        }
    }
}

/// Runs until every sender is gone and the queue is empty.
pub fn run(
    mut rx: Receiver<Note>,
    mut store: Store,
    bodies: Bodies,
    priority: &WriterPriority,
) -> Totals {
    priority.start_on_writer();
    let mut recorders: HashMap<u64, Recorder> = HashMap::new();
    let mut totals = Totals::default();
    let write = |store: &mut Store, f: Finished, totals: &mut Totals| {
        tracing::info!(
            connection = f.connection,
            transaction = f.transaction,
            verdict = %f.verdict.describe(),
            "transaction recorded"
        );
        match store.write(&f, unix_ms()) {
            Ok(_) => totals.written += 1,
            Err(e) => {
                totals.failed += 1;
                tracing::error!("{e:#}");
            }
        }
    };
    // While notes keep coming the thread wakes on a timer and takes what
    // queued meanwhile; only an idle writer blocks on the queue. A relay's
    // send then wakes nobody (no futex call on the mail's path, no switch
    // to this thread per transaction), and the writer works in batches.
    let mut busy = false;
    loop {
        let note = match rx.try_recv() {
            Ok(n) => n,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) if busy => {
                priority.caught_up();
                busy = false;
                std::thread::sleep(POLL);
                continue;
            }
            Err(TryRecvError::Empty) => {
                priority.caught_up();
                match rx.blocking_recv() {
                    Some(n) => n,
                    None => break,
                }
            }
        };
        busy = true;
        match note {
            Note::Open {
                connection,
                started_unix_ms,
            } => {
                recorders.insert(
                    connection,
                    Recorder::new(connection, started_unix_ms, bodies),
                );
            }
            Note::Refused {
                connection,
                refused,
            } => {
                if let Some(r) = recorders.get_mut(&connection) {
                    r.set_refused(refused);
                }
            }
            Note::Packets {
                connection,
                packets,
            } => {
                let Some(r) = recorders.get_mut(&connection) else {
                    continue;
                };
                feed(r, packets);
                for f in r.take_finished() {
                    write(&mut store, f, &mut totals);
                }
            }
            Note::Resumed {
                connection,
                started_unix_ms,
                refused,
                context,
                transactions,
            } => {
                let last = recorders
                    .remove(&connection)
                    .map_or(0, |r| r.last_written());
                let mut r = Recorder::new(connection, started_unix_ms, bodies);
                if let Some(refused) = refused {
                    r.set_refused(refused);
                }
                feed(&mut r, context);
                let transactions = u32::try_from(transactions).unwrap_or(u32::MAX);
                let gap = transactions.saturating_sub(last);
                r.resume_after(transactions, gap);
                recorders.insert(connection, r);
                totals.dropped += 1;
                totals.resumed += 1;
                totals.not_recorded += u64::from(gap);
                tracing::warn!(
                    connection,
                    gap,
                    dropped = totals.dropped,
                    total_not_recorded = totals.not_recorded,
                    "recording resumed; transactions of this connection not recorded while \
                     the writer's queue was full: {gap}"
                );
            }
            Note::Closed {
                connection,
                at_us,
                reason,
                lost,
                transactions,
            } => {
                let r = recorders.remove(&connection);
                match (r, lost) {
                    (Some(mut r), false) => {
                        r.closed(at_us, &reason);
                        for f in r.take_finished() {
                            write(&mut store, f, &mut totals);
                        }
                    }
                    (r, _) => {
                        let last = r.map_or(0, |r| u64::from(r.last_written()));
                        let gap = transactions.saturating_sub(last);
                        totals.dropped += 1;
                        totals.not_recorded += gap;
                        tracing::warn!(
                            connection,
                            gap,
                            dropped = totals.dropped,
                            total_not_recorded = totals.not_recorded,
                            connections_stopped = CONNECTIONS_NOT_RECORDED.load(Ordering::Relaxed),
                            "connection ended while not recorded (the writer's queue was full); \
                             its transactions not recorded: {gap}"
                        );
                    }
                }
            }
        }
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(code: u8, payload: &[u8]) -> Frame {
        Frame {
            code,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn transaction() -> Vec<(Side, u64, Frame)> {
        let mut opt = Vec::new();
        for v in [6u32, 0x1FF, 0] {
            opt.extend_from_slice(&v.to_be_bytes());
        }
        vec![
            (Side::Mta, 1, frame(b'O', &opt)),
            (Side::Milter, 2, frame(b'O', &opt)),
            (Side::Mta, 3, frame(b'M', b"<a@example.com>\0")),
            (Side::Milter, 4, frame(b'c', b"")),
            (Side::Mta, 5, frame(b'E', b"")),
            (Side::Milter, 6, frame(b'a', b"")),
            (Side::Mta, 7, frame(b'Q', b"")),
        ]
    }

    #[test]
    fn complete_connections_are_written_and_lost_ones_dropped_and_counted() {
        let dir = std::env::temp_dir().join(format!("mm-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir, 1 << 20, 3600).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        for (connection, lost) in [(1, false), (2, true)] {
            tx.try_send(Note::Open {
                connection,
                started_unix_ms: 1000,
            })
            .unwrap();
            tx.try_send(Note::Packets {
                connection,
                packets: transaction(),
            })
            .unwrap();
            tx.try_send(Note::Closed {
                connection,
                at_us: 9,
                reason: "closed".into(),
                lost,
                transactions: 1,
            })
            .unwrap();
        }
        drop(tx);
        let totals = run(rx, store, Bodies::Keep, &WriterPriority::default());
        // Connection 2's transaction had ended (QUIT) before its loss: it is
        // written; only the unfinished remainder is dropped.
        assert_eq!(
            totals,
            Totals {
                written: 2,
                failed: 0,
                dropped: 1,
                resumed: 0,
                not_recorded: 0,
            }
        );
        let files = super::super::store::list_transcripts(&dir).unwrap();
        assert_eq!(files.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
