//! Property tests (the stable-toolchain stand-in for fuzzing, issue 6) of
//! pgp-milter's detection: arbitrary bytes, generated OpenPGP packet
//! sequences, mutated real GnuPG messages and generated MIME trees.
//!
//! Invariants:
//! * nothing panics (the detector's own panic catcher must never fire:
//!   `NotPgp::Internal` counts as a failure);
//! * the packet layer (rpgp's packet parser under our grammar) calls a
//!   sequence of well-formed packets encrypted exactly when an independent
//!   reference walker (below, written from RFC 9580 §4.2 and §10.3) does, and
//!   the whole detector agrees once the packets are armored or attached; on
//!   arbitrary or mutated packets rpgp also checks the packet bodies (which
//!   the reference does not), so there it may refuse more, never accept more;
//! * a mutated or truncated message is only ever accepted as encrypted if
//!   every part of it still is encrypted OpenPGP (or empty, the RFC 3156
//!   control part, or a key) by an independent check;
//! * plaintext next to encrypted data is never accepted;
//! * a generated MIME tree is accepted exactly when a model of the rules
//!   (plaintext anywhere refuses, signed-only refuses) says so.
//!
//! Time per input: generated inputs stay below a few KiB, and
//! `pathological_inputs_finish` runs large worst-case shapes (20,000 open
//! armor blocks or boundaries, 2,000 nested multiparts, 100,000 partial-length
//! chunks) on a 2 MiB stack; no timing is asserted here (house rule), a hang
//! would show as a test that does not finish.
//!
//! Each property runs `CASES` cases (about 2 s in all in a debug build);
//! `PROPTEST_CASES=N` runs N instead (20,000 took 73 s here).
//!
//! The armored data are real GnuPG 2.2.40 output (a throwaway ed25519/cv25519
//! key made for these tests; the secret key was deleted).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgp_milter::detect::top_boundary;
use pgp_milter::{Detection, NotPgp, armor, detect, openpgp, packets};
use proptest::prelude::*;

const CASES: u32 = 512;

fn config() -> ProptestConfig {
    ProptestConfig {
        // `PROPTEST_CASES=100000 cargo test ...` for a longer run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// `gpg -a -r fuzz@example.org -e`: PKESK v3 (ECDH) + SEIPD v1.
const ENC_PKESK: &str = "-----BEGIN PGP MESSAGE-----

hF4DwrElKZVI7LQSAQdAkIuXgABWbzhxbb7FOWqbIvRP/mw2OF1NvQCXaUV8AkEw
vGUx6tWoLLfWYHzRK21BXTgsy1f1bdQWjWgX2Cuu3X52gdjV+VIUG46pVsC4H4Xl
0l8BERKADfGLHRoUp1iFQ3UDzQJ4grCXctvtPfmdowA2j2usW4aBG/n68xDC7BtT
m93sbj/2bLUH+DF4ZehzYUQmAO0fEK2KbidxU81KvQR3wvMU4bt0Duf7fUdS+Pq2
Cg==
=tuXm
-----END PGP MESSAGE-----
";

/// `gpg -a -c`: SKESK v4 + SEIPD v1.
const ENC_SKESK: &str = "-----BEGIN PGP MESSAGE-----

jA0ECQMCUkqrKGOlkxT/0lkBwKDciRsFQo/011swL1/XIrG1HTz9i1kb+Bh0Rqs8
huIp6NOeaQc80JHr7kTWFs88wE1/NBGLxkvmwskVPl+uiiuJJS8sQGLhI6gtRYg0
TTLSmMO7UYlCww==
=RRtR
-----END PGP MESSAGE-----
";

/// `gpg -a -s`: a signed (compressed, not encrypted) message.
const SIGNED_COMPRESSED: &str = "-----BEGIN PGP MESSAGE-----

owGbwMvMwCE2pffnCrEO5WeMa7STWHP1SipKslkka4JTk4tSSxRKUitKFNLyixRK
MlIV0kqrqoAixSXFelwdpSwMYhwMsmKKLK3X1Vqir07yvsyydjbMMFYmkCEMXJwC
MJHn+xn+Ga2J+5H4IKs8vMmau9IqIerY2ugyy6M+xht39/opb0p7w/BX0mVJ7I4T
WVJsOc+ef/xZ/6/qRqOXyNkJc3otfk5a2XuWDQA=
=cM8V
-----END PGP MESSAGE-----
";

/// `gpg -a --detach-sign`.
const DETACHED_SIG: &str = "-----BEGIN PGP SIGNATURE-----

iHUEABYIAB0WIQSF1yaEW9WSS9MErZuUjfmoFogj5gUCawQZfAAKCRCUjfmoFogj
5ue/AP4yrF74YeBqd1eCOwt5OmBaxq1bdjnFTDOxu41OI7Jm7AD9GUSkXbjIahoG
bObn8fl//nrYgUoUzZCcjTj5kqmNzQY=
=8Jnk
-----END PGP SIGNATURE-----
";

/// `gpg -a --export`.
const PUBLIC_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawQZexYJKwYBBAHaRw8BAQdAlSeRsVbg4xNn/NfCR/esoWDmaM8ZmBvRh1wW
imoxZ5C0HEZ1enogVGVzdCA8ZnV6ekBleGFtcGxlLm9yZz6IkAQTFggAOBYhBIXX
JoRb1ZJL0wStm5SN+agWiCPmBQJrBBl7AhsDBQsJCAcCBhUKCQgLAgQWAgMBAh4B
AheAAAoJEJSN+agWiCPmDzwA/2m3RSP8TNt30y5MCBc5Vo+E4EjKFSZYf2Ey3yJ/
ZUqkAQC4/7pvr9Fj7uK4LO4friUAPoK/Wen0C3L/yI6Az3DeALg4BGsEGXsSCisG
AQQBl1UBBQEBB0AJj4Nd/1Bv7S9Jt2AOgdzKfsSpFYfjBjfsuBkSPcdYKAMBCAeI
eAQYFggAIBYhBIXXJoRb1ZJL0wStm5SN+agWiCPmBQJrBBl7AhsMAAoJEJSN+agW
iCPm/6oBAOub/q5pmAWIcWDNUbEJlmPNpVyIEl+9vcRZ55KHFGxsAQCO306FEBPa
Vb+RYqilVq9MwM6CNvvFzAZUKUSJglCoCg==
=T4b4
-----END PGP PUBLIC KEY BLOCK-----
";

// ---------------------------------------------------------------------------
// An independent reference: armor, CRC-24 and the encrypted-message grammar.
// ---------------------------------------------------------------------------

/// RFC 9580 §6.1.1.
fn crc24(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xB704CE;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x1000000 != 0 {
                crc ^= 0x1864CFB;
            }
        }
    }
    crc & 0xFFFFFF
}

