//! Packets as JSON and back: every command and response a transcript holds,
//! field by field, so a replay sends byte for byte what the MTA sent.
//!
//! Byte strings are JSON strings when they are UTF-8 and `{"hex": "..."}`
//! otherwise, so nothing is lost to a lossy conversion. Bodies (body chunks,
//! end-of-message data, replacement-body chunks) follow the `--bodies` mode:
//! kept as above, `{"sha256": "...", "len": N}`, or `{"len": N}`.

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use milter_proto::{Command, ConnectAddress, Response};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Bodies;
use super::line::{Line, Val};

/// A byte string as JSON: a string if UTF-8, else `{"hex": ...}`.
pub fn bytes_to_json(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => Value::String(s.to_owned()),
        Err(_) => json!({ "hex": hex(b) }),
    }
}

/// The inverse of [`bytes_to_json`].
pub fn bytes_from_json(v: &Value) -> anyhow::Result<Bytes> {
    match v {
        Value::String(s) => Ok(Bytes::copy_from_slice(s.as_bytes())),
        Value::Object(m) => match m.get("hex").and_then(Value::as_str) {
            Some(h) => unhex(h).map(Bytes::from),
            None => bail!("a byte string that was not kept (hashed or dropped)"),
        },
        other => bail!("expected a byte string, got {other}"),
    }
}

/// A body in the given mode.
/// An empty body is always kept: there is nothing private in it, and end
/// of message (whose data is empty from every MTA) stays replayable.
pub fn body_to_json(b: &[u8], mode: Bodies) -> Value {
    match mode {
        _ if b.is_empty() => Value::String(String::new()),
        Bodies::Keep => bytes_to_json(b),
        Bodies::Hash => json!({ "sha256": hex(&Sha256::digest(b)), "len": b.len() }),
        Bodies::Drop => json!({ "len": b.len() }),
    }
}

/// True if `v` is a body that was hashed or dropped (cannot be replayed).
pub fn body_elided(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.contains_key("hex"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(h: &str) -> anyhow::Result<Vec<u8>> {
    if !h.len().is_multiple_of(2) || !h.is_ascii() {
        bail!("hex string of odd length or not ASCII");
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|e| anyhow!("bad hex: {e}")))
        .collect()
}

#[cfg(test)]
fn list(items: &[Bytes]) -> Value {
    Value::Array(items.iter().map(|a| bytes_to_json(a)).collect())
}

/// The macros of a `D` packet as `[[name, value], ...]`.
#[cfg(test)]
pub fn pairs_to_json(pairs: &[(Bytes, Bytes)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(n, v)| json!([bytes_to_json(n), bytes_to_json(v)]))
            .collect(),
    )
}

/// The inverse of [`pairs_to_json`].
pub fn pairs_from_json(v: &Value) -> anyhow::Result<Vec<(Bytes, Bytes)>> {
    let Value::Array(items) = v else {
        bail!("macros: expected an array of [name, value]");
    };
    items
        .iter()
        .map(|p| match p.as_array().map(Vec::as_slice) {
            Some([n, v]) => Ok((bytes_from_json(n)?, bytes_from_json(v)?)),
            _ => bail!("macros: expected [name, value], got {p}"),
        })
        .collect()
}

/// The one-letter code as a JSON string.
pub fn code_str(code: u8) -> String {
    if code.is_ascii_graphic() {
        (code as char).to_string()
    } else {
        format!("\\x{code:02x}")
    }
}

