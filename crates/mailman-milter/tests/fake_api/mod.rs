//! A generated Mailman 3 REST API on 127.0.0.1, for measuring the REST
//! backend at scale without a Mailman: `lists` lists `lN@lists.example.org`
//! (list id `lN.lists.example.org`), and member `mJ@example.org` belongs to
//! list `J / members_per_list` alone. Every list rejects non-members and
//! defers members; there are no bans, owners or moderators. Each request
//! is counted, so a caller can assert that warm decisions ask nothing.
//!
//! Shared by `tests/rest_scale.rs` and `examples/warm_rcpt.rs` (included
//! there with `#[path]`). Bounded: at most 100,000 connections, and
//! 1,000,000 requests on each.

#![allow(dead_code)] // Each includer uses a different part.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How many lists the API serves, and how many members each has.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub lists: usize,
    pub members_per_list: usize,
}

/// A running generated API.
pub struct FakeApi {
    /// Its base URL, as `[mailman] url` takes it.
    pub url: String,
    /// The accept loop; aborting it stops new connections.
    pub task: JoinHandle<()>,
    /// Requests answered so far, on every connection.
    pub requests: Arc<AtomicUsize>,
}

/// Starts the API on a free port of 127.0.0.1; every answer comes `delay`
/// late (for the fail-safe tests: a slow Mailman).
pub async fn start(shape: Shape, delay: Duration) -> FakeApi {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}/3.1", l.local_addr().expect("an address"));
    let requests = Arc::new(AtomicUsize::new(0));
    let count = requests.clone();
    let task = tokio::spawn(async move {
        for _ in 0..100_000 {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(serve(s, shape, delay, count.clone()));
        }
    });
    FakeApi {
        url,
        task,
        requests,
    }
}

/// One page of `all` as the REST API pages collections (`count`, `page`).
fn page(all: Vec<Value>, query: &str) -> Value {
    let (count, page) = (
        param(query, "count").and_then(|v| v.parse::<usize>().ok()),
        param(query, "page").and_then(|v| v.parse::<usize>().ok()),
    );
    let (count, page) = (count.unwrap_or(usize::MAX), page.unwrap_or(1).max(1));
    let total = all.len();
    let entries: Vec<Value> = all
        .into_iter()
        .skip((page - 1).saturating_mul(count))
        .take(count)
        .collect();
    json!({"start": 0, "total_size": total, "entries": entries})
}

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find_map(|(k, v)| (k == key).then_some(v))
}

/// The number of a list named by id or posting address (`lN.…`, `lN@…`,
/// `lN%40…`), if it is one of the API's lists.
fn list_number(shape: Shape, name: &str) -> Option<usize> {
    name.strip_prefix('l')
        .and_then(|r| r.split(['.', '%', '@']).next())
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n < shape.lists)
}

fn list(n: usize) -> Value {
    json!({"list_id": format!("l{n}.lists.example.org"), "fqdn_listname": format!("l{n}@lists.example.org")})
}

/// Mailman's answer to `target`; None: 404.
fn route(shape: Shape, target: &str) -> Option<Value> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.trim_start_matches("/3.1/").split('/').collect();
    Some(match segs.as_slice() {
        ["domains"] => page(vec![json!({"mail_host": "lists.example.org"})], query),
        ["bans"] => page(vec![], query),
        ["lists"] => page((0..shape.lists).map(list).collect(), query),
        // By list_id or posting address, as Mailman finds a list.
        ["lists", id] => list(list_number(shape, id)?),
        ["lists", _, "config"] => {
            json!({"default_nonmember_action": "reject", "default_member_action": "defer"})
        }
        ["lists", _, _] => page(vec![], query),
        ["members", "find"] => {
            // subscriber=mJ%40example.org is a member of list J / members_per_list.
            let sub = param(query, "subscriber");
            let id = param(query, "list_id");
            let member = match (sub, id) {
                (Some(s), Some(l)) => s
                    .strip_prefix('m')
                    .and_then(|s| s.split_once("%40"))
                    .and_then(|(m, _)| m.parse::<usize>().ok())
                    .is_some_and(|m| {
                        list_number(shape, l) == Some(m / shape.members_per_list.max(1))
                    }),
                _ => false,
            };
            let entries = match (member, sub) {
                (true, Some(s)) => {
                    vec![json!({"email": s.replace("%40", "@"), "role": "member", "list_id": id})]
                }
                _ => vec![],
            };
            page(entries, query)
        }
        _ => json!({}),
    })
}

/// Serves one keep-alive connection.
async fn serve(mut s: TcpStream, shape: Shape, delay: Duration, count: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    for _ in 0..1_000_000 {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        count.fetch_add(1, Ordering::Relaxed);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, body) = match route(shape, &target) {
            Some(v) => ("200 OK", v.to_string()),
            None => ("404 Not Found", "{}".to_owned()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}