fn armor_text(label: &str, data: &[u8], crc: bool, eol: &str) -> String {
    let b64 = STANDARD.encode(data);
    let mut s = format!("-----BEGIN PGP {label}-----{eol}Version: test{eol}{eol}");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push_str(eol);
    }
    if crc {
        let c = crc24(data).to_be_bytes();
        s.push('=');
        s.push_str(&STANDARD.encode(&c[1..]));
        s.push_str(eol);
    }
    s.push_str(&format!("-----END PGP {label}-----{eol}"));
    s
}

/// The data of an armored block as the reference sees it: header lines up to
/// the blank line, base64 lines, an optional checksum that must match;
/// blank lines among them are skipped (as GnuPG does).
fn dearmor(lines: &[&str]) -> Option<Vec<u8>> {
    let mut i = 0;
    while i < lines.len() && lines[i].contains(':') {
        i += 1;
    }
    if i < lines.len() && lines[i].trim().is_empty() {
        i += 1;
    }
    let mut b64 = String::new();
    let mut sum = None;
    for l in &lines[i..] {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        if l.len() == 5 && l.starts_with('=') {
            sum = Some(&l[1..]);
        } else if sum.is_some() {
            return None;
        } else {
            b64.push_str(l);
        }
    }
    let b64 = b64.trim_end_matches('=');
    let data = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64)
        .ok()?;
    if let Some(sum) = sum {
        let want = STANDARD.decode(sum).ok()?;
        if want[..] != crc24(&data).to_be_bytes()[1..] {
            return None;
        }
    }
    Some(data)
}

/// One packet as the reference walker sees it.
struct RefPacket {
    tag: u8,
    first: Option<u8>,
}

/// RFC 9580 §4.2 framing. `None` if the bytes are not a packet sequence.
fn ref_walk(data: &[u8]) -> Option<Vec<RefPacket>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    if data.is_empty() {
        return None;
    }
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
    while pos < data.len() {
        let h = data[pos];
        pos += 1;
        if h & 0x80 == 0 {
            return None;
        }
        if h & 0x40 == 0 {
            let tag = (h >> 2) & 0xF;
            if tag == 0 {
                return None;
            }
            let len = match h & 3 {
                0 => be(data.get(pos..pos + 1)?),
                1 => be(data.get(pos..pos + 2)?),
                2 => be(data.get(pos..pos + 4)?),
                _ => (data.len() - pos) as u64,
            };
            pos += [1, 2, 4, 0][usize::from(h & 3)];
            let end = pos.checked_add(usize::try_from(len).ok()?)?;
            let body = data.get(pos..end)?;
            out.push(RefPacket {
                tag,
                first: body.first().copied(),
            });
            pos = end;
            continue;
        }
        let tag = h & 0x3F;
        if tag == 0 {
            return None;
        }
        let mut first = None;
        loop {
            let o1 = *data.get(pos)?;
            pos += 1;
            let (len, partial) = match o1 {
                0..=191 => (u64::from(o1), false),
                192..=223 => {
                    let o2 = *data.get(pos)?;
                    pos += 1;
                    ((u64::from(o1) - 192) * 256 + u64::from(o2) + 192, false)
                }
                255 => {
                    let l = be(data.get(pos..pos + 4)?);
                    pos += 4;
                    (l, false)
                }
                _ => (1u64 << (o1 & 0x1F), true),
            };
            // Only the data packets may be split into partial lengths, and
            // the first partial length is at least 512 octets (§4.2.1.4).
            if partial && (![8, 9, 11, 18, 20].contains(&tag) || (first.is_none() && len < 512)) {
                return None;
            }
            let end = pos.checked_add(usize::try_from(len).ok()?)?;
            let body = data.get(pos..end)?;
            if first.is_none() {
                first = body.first().copied();
            }
            pos = end;
            if !partial {
                break;
            }
        }
        out.push(RefPacket { tag, first });
    }
    Some(out)
}