/// Fields of a command (not its code), into `m`: the `Value` form of
/// [`command_line`], which the tests hold the line writer to.
#[cfg(test)]
pub fn command_fields(c: &Command, bodies: Bodies, m: &mut Map<String, Value>) {
    match c {
        Command::Connect { hostname, address } => {
            m.insert("hostname".into(), bytes_to_json(hostname));
            let (family, port, addr) = match address {
                ConnectAddress::Unknown => ("U", None, None),
                ConnectAddress::Unix { port, path } => ("L", Some(*port), Some(path)),
                ConnectAddress::Inet { port, addr } => ("4", Some(*port), Some(addr)),
                ConnectAddress::Inet6 { port, addr } => ("6", Some(*port), Some(addr)),
            };
            m.insert("family".into(), json!(family));
            if let Some(p) = port {
                m.insert("port".into(), json!(p));
            }
            if let Some(a) = addr {
                m.insert("address".into(), bytes_to_json(a));
            }
        }
        Command::Helo(s) => {
            m.insert("name".into(), bytes_to_json(s));
        }
        Command::Mail(args) | Command::Rcpt(args) => {
            m.insert("args".into(), list(args));
        }
        Command::Header { name, value } => {
            m.insert("name".into(), bytes_to_json(name));
            m.insert("value".into(), bytes_to_json(value));
        }
        Command::Body(b) | Command::EndOfMessage(b) => {
            m.insert("body".into(), body_to_json(b, bodies));
        }
        Command::Unknown(s) => {
            m.insert("text".into(), bytes_to_json(s));
        }
        Command::Macro { stage, pairs } => {
            m.insert("stage".into(), json!(code_str(*stage)));
            m.insert("pairs".into(), pairs_to_json(pairs));
        }
        Command::OptNeg(_)
        | Command::Data
        | Command::EndOfHeaders
        | Command::Abort
        | Command::Quit
        | Command::QuitNewConnection => {}
    }
}

/// Fields of a command (its code too) into a transcript line; the same
/// fields as [`command_fields`], written without building JSON values.
pub fn command_line<'a>(c: &'a Command, bodies: Bodies, l: &mut Line<'a>) {
    l.set("code", Val::Code(c.code()));
    match c {
        Command::Connect { hostname, address } => {
            l.set("hostname", Val::Bytes(hostname));
            let (family, port, addr) = match address {
                ConnectAddress::Unknown => ("U", None, None),
                ConnectAddress::Unix { port, path } => ("L", Some(*port), Some(path)),
                ConnectAddress::Inet { port, addr } => ("4", Some(*port), Some(addr)),
                ConnectAddress::Inet6 { port, addr } => ("6", Some(*port), Some(addr)),
            };
            l.set("family", Val::Str(family));
            if let Some(p) = port {
                l.set("port", Val::U64(p.into()));
            }
            if let Some(a) = addr {
                l.set("address", Val::Bytes(a));
            }
        }
        Command::Helo(s) => {
            l.set("name", Val::Bytes(s));
        }
        Command::Mail(args) | Command::Rcpt(args) => {
            l.set("args", Val::List(args));
        }
        Command::Header { name, value } => {
            l.set("name", Val::Bytes(name));
            l.set("value", Val::Bytes(value));
        }
        Command::Body(b) | Command::EndOfMessage(b) => {
            l.set("body", Val::Body(b, bodies));
        }
        Command::Unknown(s) => {
            l.set("text", Val::Bytes(s));
        }
        Command::Macro { stage, pairs } => {
            l.set("stage", Val::Code(*stage));
            l.set("pairs", Val::Pairs(pairs));
        }
        Command::OptNeg(_)
        | Command::Data
        | Command::EndOfHeaders
        | Command::Abort
        | Command::Quit
        | Command::QuitNewConnection => {}
    }
}

