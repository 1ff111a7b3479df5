//! A reply text whose class differs from its verdict (a 4xx text in a
//! `Reject`) is not sent: the MTA's default text is, and the runtime warns.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use minimilter::{
    ClientConfig, Ctx, Envelope, MessageSpec, Milter, MilterClient, Outcome, Requirements, Server,
    ServerConfig, Shutdown, SmtpReply, Step, StepResult, Steps, Verdict, run_message,
};

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
    let t = rt.block_on(async {
        let server = Server::new(Mismatch, ServerConfig::default());
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
    });
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