/// An encrypted OpenPGP message: (PKESK v3/v6 | SKESK v4/v5/v6)+ then one
/// encrypted-data packet (SED, SEIPD v1/v2, or GnuPG's AEAD v1), nothing
/// after it; marker and padding packets are ignored.
fn ref_encrypted(data: &[u8]) -> bool {
    let Some(packets) = ref_walk(data) else {
        return false;
    };
    let packets: Vec<&RefPacket> = packets
        .iter()
        .filter(|p| p.tag != 10 && p.tag != 21)
        .collect();
    let esks = packets
        .iter()
        .take_while(|p| p.tag == 1 || p.tag == 3)
        .count();
    if esks == 0 || packets.len() != esks + 1 {
        return false;
    }
    let esk_ok = packets[..esks].iter().all(|p| match p.tag {
        1 => matches!(p.first, Some(3 | 6)),
        _ => matches!(p.first, Some(4..=6)),
    });
    let data_packet = packets[esks];
    let data_ok = match data_packet.tag {
        9 => true,
        18 => matches!(data_packet.first, Some(1 | 2)),
        20 => data_packet.first == Some(1),
        _ => false,
    };
    esk_ok && data_ok
}

fn ref_key(data: &[u8]) -> bool {
    ref_walk(data).is_some_and(|p| p.first().is_some_and(|p| p.tag == 5 || p.tag == 6))
}

/// What the reference makes of a decoded text: only whitespace and armored
/// blocks that are encrypted messages or keys. Returns (acceptable, encrypted).
fn ref_text(text: &str) -> (bool, bool) {
    let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end()).collect();
    let mut i = 0;
    let mut encrypted = false;
    while i < lines.len() {
        let l = lines[i];
        if let Some(label) = l
            .strip_prefix("-----BEGIN PGP ")
            .and_then(|r| r.strip_suffix("-----"))
        {
            let end = format!("-----END PGP {label}-----");
            let Some(len) = lines[i + 1..].iter().position(|l| l.trim() == end) else {
                return (false, false);
            };
            let Some(data) = dearmor(&lines[i + 1..i + 1 + len]) else {
                return (false, false);
            };
            match label {
                "MESSAGE" if ref_encrypted(&data) => encrypted = true,
                "PUBLIC KEY BLOCK" | "PRIVATE KEY BLOCK" if ref_key(&data) => {}
                _ => return (false, false),
            }
            i += len + 2;
        } else if !l.trim().is_empty() {
            return (false, false);
        } else {
            i += 1;
        }
    }
    (true, encrypted)
}

/// The independent check of a message the detector accepted: every leaf is
/// empty, an RFC 3156 control part, armor-only text of encrypted messages or
/// keys, or binary encrypted data or a key; and something is encrypted.
fn ref_acceptable(message: &[u8]) -> Result<(), String> {
    let parsed = mailparse::parse_mail(message).map_err(|e| e.to_string())?;
    let mut encrypted = false;
    let mut stack = vec![&parsed];
    while let Some(part) = stack.pop() {
        if !part.subparts.is_empty() {
            stack.extend(part.subparts.iter());
            continue;
        }
        let body = part.get_body_raw().map_err(|e| e.to_string())?;
        if body.trim_ascii().is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(&body);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if lines.len() == 1 && lines[0].eq_ignore_ascii_case("Version: 1") {
            continue;
        }
        if body.trim_ascii_start().starts_with(b"-----BEGIN PGP ")
            || part.ctype.mimetype.starts_with("text/")
        {
            match ref_text(&text) {
                (true, e) => encrypted |= e,
                (false, _) => {
                    return Err(format!(
                        "{} leaf is not only OpenPGP armor",
                        part.ctype.mimetype
                    ));
                }
            }
        } else if ref_encrypted(&body) {
            encrypted = true;
        } else if !ref_key(&body) {
            return Err(format!(
                "{} leaf is not encrypted OpenPGP",
                part.ctype.mimetype
            ));
        }
    }
    if encrypted {
        Ok(())
    } else {
        Err("nothing encrypted".into())
    }
}

// ---------------------------------------------------------------------------
// Message builders.
// ---------------------------------------------------------------------------

const HEAD: &str =
    "From: a@example.org\r\nTo: b@example.org\r\nSubject: test\r\nMIME-Version: 1.0\r\n";

fn pgp_mime(armored: &str) -> Vec<u8> {
    format!(
        "{HEAD}Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"enc-b\"\r\n\r\n\
         This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
         --enc-b\r\nContent-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n\
         --enc-b\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\nContent-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n\
         {armored}\r\n--enc-b--\r\n"
    )
    .into_bytes()
}

fn inline(armored: &str) -> Vec<u8> {
    format!("{HEAD}Content-Type: text/plain; charset=us-ascii\r\n\r\n{armored}").into_bytes()
}

