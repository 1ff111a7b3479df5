//! What the runtime makes of a verdict or a setting a filter gets wrong: a
//! reply text whose class differs from its verdict (a 4xx text in a
//! `Reject`) is not sent, the MTA's default text is, and the runtime warns;
//! a zero progress interval is raised to the floor, not a flood.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minimilter::{
    ClientConfig, Ctx, Envelope, MessageSpec, Milter, MilterClient, Outcome, Requirements, Server,
    ServerConfig, Shutdown, SmtpReply, Step, StepResult, Steps, Transcript, Verdict, run_message,
};

/// One default message through `milter` served with `cfg` over an
/// in-memory pipe, as our MTA-side client plays it (bounded: 20 s).
async fn one_message<M: Milter>(milter: M, cfg: ServerConfig) -> Transcript {
    let server = Server::new(milter, cfg);
    let (mta, milter_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move { server.serve_stream(milter_end, Shutdown::new()).await });
    let mut client = MilterClient::negotiate(Box::new(mta), ClientConfig::default())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(20),
        run_message(&mut client, &MessageSpec::default()),
    )
    .await
    .unwrap()
    .unwrap()
}

struct Mismatch;

impl Milter for Mismatch {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements {
            steps: Steps::MAIL,
            ..Requirements::default()
        }
    }

    async fn mail(&self, _cx: Ctx<'_, Self>, _sender: &Envelope) -> StepResult {
        let text = SmtpReply::new(451, Some("4.7.1"), "later, please")?;
        Ok(Verdict::reject_with(text))
    }
}

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_reject_with_a_4xx_text_sends_the_default_reject_and_warns() {
    let log = Buffer::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = rt.block_on(one_message(Mismatch, ServerConfig::default()));
    assert_eq!(
        t.outcome,
        Outcome::Rejected {
            at: Step::Mail,
            reply: None
        }
    );
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("reject with a 4xx reply text: the text is not sent"),
        "{text}"
    );
}

struct SlowEnd;

impl Milter for SlowEnd {
    type Connection = ();
    type Message = ();

    fn requirements(&self) -> Requirements {
        Requirements::default()
    }

    async fn end_of_message(
        &self,
        _cx: Ctx<'_, Self>,
        _mods: &mut minimilter::Modifications,
    ) -> StepResult {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(Verdict::Continue)
    }
}

#[test]
fn a_zero_progress_interval_does_not_flood_the_mta() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cfg = ServerConfig {
        progress_interval: Duration::ZERO,
        ..ServerConfig::default()
    };
    let t = rt.block_on(one_message(SlowEnd, cfg));
    assert_eq!(t.outcome, Outcome::Accepted);
    let eom = &t.steps.last().unwrap().outcome;
    assert_eq!(eom.step, Step::EndOfMessage);
    // At most one per MIN_PROGRESS_INTERVAL of the time it took (before
    // the floor: one per loop turn, 178 in 200 ms over an in-memory pipe).
    let most = eom.elapsed.as_millis() / minimilter::config::MIN_PROGRESS_INTERVAL.as_millis();
    assert!(
        u128::from(eom.progress) <= most,
        "{} progress packets in {:?}",
        eom.progress,
        eom.elapsed
    );
}
