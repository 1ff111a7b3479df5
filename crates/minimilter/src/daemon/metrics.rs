//! `/metrics` over HTTP for Prometheus: the runtime's metrics and the
//! milter's own, in the OpenMetrics text format to a scraper that asks for
//! it (`Accept: application/openmetrics-text`, as Prometheus does), else in
//! the classic Prometheus text format (0.0.4) that `curl` users and
//! `promtool check metrics` read. A deliberately small
//! HTTP/1.x responder (one GET per connection, request head bounded to
//! 8 KiB and 5 s, then close): a scrape endpoint on a local port needs
//! nothing more, and nothing here parses more than the request line.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Serves `registry` on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &registry)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(complete, Ok(Ok(()))) {
        return Ok(());
    }
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let openmetrics = String::from_utf8_lossy(&head).lines().any(|l| {
        l.to_ascii_lowercase().starts_with("accept:")
            && l.to_ascii_lowercase()
                .contains("application/openmetrics-text")
    });
    let (status, content_type, body) = match (method, path) {
        (b"GET", b"/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) if openmetrics => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Ok(()) => (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    classic_text(&text),
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        (b"GET", _) => (
            "404 Not Found",
            "text/plain",
            "metrics are at /metrics\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".into(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// OpenMetrics text as the classic Prometheus text format: a counter's
/// family is named with its `_total` suffix there (OpenMetrics names the
/// family without it), and there is no `# EOF` line.
fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_get_their_total_name_in_the_classic_format() {
        let om = "# HELP m_messages Messages.\n# TYPE m_messages counter\nm_messages_total{v=\"a\"} 3\n\
                  # HELP m_open Open.\n# TYPE m_open gauge\nm_open 1\n# EOF\n";
        assert_eq!(
            super::classic_text(om),
            "# HELP m_messages_total Messages.\n# TYPE m_messages_total counter\n\
             m_messages_total{v=\"a\"} 3\n# HELP m_open Open.\n# TYPE m_open gauge\nm_open 1\n"
        );
    }
}
