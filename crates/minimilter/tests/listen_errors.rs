//! What binding reports: the address in its family's syntax, and errors
//! whose OS cause is named exactly once when the chain is printed.

use std::error::Error as _;

use minimilter::{ListenError, Listener, SocketSpec, UnixSocketOptions};

/// The chain as `anyhow`'s `{:#}` prints it: each error's text, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

#[tokio::test]
async fn an_ipv6_listener_is_described_as_inet6() {
    // Specs refuse port 0, so bind a free port first.
    let l = Listener::Tcp(
        tokio::net::TcpListener::bind("[::1]:0")
            .await
            .expect("binding [::1] (is IPv6 loopback configured?)"),
    );
    let port = l.tcp_addr().unwrap().port();
    let described = l.local_description();
    assert_eq!(described, format!("inet6:{port}@::1"));
    // And it names the same socket when parsed back.
    assert_eq!(
        described.parse::<SocketSpec>().unwrap(),
        SocketSpec::Inet {
            host: "::1".into(),
            port,
            v6: true
        }
    );
}

#[tokio::test]
async fn an_ipv4_listener_is_described_as_inet() {
    let l = Listener::Tcp(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let port = l.tcp_addr().unwrap().port();
    assert_eq!(l.local_description(), format!("inet:127.0.0.1:{port}"));
}

#[tokio::test]
async fn address_in_use_is_named_once() {
    let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = first.local_addr().unwrap().port();
    let spec: SocketSpec = format!("inet:127.0.0.1:{port}").parse().unwrap();
    let e = Listener::bind(&spec, &UnixSocketOptions::default())
        .await
        .expect_err("the port is taken");
    assert!(matches!(e, ListenError::Io { .. }), "{e:?}");
    let io = e
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .expect("the I/O error is the source");
    assert_eq!(io.kind(), std::io::ErrorKind::AddrInUse);
    let text = chain(&e);
    assert_eq!(text.matches(&io.to_string()).count(), 1, "{text}");
    assert!(text.starts_with(&format!("binding {spec}: ")), "{text}");
}

#[tokio::test]
async fn a_missing_socket_directory_is_named_once() {
    // A directory that is never created.
    let dir = std::env::temp_dir().join(testkit::unique_id("minimilter-no-such-dir"));
    let path = dir.join("m.sock");
    let spec = SocketSpec::Unix(path.clone());
    let e = Listener::bind(&spec, &UnixSocketOptions::default())
        .await
        .expect_err("the directory does not exist");
    assert!(matches!(e, ListenError::NoDirectory { .. }), "{e:?}");
    assert_eq!(
        chain(&e),
        format!(
            "{}: directory {} does not exist",
            path.display(),
            dir.display()
        )
    );
}
