//! The REST backend over `https://`: a fake Mailman REST API behind TLS on
//! 127.0.0.1, with a test CA and server certificates made at test time
//! (rcgen). A certificate the milter can verify (through `ca_file`, or
//! through the system roots, which `SSL_CERT_FILE` replaces for the
//! binary) decides list mail from the API; a certificate for another name,
//! or from a CA not trusted, is a failure that names the cause and keeps
//! the fail-safe (451 for list mail, other mail untouched), as an
//! unreachable API does.

mod in_process;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mailman_milter::rest::Reader;
use mailman_milter::{RestBackend, RestConfig};
use minimilter::transaction::Outcome;
use minimilter::{MessageSpec, MilterClient, run_message};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// Bound on one backend call in these tests.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A CA, written to `ca.pem`, and the server configurations it and a
/// second, untrusted CA sign.
struct Pki {
    dir: tempfile::TempDir,
    /// For 127.0.0.1 and localhost, signed by the CA.
    good: Arc<rustls::ServerConfig>,
    /// For mailman.example.org only, signed by the CA.
    wrong_name: Arc<rustls::ServerConfig>,
    /// For 127.0.0.1, signed by another CA.
    untrusted: Arc<rustls::ServerConfig>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ca("minimilter test CA");
        let other = ca_other();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("other-ca.pem"), other.pem()).unwrap();
        Pki {
            good: server(&ca, &["127.0.0.1", "localhost"]),
            wrong_name: server(&ca, &["mailman.example.org"]),
            untrusted: server(&other, &["127.0.0.1"]),
            dir,
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn other_ca_file(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn ca_other() -> CertifiedIssuer<'static, KeyPair> {
    ca("another test CA")
}

/// A server configuration with a certificate for `names` (DNS names or IP
/// addresses) signed by `ca`.
fn server(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> Arc<rustls::ServerConfig> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    // ring: the provider the milter's client uses (deprecated in rustls
    // only for lacking post-quantum key exchange).
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Arc::new(config)
}

fn page(all: Vec<Value>) -> Value {
    json!({"start": 0, "total_size": all.len(), "entries": all})
}

/// Mailman's answer to `target` for one list, team@lists.example.org
/// (non-members rejected; alice@example.org a member); None: 404.
fn route(target: &str) -> Option<Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_start_matches("/3.1/").split('/').collect();
    let list =
        json!({"list_id": "team.lists.example.org", "fqdn_listname": "team@lists.example.org"});
    Some(match segs.as_slice() {
        ["domains"] => page(vec![json!({"mail_host": "lists.example.org"})]),
        ["bans"] => page(vec![]),
        ["lists"] => page(vec![list]),
        [
            "lists",
            "team.lists.example.org" | "team@lists.example.org" | "team%40lists.example.org",
        ] => list,
        ["lists", _] => return None,
        ["lists", _, "config"] => {
            json!({"default_nonmember_action": "reject", "default_member_action": "defer"})
        }
        ["lists", _, _] => page(vec![]),
        ["members", "find"] => {
            let member = query.contains("subscriber=alice%40example.org");
            page(if member {
                vec![
                    json!({"email": "alice@example.org", "role": "member", "list_id": "team.lists.example.org"}),
                ]
            } else {
                vec![]
            })
        }
        _ => json!({}),
    })
}

/// Serves one keep-alive connection (bounded in requests).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, count: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..10_000 {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        count.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match route(&target) {
            Some(v) => ("200 OK", v.to_string()),
            None => ("404 Not Found", "{}".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(response.as_bytes()).await.is_err() || s.flush().await.is_err() {
            return;
        }
    }
}