fn attachment(data: &[u8]) -> Vec<u8> {
    let b64 = STANDARD.encode(data);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=\"att-b\"\r\n\r\n--att-b\r\n\
         Content-Type: application/octet-stream; name=\"msg.gpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n--att-b--\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

fn data_of(armored: &str) -> Vec<u8> {
    let lines: Vec<&str> = armored.lines().collect();
    dearmor(&lines[1..lines.len() - 1]).expect("valid fixture")
}

/// The real messages the mutations start from, all accepted as encrypted.
fn real_encrypted() -> Vec<(&'static str, Vec<u8>)> {
    let crlf = |s: &str| s.replace('\n', "\r\n");
    vec![
        ("PGP/MIME PKESK", pgp_mime(&crlf(ENC_PKESK))),
        ("PGP/MIME SKESK", pgp_mime(&crlf(ENC_SKESK))),
        ("inline PKESK LF", inline(ENC_PKESK)),
        ("inline SKESK CRLF", inline(&crlf(ENC_SKESK))),
        ("binary attachment", attachment(&data_of(ENC_PKESK))),
    ]
}

fn is_encrypted(d: &Detection) -> bool {
    matches!(d, Detection::Encrypted(_))
}

/// Runs the detector; fails the property if its panic catcher fired.
fn detect_checked(m: &[u8]) -> Result<Detection, TestCaseError> {
    let d = detect(m);
    if let Detection::Plain(NotPgp::Internal(why)) = &d {
        return Err(TestCaseError::fail(format!(
            "detector failed internally: {why}\ninput: {:?}",
            String::from_utf8_lossy(m)
        )));
    }
    Ok(d)
}

// ---------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------

/// A packet to serialize: tag, body, header form.
#[derive(Debug, Clone)]
struct GenPacket {
    tag: u8,
    body: Vec<u8>,
    /// 0: shortest OpenPGP length, 1: four-octet length, 2: partial lengths,
    /// 3: legacy header (shortest), 4: legacy indeterminate length.
    form: u8,
}

fn serialize(packets: &[GenPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        let len = p.body.len();
        match p.form {
            3 | 4 if p.tag < 16 => {
                let (lt, lb): (u8, Vec<u8>) = if p.form == 4 {
                    (3, vec![])
                } else if len < 256 {
                    (0, vec![len as u8])
                } else if len < 65536 {
                    (1, (len as u16).to_be_bytes().to_vec())
                } else {
                    (2, (len as u32).to_be_bytes().to_vec())
                };
                out.push(0x80 | (p.tag << 2) | lt);
                out.extend(lb);
                out.extend(&p.body);
            }
            2 => {
                out.push(0xC0 | (p.tag & 0x3F));
                // Chunks of 2^k (k from the body length), then the rest.
                let mut rest = &p.body[..];
                // Bodies over 512 octets: 512-octet chunks (valid); shorter
                // ones: smaller chunks, which RFC 9580 §4.2.1.4 forbids.
                let k = if len > 512 {
                    9
                } else {
                    (len.max(2).ilog2()).clamp(1, 9) - 1
                };
                while rest.len() > (1 << k) {
                    out.push(224 + k as u8);
                    out.extend(&rest[..1 << k]);
                    rest = &rest[1 << k..];
                }
                push_len(&mut out, rest.len(), false);
                out.extend(rest);
            }
            f => {
                out.push(0xC0 | (p.tag & 0x3F));
                push_len(&mut out, len, f == 1);
                out.extend(&p.body);
            }
        }
    }
    out
}

fn push_len(out: &mut Vec<u8>, len: usize, four: bool) {
    if four {
        out.push(255);
        out.extend((len as u32).to_be_bytes());
    } else if len < 192 {
        out.push(len as u8);
    } else if len < 8384 {
        let l = len - 192;
        out.push((l >> 8) as u8 + 192);
        out.push(l as u8);
    } else {
        out.push(255);
        out.extend((len as u32).to_be_bytes());
    }
}

fn gen_packet() -> impl Strategy<Value = GenPacket> {
    let tag = prop_oneof![
        4 => Just(1u8), 3 => Just(3u8), 4 => Just(18u8), 1 => Just(9u8), 1 => Just(20u8),
        1 => Just(10u8), 1 => Just(21u8), 1 => Just(2u8), 1 => Just(4u8), 1 => Just(11u8),
        1 => Just(8u8), 1 => Just(6u8), 1 => Just(5u8), 1 => Just(0u8), 1 => 0u8..64,
    ];
    let version = prop_oneof![3 => 1u8..7, 1 => any::<u8>()];
    (
        tag,
        version,
        proptest::collection::vec(any::<u8>(), 0..700),
        0u8..5,
        any::<bool>(),
    )
        .prop_map(|(tag, version, mut body, form, empty)| {
            if empty {
                body.clear();
            } else {
                body.insert(0, version);
            }
            GenPacket { tag, body, form }
        })
}

/// Mostly well-formed encrypted messages, plus arbitrary packet sequences.
fn gen_sequence() -> impl Strategy<Value = Vec<GenPacket>> {
    // Versions: mostly the valid ones (PKESK 3 or 6, SKESK 4 to 6), sometimes not.
    let esk = (
        prop_oneof![Just(1u8), Just(3u8)],
        proptest::bool::weighted(0.9),
        3u8..7,
        proptest::collection::vec(any::<u8>(), 1..120),
        0u8..5,
    )
        .prop_map(|(tag, valid, v, mut body, form)| {
            let v = match (tag, valid) {
                (1, true) => {
                    if v % 2 == 0 {
                        3
                    } else {
                        6
                    }
                }
                (_, true) => v.max(4),
                _ => v,
            };
            body.insert(0, v);
            GenPacket {
                tag,
                body,
                form: if form == 2 { 0 } else { form },
            }
        });
    let data = (
        prop_oneof![Just(18u8), Just(9u8), Just(20u8)],
        1u8..3,
        proptest::collection::vec(any::<u8>(), 0..1500),
        0u8..5,
    )
        .prop_map(|(tag, v, mut body, form)| {
            body.insert(0, v);
            GenPacket { tag, body, form }
        });
    prop_oneof![
        3 => (proptest::collection::vec(esk, 1..4), data).prop_map(|(mut e, d)| {
            e.push(d);
            e
        }),
        1 => proptest::collection::vec(gen_packet(), 0..5),
    ]
}

/// An MPI of `bytes` (RFC 9580 §3.2), its top bit set.
fn mpi(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes[0] |= 0x80;
    let bits = (bytes.len() * 8) as u16;
    let mut out = bits.to_be_bytes().to_vec();
    out.extend(bytes);
    out
}

/// Session-key and encrypted-data packets whose bodies are well-formed (so
/// rpgp parses them), with valid or unknown versions, in every header form:
/// here the detector must agree with the reference exactly.
fn gen_well_formed_sequence() -> impl Strategy<Value = Vec<GenPacket>> {
    let esk = (
        0u8..5,
        proptest::collection::vec(any::<u8>(), 8..9),
        proptest::collection::vec(any::<u8>(), 1..40),
        0u8..5,
    )
        .prop_map(|(kind, id, value, form)| {
            let form = if form == 2 { 0 } else { form };
            let (tag, body) = match kind {
                // PKESK v3, RSA: key ID, algorithm, one MPI.
                0 => {
                    let mut b = vec![3];
                    b.extend(&id);
                    b.push(1);
                    b.extend(mpi(value));
                    (1, b)
                }
                // PKESK v6 to a v4 fingerprint, RSA.
                1 => {
                    let mut b = vec![6, 21, 4];
                    b.extend(id.iter().cycle().take(20));
                    b.push(1);
                    b.extend(mpi(value));
                    (1, b)
                }
                // SKESK v4: AES-256, iterated and salted S2K with SHA-256.
                2 => {
                    let mut b = vec![4, 9, 3, 8];
                    b.extend(&id);
                    b.push(value[0]);
                    (3, b)
                }
                // Unknown versions (rpgp keeps them; the grammar refuses).
                3 => (1, [vec![id[0] % 2 + 4], value].concat()),
                _ => (3, [vec![7 + id[0] % 100], value].concat()),
            };
            GenPacket { tag, body, form }
        });
    let data = (
        0u8..4,
        proptest::collection::vec(any::<u8>(), 0..1500),
        0u8..5,
    )
        .prop_map(|(kind, rest, form)| {
            let (tag, head) = match kind {
                0 => (18, vec![1]),
                // SEIPD v2: AES-256, OCB, chunk size 6, 32-octet salt.
                1 => (18, [vec![2, 9, 2, 6], vec![0x5a; 32]].concat()),
                2 => (9, vec![]),
                // GnuPG AEAD v1: AES-256, OCB, chunk size 6, 15-octet IV.
                _ => (20, [vec![1, 9, 2, 6], vec![0xa5; 15]].concat()),
            };
            GenPacket {
                tag,
                body: [head, rest].concat(),
                form,
            }
        });
    let marker = (0u8..4).prop_map(|form| GenPacket {
        tag: 10,
        body: b"PGP".to_vec(),
        form: if form == 2 { 0 } else { form },
    });
    (
        proptest::option::weighted(0.2, marker),
        proptest::collection::vec(esk, 0..4),
        proptest::option::weighted(0.95, data),
        proptest::option::weighted(0.1, gen_packet()),
    )
        .prop_map(|(marker, esks, data, mut extra)| {
            // A Marker packet's body is "PGP" (RFC 9580 §5.8).
            if let Some(p) = extra.as_mut().filter(|p| p.tag == 10) {
                p.body = b"PGP".to_vec();
            }
            marker
                .into_iter()
                .chain(esks)
                .chain(data)
                .chain(extra)
                .collect()
        })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn gen_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(data: &mut Vec<u8>, m: &Mutation) {
    if data.is_empty() {
        return;
    }
    let at = |i: usize| i % data.len();
    match m {
        Mutation::Flip(i, b) => {
            let i = at(*i);
            data[i] ^= 1 << b;
        }
        Mutation::Set(i, b) => {
            let i = at(*i);
            data[i] = *b;
        }
        Mutation::Insert(i, v) => {
            let i = at(*i);
            data.splice(i..i, v.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i);
            let end = (i + n).min(data.len());
            data.drain(i..end);
        }
        Mutation::Duplicate(i, n) => {
            let i = at(*i);
            let end = (i + n).min(data.len());
            let copy = data[i..end].to_vec();
            data.splice(end..end, copy);
        }
        Mutation::Truncate(i) => {
            let i = at(*i);
            data.truncate(i);
        }
    }
}

/// A generated MIME tree and what the rules make of it.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(Leaf),
    Multi(&'static str, Vec<Tree>),
    /// A complete RFC 3156 multipart/encrypted.
    PgpMime(bool),
}

#[derive(Debug, Clone, Copy)]
enum Leaf {
    /// Armored encrypted message in text/plain (PKESK or SKESK), with a
    /// transfer encoding (0: 7bit, 1: base64, 2: quoted-printable).
    Armored(bool, u8),
    /// Binary encrypted message as application/octet-stream, base64.
    Binary,
    /// Ordinary text.
    Text,
    /// Whitespace only.
    Blank,
    /// A public key attachment.
    Key,
    /// A signed (not encrypted) armored message.
    Signed,
    /// A detached signature as text/plain.
    Signature,
}

/// The model's class: 0 empty, 1 key, 2 encrypted, 3 signed/invalid, 4 plaintext.
fn model(t: &Tree) -> u8 {
    match t {
        Tree::Leaf(Leaf::Armored(..) | Leaf::Binary) | Tree::PgpMime(_) => 2,
        Tree::Leaf(Leaf::Text | Leaf::Signature | Leaf::Signed) => 4,
        Tree::Leaf(Leaf::Blank) => 0,
        Tree::Leaf(Leaf::Key) => 1,
        Tree::Multi(_, kids) => kids.iter().map(model).max().unwrap_or(0),
    }
}

fn gen_leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        4 => (any::<bool>(), 0u8..3).prop_map(|(p, e)| Leaf::Armored(p, e)),
        2 => Just(Leaf::Binary),
        1 => Just(Leaf::Text),
        1 => Just(Leaf::Blank),
        1 => Just(Leaf::Key),
        1 => Just(Leaf::Signed),
        1 => Just(Leaf::Signature),
    ]
}