/// Fields of a response (its code too) into a transcript line; the same
/// fields as [`response_fields`].
pub fn response_line<'a>(r: &'a Response, bodies: Bodies, l: &mut Line<'a>) {
    l.set("code", Val::Code(r.code()));
    match r {
        Response::ReplyCode(s) => {
            l.set("text", Val::Bytes(s));
        }
        Response::AddHeader { name, value } => {
            l.set("name", Val::Bytes(name));
            l.set("value", Val::Bytes(value));
        }
        Response::InsertHeader { index, name, value }
        | Response::ChangeHeader { index, name, value } => {
            l.set("index", Val::U64((*index).into()));
            l.set("name", Val::Bytes(name));
            l.set("value", Val::Bytes(value));
        }
        Response::AddRcpt(s) | Response::DelRcpt(s) => {
            l.set("rcpt", Val::Bytes(s));
        }
        Response::AddRcptPar { rcpt, args } => {
            l.set("rcpt", Val::Bytes(rcpt));
            if let Some(a) = args {
                l.set("args", Val::Bytes(a));
            }
        }
        Response::ChangeFrom { sender, args } => {
            l.set("sender", Val::Bytes(sender));
            if let Some(a) = args {
                l.set("args", Val::Bytes(a));
            }
        }
        Response::ReplaceBody(b) => {
            l.set("body", Val::Body(b, bodies));
        }
        Response::Quarantine(s) => {
            l.set("reason", Val::Bytes(s));
        }
        Response::SetSymList { stage, names } => {
            l.set("stage", Val::U64((*stage).into()));
            l.set("names", Val::Bytes(names));
        }
        Response::OptNeg(_)
        | Response::Continue
        | Response::Accept
        | Response::Reject
        | Response::Tempfail
        | Response::Discard
        | Response::Skip
        | Response::ConnFail
        | Response::Shutdown
        | Response::Progress => {}
    }
}

fn field<'a>(m: &'a Map<String, Value>, name: &str) -> anyhow::Result<&'a Value> {
    m.get(name)
        .with_context(|| format!("missing field {name:?}"))
}

fn bytes_field(m: &Map<String, Value>, name: &str) -> anyhow::Result<Bytes> {
    bytes_from_json(field(m, name)?).with_context(|| format!("field {name:?}"))
}

fn u32_field(m: &Map<String, Value>, name: &str) -> anyhow::Result<u32> {
    field(m, name)?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .with_context(|| format!("field {name:?} is not a 32-bit number"))
}

fn list_field(m: &Map<String, Value>, name: &str) -> anyhow::Result<Vec<Bytes>> {
    field(m, name)?
        .as_array()
        .with_context(|| format!("field {name:?} is not an array"))?
        .iter()
        .map(bytes_from_json)
        .collect()
}

/// A step command back from its JSON line (`code` plus fields). Bodies that
/// were hashed or dropped cannot be rebuilt: an error says so.
pub fn command_from_json(m: &Map<String, Value>) -> anyhow::Result<Command> {
    let code = m.get("code").and_then(Value::as_str).unwrap_or_default();
    Ok(match code {
        "C" => {
            let family = field(m, "family")?.as_str().unwrap_or_default();
            let port = || -> anyhow::Result<u16> {
                u16::try_from(u32_field(m, "port")?).context("port out of range")
            };
            let address = match family {
                "U" => ConnectAddress::Unknown,
                "L" => ConnectAddress::Unix {
                    port: port()?,
                    path: bytes_field(m, "address")?,
                },
                "4" => ConnectAddress::Inet {
                    port: port()?,
                    addr: bytes_field(m, "address")?,
                },
                "6" => ConnectAddress::Inet6 {
                    port: port()?,
                    addr: bytes_field(m, "address")?,
                },
                other => bail!("unknown address family {other:?}"),
            };
            Command::Connect {
                hostname: bytes_field(m, "hostname")?,
                address,
            }
        }
        "H" => Command::Helo(bytes_field(m, "name")?),
        "M" => Command::Mail(list_field(m, "args")?),
        "R" => Command::Rcpt(list_field(m, "args")?),
        "T" => Command::Data,
        "L" => Command::Header {
            name: bytes_field(m, "name")?,
            value: bytes_field(m, "value")?,
        },
        "N" => Command::EndOfHeaders,
        "B" => Command::Body(bytes_field(m, "body")?),
        "E" => Command::EndOfMessage(bytes_field(m, "body")?),
        "U" => Command::Unknown(bytes_field(m, "text")?),
        "A" => Command::Abort,
        "Q" => Command::Quit,
        "K" => Command::QuitNewConnection,
        other => bail!("command code {other:?} is not one a transcript holds"),
    })
}

