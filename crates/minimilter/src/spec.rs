//! Socket specifications in the syntaxes mail administrators already write.
//!
//! | written as | meaning | from |
//! |---|---|---|
//! | `unix:/path`, `local:/path` | unix-domain socket | Postfix, Sendmail |
//! | `/path` | unix-domain socket | libmilter shorthand |
//! | `inet:host:port`, `inet:[::1]:port` | TCP | Postfix |
//! | `inet:port@host`, `inet:port` | TCP (all IPv4 addresses without host) | Sendmail |
//! | `inet6:port@host`, `inet6:port` | TCP over IPv6 (all addresses without host) | Sendmail |

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SocketSpec {
    /// A unix-domain socket at this path.
    Unix(PathBuf),
    /// A TCP socket. `host` is an IP address or a name; `*` or empty means all
    /// addresses of the family.
    Inet {
        /// Host part, as written (brackets removed).
        host: String,
        /// Port.
        port: u16,
        /// Written as `inet6:`.
        v6: bool,
    },
}

/// Why a socket specification was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid socket {spec:?}: {reason} (expected unix:/path, local:/path, inet:host:port, inet:port@host or inet6:port@host)"
)]
pub struct SpecError {
    /// The text given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err(spec: &str, reason: impl Into<String>) -> SpecError {
    SpecError {
        spec: spec.to_owned(),
        reason: reason.into(),
    }
}

fn port(spec: &str, p: &str) -> Result<u16, SpecError> {
    // Digits only: `u16::from_str` also takes a leading `+`.
    let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match p.parse::<u16>().ok().filter(|_| digits).ok_or(()) {
        Ok(0) => Err(err(spec, "port 0")),
        Ok(n) => Ok(n),
        Err(_) => Err(err(
            spec,
            format!("port {p:?} is not a number from 1 to 65535"),
        )),
    }
}

impl FromStr for SocketSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let s = spec.trim();
        if s.starts_with('/') {
            return Ok(SocketSpec::Unix(PathBuf::from(s)));
        }
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(err(spec, "no socket type"));
        };
        match kind.to_ascii_lowercase().as_str() {
            "unix" | "local" => {
                if rest.is_empty() {
                    return Err(err(spec, "empty path"));
                }
                if !rest.starts_with('/') {
                    return Err(err(spec, "the socket path must be absolute"));
                }
                Ok(SocketSpec::Unix(PathBuf::from(rest)))
            }
            kind @ ("inet" | "inet6") => {
                let v6 = kind == "inet6";
                if let Some((p, host)) = rest.split_once('@') {
                    // Sendmail: port@host
                    let host = host.trim_start_matches('[').trim_end_matches(']');
                    if host.is_empty() {
                        return Err(err(spec, "empty host after '@'"));
                    }
                    return Ok(SocketSpec::Inet {
                        host: host.to_owned(),
                        port: port(spec, p)?,
                        v6,
                    });
                }
                if let Some(rest6) = rest.strip_prefix('[') {
                    // Postfix: [v6addr]:port
                    let Some((host, p)) = rest6.split_once("]:") else {
                        return Err(err(spec, "expected [address]:port"));
                    };
                    return Ok(SocketSpec::Inet {
                        host: host.to_owned(),
                        port: port(spec, p)?,
                        v6: true,
                    });
                }
                match rest.rsplit_once(':') {
                    // Postfix: host:port
                    Some((host, p)) if !v6 => {
                        if host.contains(':') {
                            return Err(err(spec, "write IPv6 addresses as inet:[addr]:port"));
                        }
                        Ok(SocketSpec::Inet {
                            host: host.to_owned(),
                            port: port(spec, p)?,
                            v6,
                        })
                    }
                    Some(_) => Err(err(spec, "inet6 takes port@host")),
                    // Sendmail: port alone, all addresses.
                    None => Ok(SocketSpec::Inet {
                        host: String::new(),
                        port: port(spec, rest)?,
                        v6,
                    }),
                }
            }
            other => Err(err(spec, format!("unknown socket type {other:?}"))),
        }
    }
}