fn gen_tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        5 => gen_leaf().prop_map(Tree::Leaf),
        1 => any::<bool>().prop_map(Tree::PgpMime),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            prop_oneof![Just("mixed"), Just("alternative"), Just("related")],
            proptest::collection::vec(inner, 1..4),
        )
            .prop_map(|(sub, kids)| Tree::Multi(sub, kids))
    })
}

fn qp(s: &str) -> String {
    // Armor is ASCII without `=` except padding and the checksum line.
    s.replace('=', "=3D")
}

/// Serializes a tree as a MIME entity (headers + body), boundaries numbered.
fn render(t: &Tree, n: &mut usize, out: &mut String) {
    match t {
        Tree::Leaf(l) => match *l {
            Leaf::Armored(pkesk, enc) => {
                let a = if pkesk { ENC_PKESK } else { ENC_SKESK };
                match enc {
                    0 => out.push_str(&format!("Content-Type: text/plain\r\n\r\n{a}")),
                    1 => out.push_str(&format!(
                        "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                        STANDARD.encode(a)
                    )),
                    _ => out.push_str(&format!(
                        "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n{}",
                        qp(a)
                    )),
                }
            }
            Leaf::Binary => out.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
                STANDARD.encode(data_of(ENC_SKESK))
            )),
            Leaf::Text => out.push_str("Content-Type: text/plain\r\n\r\nHello, this is not encrypted.\r\n"),
            Leaf::Blank => out.push_str("Content-Type: text/plain\r\n\r\n \r\n\r\n"),
            Leaf::Key => out.push_str(&format!(
                "Content-Type: application/pgp-keys\r\n\r\n{PUBLIC_KEY}"
            )),
            Leaf::Signed => out.push_str(&format!("Content-Type: text/plain\r\n\r\n{SIGNED_COMPRESSED}")),
            Leaf::Signature => out.push_str(&format!("Content-Type: text/plain\r\n\r\n{DETACHED_SIG}")),
        },
        Tree::PgpMime(pkesk) => {
            *n += 1;
            let b = format!("pm{n}x");
            let a = if *pkesk { ENC_PKESK } else { ENC_SKESK };
            out.push_str(&format!(
                "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{b}\"\r\n\r\n\
                 --{b}\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n\
                 --{b}\r\nContent-Type: application/octet-stream\r\n\r\n{a}\r\n--{b}--\r\n"
            ));
        }
        Tree::Multi(sub, kids) => {
            *n += 1;
            let b = format!("mp{n}x");
            out.push_str(&format!("Content-Type: multipart/{sub}; boundary=\"{b}\"\r\n\r\n"));
            for k in kids {
                out.push_str(&format!("--{b}\r\n"));
                render(k, n, out);
                out.push_str("\r\n");
            }
            out.push_str(&format!("--{b}--\r\n"));
        }
    }
}