/// Fields of a response (not its code), into `m`.
pub fn response_fields(r: &Response, bodies: Bodies, m: &mut Map<String, Value>) {
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    match r {
        Response::ReplyCode(s) => put("text", bytes_to_json(s)),
        Response::AddHeader { name, value } => {
            put("name", bytes_to_json(name));
            put("value", bytes_to_json(value));
        }
        Response::InsertHeader { index, name, value }
        | Response::ChangeHeader { index, name, value } => {
            put("index", json!(index));
            put("name", bytes_to_json(name));
            put("value", bytes_to_json(value));
        }
        Response::AddRcpt(s) | Response::DelRcpt(s) => put("rcpt", bytes_to_json(s)),
        Response::AddRcptPar { rcpt, args } => {
            put("rcpt", bytes_to_json(rcpt));
            if let Some(a) = args {
                put("args", bytes_to_json(a));
            }
        }
        Response::ChangeFrom { sender, args } => {
            put("sender", bytes_to_json(sender));
            if let Some(a) = args {
                put("args", bytes_to_json(a));
            }
        }
        Response::ReplaceBody(b) => put("body", body_to_json(b, bodies)),
        Response::Quarantine(s) => put("reason", bytes_to_json(s)),
        Response::SetSymList { stage, names } => {
            put("stage", json!(stage));
            put("names", bytes_to_json(names));
        }
        Response::OptNeg(_)
        | Response::Continue
        | Response::Accept
        | Response::Reject
        | Response::Tempfail
        | Response::Discard
        | Response::Skip
        | Response::ConnFail
        | Response::Shutdown
        | Response::Progress => {}
    }
}

fn opt_bytes_field(m: &Map<String, Value>, name: &str) -> anyhow::Result<Option<Bytes>> {
    m.get(name).map(bytes_from_json).transpose()
}

/// A response back from its JSON object (code plus fields). Replacement
/// bodies that were hashed or dropped cannot be rebuilt: an error says so.
pub fn response_from_json(m: &Map<String, Value>) -> anyhow::Result<Response> {
    let code = m.get("code").and_then(Value::as_str).unwrap_or_default();
    Ok(match code {
        "c" => Response::Continue,
        "a" => Response::Accept,
        "r" => Response::Reject,
        "t" => Response::Tempfail,
        "d" => Response::Discard,
        "s" => Response::Skip,
        "f" => Response::ConnFail,
        "4" => Response::Shutdown,
        "p" => Response::Progress,
        "y" => Response::ReplyCode(bytes_field(m, "text")?),
        "h" => Response::AddHeader {
            name: bytes_field(m, "name")?,
            value: bytes_field(m, "value")?,
        },
        "i" => Response::InsertHeader {
            index: u32_field(m, "index")?,
            name: bytes_field(m, "name")?,
            value: bytes_field(m, "value")?,
        },
        "m" => Response::ChangeHeader {
            index: u32_field(m, "index")?,
            name: bytes_field(m, "name")?,
            value: bytes_field(m, "value")?,
        },
        "+" => Response::AddRcpt(bytes_field(m, "rcpt")?),
        "-" => Response::DelRcpt(bytes_field(m, "rcpt")?),
        "2" => Response::AddRcptPar {
            rcpt: bytes_field(m, "rcpt")?,
            args: opt_bytes_field(m, "args")?,
        },
        "e" => Response::ChangeFrom {
            sender: bytes_field(m, "sender")?,
            args: opt_bytes_field(m, "args")?,
        },
        "b" => Response::ReplaceBody(bytes_field(m, "body")?),
        "q" => Response::Quarantine(bytes_field(m, "reason")?),
        "l" => Response::SetSymList {
            stage: u32_field(m, "stage")?,
            names: bytes_field(m, "names")?,
        },
        other => bail!("response code {other:?} is not one a transcript holds"),
    })
}

/// A response as one JSON object: code plus fields.
pub fn response_to_json(r: &Response, bodies: Bodies) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("code".into(), json!(code_str(r.code())));
    response_fields(r, bodies, &mut m);
    m
}

