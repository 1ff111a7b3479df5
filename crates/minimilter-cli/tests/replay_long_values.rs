//! A replay difference in a replaced body (or any long value) is shown
//! cut to a readable length with its size, not printed whole: a 100 KB
//! body replaced by a milter would otherwise fill the report twice over.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use minimilter::interop::ActionMilter;
use minimilter::{Listener, Server, ServerConfig, SocketSpec};
use support::{Proxy, minimilter, scratch, transcripts};

#[test]
fn long_values_in_differences_are_cut_with_their_size() {
    let base = scratch("long-values");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let milter_sock = base.join("action.sock");
    let listener = rt
        .block_on(Listener::bind(
            &SocketSpec::Unix(milter_sock.clone()),
            &Default::default(),
        ))
        .unwrap();
    rt.spawn(
        Server::new(ActionMilter, ServerConfig::default())
            .serve(vec![listener], std::future::pending()),
    );
    let milter = format!("unix:{}", milter_sock.display());
    let listen = base.join("record.sock");
    let dir = base.join("transcripts");
    let proxy = Proxy::start(&listen, &milter, &dir, &[]);
    let msg = base.join("m.eml");
    std::fs::write(
        &msg,
        "From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n\
         X-Action: replace-body 100000\r\n\r\nbody\r\n",
    )
    .unwrap();
    let o = Command::new(minimilter())
        .arg("check")
        .arg(format!("unix:{}", listen.display()))
        .arg(&msg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while transcripts(&dir).is_empty() {
        assert!(Instant::now() < deadline, "{}", proxy.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    // As if recorded from another version of the milter: "fox" was "cat".
    let file = &transcripts(&dir)[0];
    let text = std::fs::read_to_string(file).unwrap();
    assert!(
        text.contains("\"code\":\"b\""),
        "a replace-body was recorded"
    );
    std::fs::write(file, text.replace("brown fox", "brown cat")).unwrap();

    let o = Command::new(minimilter())
        .arg("replay")
        .arg(&dir)
        .arg(&milter)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("modifications differ"), "{out}");
    let longest = out.lines().map(str::len).max().unwrap();
    assert!(longest < 2000, "a line of {longest} bytes");
    assert!(
        out.contains("brown cat"),
        "the start of the recorded body: {out}"
    );
    assert!(
        out.contains("brown fox"),
        "the start of the replayed body: {out}"
    );
    assert!(out.contains("bytes)"), "the size of what was cut: {out}");

    // A difference deep inside a long value is shown where it is.
    let mut deep = text.clone();
    let at = deep.match_indices("lazy dog").nth(800).unwrap().0;
    deep.replace_range(at..at + 8, "lazy CAT");
    std::fs::write(file, deep).unwrap();
    let o = Command::new(minimilter())
        .arg("replay")
        .arg(&dir)
        .arg(&milter)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("lazy CAT"),
        "the recorded value where it differs: {out}"
    );
    let longest = out.lines().map(str::len).max().unwrap();
    assert!(longest < 2000, "a line of {longest} bytes");
    drop(proxy);
    let _ = std::fs::remove_dir_all(&base);
}