fn tree_message(t: &Tree) -> Vec<u8> {
    let mut s = String::from(HEAD);
    render(t, &mut 0, &mut s);
    s.into_bytes()
}

// ---------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------

#[test]
fn fixtures_are_what_they_claim() {
    // The reference and the detector agree on the fixtures themselves.
    assert!(ref_encrypted(&data_of(ENC_PKESK)));
    assert!(ref_encrypted(&data_of(ENC_SKESK)));
    assert!(!ref_encrypted(&data_of(SIGNED_COMPRESSED)));
    assert!(ref_key(&data_of(PUBLIC_KEY)));
    for (name, m) in real_encrypted() {
        assert!(is_encrypted(&detect(&m)), "{name}: {}", detect(&m));
        assert_eq!(ref_acceptable(&m), Ok(()), "{name}");
    }
    for (label, a) in [
        ("signed", SIGNED_COMPRESSED),
        ("signature", DETACHED_SIG),
        ("key", PUBLIC_KEY),
    ] {
        assert!(!is_encrypted(&detect(&inline(a))), "{label}");
        assert!(!is_encrypted(&detect(&pgp_mime(a))), "{label}");
    }
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes: no panic anywhere, and nothing accepted.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        prefix in prop_oneof![
            Just(String::new()),
            Just(HEAD.to_owned()),
            Just(format!("{HEAD}Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"b\"\r\n\r\n--b\r\n")),
            Just(format!("{HEAD}Content-Type: text/plain\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n")),
        ],
    ) {
        let mut m = prefix.into_bytes();
        m.extend(&bytes);
        let d = detect_checked(&m)?;
        if is_encrypted(&d) {
            prop_assert_eq!(ref_acceptable(&m), Ok(()));
        }
        let _ = armor::scan(&bytes);
        if let Err(e) = packets::shape(&bytes) {
            prop_assert!(!e.is_internal(), "{}", e);
        }
        if let Ok(parsed) = openpgp::packets(&bytes) {
            let _ = packets::recipients(&parsed);
        }
        let _ = top_boundary(&m);
    }

    /// Well-formed packet sequences: the packet layer (rpgp's parser and our
    /// grammar) calls them encrypted exactly when the reference does.
    #[test]
    fn well_formed_packets_match_reference(seq in gen_well_formed_sequence()) {
        let data = serialize(&seq);
        let shape = packets::shape(&data);
        let ours = matches!(shape, Ok(packets::Shape::Encrypted { .. }));
        prop_assert_eq!(ours, ref_encrypted(&data), "shape {:?} of {:02x?}", shape, data);
        if let Ok(parsed) = openpgp::packets(&data) {
            prop_assert!(ref_walk(&data).is_some(), "rpgp parsed what the framing refuses");
            if ours {
                // As many recipients as the reference sees PKESKs (not as
                // generated: a legacy indeterminate length swallows what
                // follows it).
                let n = packets::recipients(&parsed).unwrap().len();
                let want = ref_walk(&data).unwrap().iter().filter(|p| p.tag == 1).count();
                prop_assert_eq!(n, want);
            }
        }
    }

    /// Any packet sequence, mutated: rpgp checks packet bodies, which the
    /// reference does not, so the packet layer may refuse more than the
    /// reference but never calls encrypted what the reference does not, and
    /// never parses what the reference's framing refuses.
    #[test]
    fn packet_shape_never_beyond_reference(
        seq in prop_oneof![gen_sequence(), gen_well_formed_sequence()],
        mutations in prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(gen_mutation(), 1..3),
        ],
    ) {
        let mut data = serialize(&seq);
        for m in &mutations {
            mutate(&mut data, m);
        }
        let shape = packets::shape(&data);
        if let Err(e) = &shape {
            prop_assert!(!e.is_internal(), "{}", e);
        }
        if matches!(shape, Ok(packets::Shape::Encrypted { .. })) {
            prop_assert!(ref_encrypted(&data), "shape {:?} of {:02x?}", shape, data);
        }
        if openpgp::packets(&data).is_ok() {
            prop_assert!(ref_walk(&data).is_some(), "{:02x?}", data);
        }
    }

    /// The same sequences armored (inline, PGP/MIME) or attached in binary:
    /// the whole detector accepts exactly what the reference calls encrypted.
    #[test]
    fn wrapped_packets_detected_iff_reference(
        seq in gen_well_formed_sequence(),
        mutations in prop_oneof![
            Just(Vec::new()),
            proptest::collection::vec(gen_mutation(), 1..2),
        ],
        crc in any::<bool>(),
        crlf in any::<bool>(),
    ) {
        let mut data = serialize(&seq);
        for m in &mutations {
            mutate(&mut data, m);
        }
        let want = ref_encrypted(&data);
        // Mutated bodies may no longer be well-formed: then the detector
        // may refuse more than the reference, never accept more.
        let exact = mutations.is_empty();
        let eol = if crlf { "\r\n" } else { "\n" };
        let armored = armor_text("MESSAGE", &data, crc, eol);
        for (form, m) in [
            ("inline", inline(&armored)),
            ("PGP/MIME", pgp_mime(&armored)),
            ("attachment", attachment(&data)),
        ] {
            let d = detect_checked(&m)?;
            // The reference does not model the randomness test: encrypted
            // data that is not random (these bodies are generated, not
            // ciphertext) may be refused where the reference accepts.
            let not_random = d.to_string().contains("not ciphertext");
            if (exact && !not_random) || is_encrypted(&d) {
                prop_assert_eq!(is_encrypted(&d), want, "{} {}: {:02x?}", form, d, data);
            }
        }
    }

    /// Real GnuPG messages with random byte-level mutations: accepted only if
    /// the independent check accepts the mutated message too.
    #[test]
    fn mutated_real_messages_never_wrongly_accepted(
        which in 0usize..5,
        mutations in proptest::collection::vec(gen_mutation(), 1..5),
    ) {
        let (name, mut m) = real_encrypted().swap_remove(which);
        for mu in &mutations {
            mutate(&mut m, mu);
        }
        let d = detect_checked(&m)?;
        if is_encrypted(&d) {
            prop_assert_eq!(ref_acceptable(&m), Ok(()), "{} mutated by {:?}: {}", name, mutations, String::from_utf8_lossy(&m));
        }
    }

    /// Any cut before the end of the armor (inline) or before the closing
    /// boundary (multiparts) is refused: a truncated message is not proven.
    #[test]
    fn truncated_messages_are_refused(which in 0usize..5, cut in any::<usize>()) {
        let (name, m) = real_encrypted().swap_remove(which);
        let text = String::from_utf8_lossy(&m).into_owned();
        let complete_at = match text.rfind("--\r\n") {
            Some(i) if text.contains("multipart/") => i + 2,
            _ => text.rfind("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len(),
        };
        let cut = cut % complete_at;
        let d = detect_checked(&m[..cut])?;
        prop_assert!(!is_encrypted(&d), "{} cut at {}/{}: {}", name, cut, m.len(), d);
    }

    /// A line of prose next to inline armor, or a text part next to an
    /// encrypted one, makes the message plaintext.
    #[test]
    fn plaintext_next_to_encryption_is_refused(
        which in 0usize..2,
        line in "[A-Za-z0-9.,!?][ A-Za-z0-9.,!?]{0,60}",
        before in any::<bool>(),
        subtype in prop_oneof![Just("mixed"), Just("alternative")],
    ) {
        let armored = if which == 0 { ENC_PKESK } else { ENC_SKESK };
        let text = if before {
            format!("{line}\n\n{armored}")
        } else {
            format!("{armored}\n{line}\n")
        };
        let d = detect_checked(&inline(&text))?;
        prop_assert!(!is_encrypted(&d), "{}", d);
        let m = format!(
            "{HEAD}Content-Type: multipart/{subtype}; boundary=\"x\"\r\n\r\n\
             --x\r\nContent-Type: text/plain\r\n\r\n{line}\r\n\
             --x\r\nContent-Type: text/plain\r\n\r\n{armored}\r\n--x--\r\n"
        );
        let d = detect_checked(m.as_bytes())?;
        prop_assert!(!is_encrypted(&d), "{}", d);
    }

    /// Generated MIME trees are accepted exactly when the model says.
    #[test]
    fn mime_trees_follow_the_model(tree in gen_tree()) {
        let m = tree_message(&tree);
        let d = detect_checked(&m)?;
        prop_assert_eq!(is_encrypted(&d), model(&tree) == 2, "{} for {:?}", d, tree);
        if is_encrypted(&d) {
            prop_assert_eq!(ref_acceptable(&m), Ok(()));
        }
    }

    /// Multiparts nested up to 16 deep around encrypted data are read; deeper
    /// is refused, never a crash.
    #[test]
    fn nesting_depth_limit(depth in 1usize..40) {
        let mut t = Tree::Leaf(Leaf::Armored(true, 0));
        for _ in 0..depth {
            t = Tree::Multi("mixed", vec![t]);
        }
        let d = detect_checked(&tree_message(&t))?;
        prop_assert_eq!(is_encrypted(&d), depth <= 16, "depth {}: {}", depth, d);
    }
}