/// A command as one JSON object: code plus fields.
#[cfg(test)]
pub fn command_to_json(c: &Command, bodies: Bodies) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("code".into(), json!(code_str(c.code())));
    command_fields(c, bodies, &mut m);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn commands_survive_the_round_trip_byte_exact() {
        let commands = [
            Command::Connect {
                hostname: b(b"mx.example"),
                address: ConnectAddress::Inet6 {
                    port: 2525,
                    addr: b(b"IPv6:::1"),
                },
            },
            Command::Connect {
                hostname: b(b"[unknown]"),
                address: ConnectAddress::Unknown,
            },
            Command::Helo(b(b"h\xffi")),
            Command::Mail(vec![b(b"<a@b>"), b(b"SIZE=10")]),
            Command::Rcpt(vec![b(b"<c@d>")]),
            Command::Data,
            Command::Header {
                name: b(b"Subject"),
                value: b(b" caf\xc3\xa9\n\tsecond"),
            },
            Command::EndOfHeaders,
            Command::Body(b(b"\x00\x01binary\r\n")),
            Command::EndOfMessage(Bytes::new()),
            Command::Unknown(b(b"XYZZY")),
            Command::Abort,
            Command::Quit,
        ];
        for c in commands {
            let m = command_to_json(&c, Bodies::Keep);
            let line = serde_json::to_string(&m).unwrap();
            let back: Map<String, Value> = serde_json::from_str(&line).unwrap();
            assert_eq!(command_from_json(&back).unwrap(), c, "{line}");
        }
    }

    #[test]
    fn responses_survive_the_round_trip_byte_exact() {
        let responses = [
            Response::Continue,
            Response::Shutdown,
            Response::ReplyCode(b(b"550 5.7.1 no")),
            Response::AddHeader {
                name: b(b"X-A"),
                value: b(b" v\xfe"),
            },
            Response::InsertHeader {
                index: 0,
                name: b(b"X-B"),
                value: b(b"w"),
            },
            Response::ChangeHeader {
                index: 2,
                name: b(b"X-C"),
                value: Bytes::new(),
            },
            Response::AddRcpt(b(b"<x@y>")),
            Response::DelRcpt(b(b"<z@y>")),
            Response::AddRcptPar {
                rcpt: b(b"<p@q>"),
                args: Some(b(b"NOTIFY=NEVER")),
            },
            Response::ChangeFrom {
                sender: b(b"<s@t>"),
                args: None,
            },
            Response::ReplaceBody(b(b"new\r\nbody\r\n")),
            Response::Quarantine(b(b"held")),
        ];
        for r in responses {
            let m = response_to_json(&r, Bodies::Keep);
            assert_eq!(response_from_json(&m).unwrap(), r);
        }
    }

    #[test]
    fn bodies_are_hashed_or_dropped_and_then_not_rebuilt() {
        let c = Command::Body(b(b"secret love letter\r\n"));
        let hashed = command_to_json(&c, Bodies::Hash);
        assert_eq!(hashed["body"]["len"], 20);
        assert_eq!(
            hashed["body"]["sha256"],
            hex(&Sha256::digest(b"secret love letter\r\n"))
        );
        assert!(!serde_json::to_string(&hashed).unwrap().contains("secret"));
        assert!(body_elided(&hashed["body"]));
        assert!(command_from_json(&hashed).is_err());
        let dropped = command_to_json(&c, Bodies::Drop);
        assert_eq!(dropped["body"], json!({"len": 20}));
        let r = response_to_json(&Response::ReplaceBody(b(b"new body")), Bodies::Drop);
        assert_eq!(r["body"], json!({"len": 8}));
    }

    /// The line writer against `serde_json` writing the `Value` form of
    /// the same packet, byte for byte, in every bodies mode.
    #[test]
    fn lines_are_what_serde_json_writes_for_the_same_fields() {
        let commands = [
            Command::Connect {
                hostname: b(b"mx.example"),
                address: ConnectAddress::Inet {
                    port: 25,
                    addr: b(b"192.0.2.1"),
                },
            },
            Command::Connect {
                hostname: b(b"l"),
                address: ConnectAddress::Unix {
                    port: 0,
                    path: b(b"/run/x"),
                },
            },
            Command::Connect {
                hostname: b(b"[unknown]"),
                address: ConnectAddress::Unknown,
            },
            Command::Helo(b(b"h\xffi")),
            Command::Mail(vec![b(b"<a@b>"), b(b"SIZE=10")]),
            Command::Rcpt(vec![]),
            Command::Data,
            Command::Header {
                name: b(b"Subject"),
                value: b(b" caf\xc3\xa9\n\tsecond \"q\" \\ \x01\x7f"),
            },
            Command::EndOfHeaders,
            Command::Body(b(b"\x00\x01binary\r\n")),
            Command::Body(b(b"text body\r\n")),
            Command::EndOfMessage(Bytes::new()),
            Command::Unknown(b(b"XYZZY")),
            Command::Macro {
                stage: b'M',
                pairs: vec![(b(b"i"), b(b"Q1")), (b(b"{x}"), b(b"\xfe"))],
            },
            Command::Macro {
                stage: 0x01,
                pairs: vec![],
            },
            Command::Abort,
            Command::Quit,
        ];
        let responses = [
            Response::Continue,
            Response::ReplyCode(b(b"550 5.7.1 no\r\n")),
            Response::AddHeader {
                name: b(b"X-A"),
                value: b(b" v\xfe"),
            },
            Response::InsertHeader {
                index: 0,
                name: b(b"X-B"),
                value: b(b"w"),
            },
            Response::ChangeHeader {
                index: 7,
                name: b(b"X-C"),
                value: Bytes::new(),
            },
            Response::AddRcpt(b(b"<x@y>")),
            Response::DelRcpt(b(b"<z@y>")),
            Response::AddRcptPar {
                rcpt: b(b"<p@q>"),
                args: Some(b(b"NOTIFY=NEVER")),
            },
            Response::AddRcptPar {
                rcpt: b(b"<p@q>"),
                args: None,
            },
            Response::ChangeFrom {
                sender: b(b"<s@t>"),
                args: Some(b(b"A=1")),
            },
            Response::ReplaceBody(b(b"new\r\nbody\r\n")),
            Response::ReplaceBody(b(b"\xff")),
            Response::Quarantine(b(b"held")),
            Response::SetSymList {
                stage: 4,
                names: b(b"{rcpt_addr} i"),
            },
        ];
        for bodies in [Bodies::Keep, Bodies::Hash, Bodies::Drop] {
            for c in &commands {
                let mut m = command_to_json(c, bodies);
                m.insert("type".into(), json!("command"));
                m.insert("at_us".into(), json!(123_456_789u64));
                m.insert("step".into(), json!("mail"));
                m.insert("unexpected".into(), json!(true));
                let mut l = Line::new();
                command_line(c, bodies, &mut l);
                l.set("type", Val::Str("command"))
                    .set("at_us", Val::U64(123_456_789))
                    .set("step", Val::Str("mail"))
                    .set("unexpected", Val::Bool(true));
                let mut s = String::new();
                l.write(&mut s);
                assert_eq!(s, serde_json::to_string(&m).unwrap(), "{c:?}");
            }
            for r in &responses {
                let mut m = response_to_json(r, bodies);
                m.insert("type".into(), json!("response"));
                m.insert("after_us".into(), json!(0));
                m.insert("answer".into(), json!("continue"));
                let mut l = Line::new();
                response_line(r, bodies, &mut l);
                l.set("type", Val::Str("response"))
                    .set("after_us", Val::U64(0))
                    .set("answer", Val::Str("continue"));
                let mut s = String::new();
                l.write(&mut s);
                assert_eq!(s, serde_json::to_string(&m).unwrap(), "{r:?}");
            }
        }
    }

    #[test]
    fn non_utf8_bytes_are_hex() {
        assert_eq!(bytes_to_json(b"\xff\x00"), json!({"hex": "ff00"}));
        assert_eq!(
            bytes_from_json(&json!({"hex": "ff00"})).unwrap(),
            b(b"\xff\x00")
        );
        assert!(bytes_from_json(&json!({"hex": "f"})).is_err());
    }
}