/// The API behind TLS with `tls`: its base URL, its task, the number of
/// HTTP requests it answered (after a completed handshake) and of
/// handshakes that failed.
struct Fake {
    url: String,
    task: tokio::task::JoinHandle<()>,
    requests: Arc<AtomicUsize>,
    failed_handshakes: Arc<AtomicUsize>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake(tls: Arc<rustls::ServerConfig>) -> Fake {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/3.1", l.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let failed_handshakes = Arc::new(AtomicUsize::new(0));
    let (r, f) = (requests.clone(), failed_handshakes.clone());
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        for _ in 0..10_000 {
            let Ok((s, _)) = l.accept().await else { return };
            let (acceptor, r, f) = (acceptor.clone(), r.clone(), f.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(TIMEOUT, acceptor.accept(s)).await {
                    Ok(Ok(tls)) => serve(tls, r).await,
                    _ => {
                        f.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Fake {
        url,
        task,
        requests,
        failed_handshakes,
    }
}

fn config(url: &str, ca_file: Option<&Path>) -> RestConfig {
    RestConfig {
        url: url.to_owned(),
        timeout: TIMEOUT,
        ca_file: ca_file.map(Path::to_path_buf),
        list_domains: Some(vec!["lists.example.org".into()]),
        ..RestConfig::default()
    }
}

async fn rcpt(c: &mut MilterClient, from: &str, to: &str) -> Outcome {
    let spec = MessageSpec {
        from: from.into(),
        rcpts: vec![to.into()],
        message: bytes::Bytes::from_static(b"Subject: x\r\n\r\nx\r\n"),
        ..MessageSpec::default()
    };
    tokio::time::timeout(Duration::from_secs(60), run_message(c, &spec))
        .await
        .expect("answered")
        .unwrap()
        .outcome
}

/// The error of one read of `/domains` with `config`.
async fn read_error(config: &RestConfig) -> String {
    let base = mailman_milter::rest::check_url(&config.url).unwrap();
    let reader = Reader::new(base, config).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), reader.get("/domains"))
        .await
        .expect("bounded");
    answer.expect_err("must not be read").to_string()
}

#[tokio::test]
async fn list_mail_is_decided_over_https_with_a_private_ca() {
    let pki = Pki::new();
    let api = fake(pki.good.clone()).await;
    let backend = Arc::new(RestBackend::new(&config(&api.url, Some(&pki.ca_file()))).unwrap());
    let mut c = in_process::client(backend, in_process::envelope_senders()).await;
    assert_eq!(
        rcpt(&mut c, "alice@example.org", "team@lists.example.org").await,
        Outcome::Accepted
    );
    assert!(matches!(
        rcpt(&mut c, "stranger@example.com", "team@lists.example.org").await,
        Outcome::Rejected { .. }
    ));
    assert!(api.requests.load(Ordering::Relaxed) >= 2);
    // A host name in the URL is verified (and sent as SNI) as well.
    let port_and_path = api.url.rsplit(':').next().unwrap();
    let by_name = config(
        &format!("https://localhost:{port_and_path}"),
        Some(&pki.ca_file()),
    );
    let base = mailman_milter::rest::check_url(&by_name.url).unwrap();
    let domains = Reader::new(base, &by_name)
        .unwrap()
        .get("/domains")
        .await
        .unwrap();
    assert_eq!(domains["entries"][0]["mail_host"], "lists.example.org");
    assert_eq!(api.failed_handshakes.load(Ordering::Relaxed), 0);
}

/// Asserts the fail-safe with a server the milter must not trust: list
/// mail gets 451 (never 5xx, never a pass), other mail passes, and no
/// request reaches the server.
async fn refused_server_keeps_the_fail_safe(api: &Fake, config: &RestConfig) {
    let backend = Arc::new(RestBackend::new(config).unwrap());
    let mut c = in_process::client(backend, in_process::envelope_senders()).await;
    for from in ["alice@example.org", "stranger@example.com"] {
        let outcome = rcpt(&mut c, from, "team@lists.example.org").await;
        assert!(
            matches!(outcome, Outcome::Tempfailed { .. }),
            "{from}: {outcome:?}"
        );
    }
    assert_eq!(
        rcpt(&mut c, "stranger@example.com", "bob@example.org").await,
        Outcome::Accepted
    );
    assert_eq!(api.requests.load(Ordering::Relaxed), 0);
    assert!(api.failed_handshakes.load(Ordering::Relaxed) >= 1);
}

#[tokio::test]
async fn a_certificate_for_another_name_tempfails_and_says_so() {
    let pki = Pki::new();
    let api = fake(pki.wrong_name.clone()).await;
    let config = config(&api.url, Some(&pki.ca_file()));
    let e = read_error(&config).await;
    assert!(e.contains(&api.url), "{e}");
    assert!(e.contains("not valid for name"), "{e}");
    assert!(e.contains("mailman.example.org"), "{e}");
    assert!(
        e.contains("certificate does not name the host in [mailman] url"),
        "{e}"
    );
    refused_server_keeps_the_fail_safe(&api, &config).await;
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_tempfails_and_says_so() {
    let pki = Pki::new();
    let api = fake(pki.untrusted.clone()).await;
    let config = config(&api.url, Some(&pki.ca_file()));
    let e = read_error(&config).await;
    assert!(e.contains(&api.url), "{e}");
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(e.contains("not signed by a trusted CA"), "{e}");
    assert!(e.contains("set [mailman] ca_file"), "{e}");
    refused_server_keeps_the_fail_safe(&api, &config).await;
}

#[tokio::test]
async fn an_unreachable_https_api_tempfails_and_says_so() {
    let pki = Pki::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = config(
        &format!("https://127.0.0.1:{port}/3.1"),
        Some(&pki.ca_file()),
    );
    let e = read_error(&config).await;
    assert!(e.contains("refused"), "{e}");
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    let mut c = in_process::client(backend, in_process::envelope_senders()).await;
    assert!(matches!(
        rcpt(&mut c, "alice@example.org", "team@lists.example.org").await,
        Outcome::Tempfailed { .. }
    ));
    assert_eq!(
        rcpt(&mut c, "alice@example.org", "bob@example.org").await,
        Outcome::Accepted
    );
}

/// A server that accepts the connection and never answers the TLS
/// handshake: bounded by `timeout`, then the fail-safe.
#[tokio::test]
async fn a_stalled_tls_handshake_tempfails_within_the_timeout() {
    let pki = Pki::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/3.1", l.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        for _ in 0..100 {
            let Ok((s, _)) = l.accept().await else { return };
            kept.push(s);
        }
    });
    let config = RestConfig {
        timeout: Duration::from_millis(800),
        ..config(&url, Some(&pki.ca_file()))
    };
    let e = read_error(&config).await;
    assert!(e.contains("within"), "{e}");
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    let mut c = in_process::client(backend, in_process::envelope_senders()).await;
    assert!(matches!(
        rcpt(&mut c, "alice@example.org", "team@lists.example.org").await,
        Outcome::Tempfailed { .. }
    ));
    assert_eq!(
        rcpt(&mut c, "alice@example.org", "bob@example.org").await,
        Outcome::Accepted
    );
    held.abort();
}

/// An https:// URL naming a plain HTTP port (the server answers the TLS
/// greeting with an HTTP error): the fail-safe, and an error that says so.
#[tokio::test]
async fn an_https_url_to_a_plain_http_port_tempfails_and_says_so() {
    let pki = Pki::new();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/3.1", l.local_addr().unwrap());
    let plain = tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let mut greeting = [0u8; 512];
            let _ = s.read(&mut greeting).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let config = config(&url, Some(&pki.ca_file()));
    let e = read_error(&config).await;
    assert!(e.contains("InvalidContentType"), "{e}");
    assert!(e.contains("does not speak TLS"), "{e}");
    let backend = Arc::new(RestBackend::new(&config).unwrap());
    let mut c = in_process::client(backend, in_process::envelope_senders()).await;
    assert!(matches!(
        rcpt(&mut c, "alice@example.org", "team@lists.example.org").await,
        Outcome::Tempfailed { .. }
    ));
    plain.abort();
}

fn check_backend(config: &Path, ssl_cert_file: Option<&Path>) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"));
    cmd.args([
        "--config",
        config.to_str().unwrap(),
        "--check-config",
        "--check-backend",
    ])
    .env("RUST_LOG", "off")
    .env_remove("SSL_CERT_DIR");
    match ssl_cert_file {
        Some(f) => cmd.env("SSL_CERT_FILE", f),
        None => cmd.env_remove("SSL_CERT_FILE"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `--check-backend` over https: with `ca_file`, and with the system's
/// roots (which `SSL_CERT_FILE` replaces for rustls-native-certs, so the
/// test CA stands in for the system store); a server the roots do not
/// vouch for is an error naming the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_backend_verifies_the_api_against_ca_file_or_the_system_roots() {
    let pki = Pki::new();
    let api = fake(pki.good.clone()).await;
    let dir = pki.dir.path();
    let with_ca = dir.join("with-ca.toml");
    std::fs::write(
        &with_ca,
        format!(
            "backend = \"mailman\"\n[mailman]\nurl = \"{}\"\ntimeout = 5\nca_file = \"ca.pem\"\n",
            api.url
        ),
    )
    .unwrap();
    let system = dir.join("system.toml");
    std::fs::write(
        &system,
        format!(
            "backend = \"mailman\"\n[mailman]\nurl = \"{}\"\ntimeout = 5\n",
            api.url
        ),
    )
    .unwrap();
    let (with_ca, system, ca, other) = (with_ca, system, pki.ca_file(), pki.other_ca_file());
    let url = api.url.clone();
    tokio::task::spawn_blocking(move || {
        // ca_file (relative to the configuration file) alone is trusted:
        // SSL_CERT_FILE naming another CA changes nothing.
        let (code, out) = check_backend(&with_ca, Some(&other));
        assert_eq!(code, Some(0), "{out}");
        assert!(
            out.contains(&format!("the Mailman REST API at {url} answers (HTTP 200")),
            "{out}"
        );
        assert!(out.contains("1 lists") || out.contains("1 list"), "{out}");
        // The settings read back name the file, resolved beside the
        // configuration.
        assert!(
            out.contains(&format!("ca_file = \"{}\"", ca.display())),
            "{out}"
        );
        // The system roots, as SSL_CERT_FILE gives them.
        let (code, out) = check_backend(&system, Some(&ca));
        assert_eq!(code, Some(0), "{out}");
        let (code, out) = check_backend(&system, Some(&other));
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("UnknownIssuer"), "{out}");
        assert!(out.contains("not signed by a trusted CA"), "{out}");
        assert!(out.contains("set [mailman] ca_file"), "{out}");
    })
    .await
    .unwrap();
}

/// `ca_file` is checked at start-up: it must be readable, hold PEM
/// certificates, and go with an https:// URL; each error names the file
/// and the key.
#[test]
fn a_bad_ca_file_is_refused_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "no certificate here\n").unwrap();
    std::fs::write(
        dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cases = [
        (
            "https://127.0.0.1:9/3.1",
            "missing.pem",
            "mailman.ca_file: ca_file",
            "cannot read it",
        ),
        (
            "https://127.0.0.1:9/3.1",
            "empty.pem",
            "mailman.ca_file: ca_file",
            "holds no PEM certificate",
        ),
        (
            "https://127.0.0.1:9/3.1",
            "broken.pem",
            "mailman.ca_file: ca_file",
            "not PEM certificates",
        ),
        (
            "http://127.0.0.1:9/3.1",
            "empty.pem",
            "mailman.ca_file: set, but mailman.url",
            "is not https://",
        ),
    ];
    for (url, file, key, why) in cases {
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!("backend = \"mailman\"\n[mailman]\nurl = \"{url}\"\nca_file = \"{file}\"\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailman-milter"))
            .args(["--config", config.to_str().unwrap(), "--check-config"])
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {text}");
        assert!(
            text.contains(&format!("{}: {key}", config.display())),
            "{file}: {text}"
        );
        assert!(text.contains(why), "{file}: {text}");
        if url.starts_with("https") {
            assert!(
                text.contains(&dir.path().join(file).display().to_string()),
                "{file}: {text}"
            );
        }
    }
}