/// The worst shapes found so far, at sizes below the default 16 MiB body cap
/// where they are cheap to run: they must finish (and be refused) without a
/// crash. Deep nesting runs on a thread with tokio's 2 MiB blocking-thread
/// stack, where the milter runs the detector.
#[test]
fn pathological_inputs_finish() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // Thousands of BEGIN lines without END.
    cases.push((
        "unterminated armor",
        inline(&"-----BEGIN PGP MESSAGE-----\n\n".repeat(20_000)),
    ));
    // Many boundaries of a multipart that never closes.
    cases.push((
        "open boundaries",
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n{}",
            "--b\r\n\r\nx\r\n".repeat(20_000)
        )
        .into_bytes(),
    ));
    // A cleartext-signature header that is never followed by a signature.
    cases.push((
        "cleartext without signature",
        inline(&format!(
            "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n{}",
            "-----BEGIN PGP SIGNED MESSAGE-----\n".repeat(20_000)
        )),
    ));
    // Deep multipart nesting (unclosed and closed).
    let mut deep = String::from(HEAD);
    for i in 0..2_000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"d{i}\"\r\n\r\n--d{i}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\nx\r\n");
    cases.push(("2,000 nested multiparts", deep.clone().into_bytes()));
    for i in (0..2_000).rev() {
        deep.push_str(&format!("--d{i}--\r\n"));
    }
    cases.push(("2,000 nested multiparts, closed", deep.into_bytes()));
    // A partial-length chain: the first chunk 512 octets (the least RFC
    // 9580 §4.2.1.4 allows), then 100,000 1-byte chunks.
    let mut chain = vec![
        0xC3, 0x0D, 4, 9, 3, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xD2, 0xE9, 1,
    ];
    // The encrypted data must look random (ciphertext does): a fixed
    // pseudo-random stream, not zeros.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 24) as u8
    };
    chain.extend((0..511).map(|_| random()));
    for _ in 0..100_000 {
        chain.extend([0xE0, random()]);
    }
    chain.push(0);
    cases.push((
        "partial-length chain",
        inline(&armor_text("MESSAGE", &chain, true, "\n")),
    ));
    // The same chain starting with a 1-byte chunk: refused.
    let mut short_first = chain[..16].to_vec();
    for _ in 0..100_000 {
        short_first.extend([0xE0, 1]);
    }
    short_first.push(0);
    cases.push((
        "partial-length chain, 1-byte first chunk",
        inline(&armor_text("MESSAGE", &short_first, true, "\n")),
    ));

    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            cases
                .iter()
                .map(|(name, m)| (name.to_string(), detect(m)))
                .collect::<Vec<_>>()
        })
        .unwrap();
    for (name, d) in handle.join().expect("detector thread crashed") {
        assert!(
            !matches!(d, Detection::Plain(NotPgp::Internal(_))),
            "{name}: {d}"
        );
        if name == "partial-length chain" {
            // Well-formed: SKESK v4, then SEIPD v1 in 100,001 partial chunks.
            assert!(matches!(d, Detection::Encrypted(_)), "{name}: {d}");
        } else {
            assert!(!matches!(d, Detection::Encrypted(_)), "{name}: {d}");
        }
    }
}

/// Found by the property above with a random seed: a space inserted inside
/// an armor line of a real PGP/MIME message was accepted (the reader
/// skipped it, as base64 decoders do), while the independent check refused
/// the part. White space inside an armor line is now refused.
#[test]
fn a_space_inside_an_armor_line_is_not_accepted() {
    let (name, mut m) = real_encrypted().swap_remove(0);
    mutate(
        &mut m,
        &Mutation::Insert(2_724_818_102_374_931_282, vec![b' ']),
    );
    let d = detect(&m);
    assert!(!is_encrypted(&d), "{name}: {d}");
    assert!(ref_acceptable(&m).is_err());
}