/// The spec of a bound or connected address, in the syntax of its family:
/// `inet:127.0.0.1:25`, `inet6:25@::1`.
impl From<std::net::SocketAddr> for SocketSpec {
    fn from(a: std::net::SocketAddr) -> Self {
        SocketSpec::Inet {
            host: a.ip().to_string(),
            port: a.port(),
            v6: a.is_ipv6(),
        }
    }
}

impl fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketSpec::Unix(p) => write!(f, "unix:{}", p.display()),
            SocketSpec::Inet { host, port, v6 } => {
                if *v6 {
                    if host.is_empty() {
                        write!(f, "inet6:{port}")
                    } else {
                        write!(f, "inet6:{port}@{host}")
                    }
                } else if host.is_empty() {
                    write!(f, "inet:{port}")
                } else {
                    write!(f, "inet:{host}:{port}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inet(host: &str, port: u16, v6: bool) -> SocketSpec {
        SocketSpec::Inet {
            host: host.into(),
            port,
            v6,
        }
    }

    #[test]
    fn parses_every_syntax() {
        let cases = [
            ("unix:/run/m.sock", SocketSpec::Unix("/run/m.sock".into())),
            ("local:/run/m.sock", SocketSpec::Unix("/run/m.sock".into())),
            ("/run/m.sock", SocketSpec::Unix("/run/m.sock".into())),
            ("inet:127.0.0.1:8891", inet("127.0.0.1", 8891, false)),
            ("inet:localhost:8891", inet("localhost", 8891, false)),
            ("inet:8891@127.0.0.1", inet("127.0.0.1", 8891, false)),
            ("inet:8891", inet("", 8891, false)),
            ("inet6:8891@::1", inet("::1", 8891, true)),
            ("inet6:8891@[::1]", inet("::1", 8891, true)),
            ("inet6:8891", inet("", 8891, true)),
            ("inet:[::1]:8891", inet("::1", 8891, true)),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<SocketSpec>().unwrap(), want, "{text}");
        }
    }

    #[test]
    fn refuses_nonsense_with_a_reason() {
        for bad in [
            "",
            "tcp:1.2.3.4:25",
            "unix:",
            "unix:relative.sock",
            "inet:host:notaport",
            "inet:host:0",
            "inet:host:70000",
            "inet:8891@",
            "inet::1:8891",
            "inet6:::1:8891",
        ] {
            let e = bad.parse::<SocketSpec>().unwrap_err();
            assert!(e.to_string().contains("invalid socket"), "{bad}: {e}");
        }
    }

    #[test]
    fn socket_addresses_display_in_their_family_syntax() {
        let v4: std::net::SocketAddr = "127.0.0.1:8894".parse().unwrap();
        for bad in ["inet:+25@h", "inet:h:+25", "inet: 25@h"] {
            assert!(bad.parse::<SocketSpec>().is_err(), "{bad}");
        }
        assert_eq!(SocketSpec::from(v4).to_string(), "inet:127.0.0.1:8894");
        let v6: std::net::SocketAddr = "[::1]:8894".parse().unwrap();
        let spec = SocketSpec::from(v6);
        assert_eq!(spec.to_string(), "inet6:8894@::1");
        assert_eq!(spec.to_string().parse::<SocketSpec>().unwrap(), spec);
    }

    #[test]
    fn displays_in_a_parseable_form() {
        for s in [
            "unix:/a/b",
            "inet:127.0.0.1:25",
            "inet6:25@::1",
            "inet:25",
            "inet6:25",
        ] {
            let spec: SocketSpec = s.parse().unwrap();
            assert_eq!(spec.to_string().parse::<SocketSpec>().unwrap(), spec);
        }
    }
}
