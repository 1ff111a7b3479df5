//! The public keyring: a directory of ASCII-armored OpenPGP public keys
//! (`*.asc`), read at start-up (and again on `SIGHUP`, through
//! [`SharedKeyring`]), mapping e-mail addresses from User IDs to
//! the encryption-capable keys (primary keys and subkeys) of those
//! certificates.
//!
//! The certificates are parsed and their self-signatures verified by rpgp
//! (through [`crate::openpgp::certificates`], isolated like every rpgp call):
//! a User ID counts only with a valid, unrevoked self-certification; a subkey
//! only with a valid binding signature; Key Flags and key expiry come from
//! the newest valid self-signature. A revoked, expired or unverifiable key is
//! kept, with the reason, so a refusal can say why ("key for
//! bob@example.org expired 2025-01-01") — expiry is judged when a message is,
//! not when the keyring is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use thiserror::Error;

use crate::armor::{self, Kind};
use crate::openpgp::{self, KeyTarget, hex};

pub use crate::openpgp::cert::{Cert, Key, KeyPacket, UserIdStatus, address_of, date};

/// Largest key file read (keys with many signatures can be large).
pub const MAX_KEY_FILE_BYTES: u64 = 16 << 20;

/// Why the keyring does not load. Every variant names the file.
#[derive(Debug, Error)]
pub enum KeyringError {
    /// The directory or a file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A key file that is not a well-formed public key block.
    #[error("{path}: {message}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Parses binary packets holding one or more transferable public keys.
pub fn parse_certs(data: &[u8]) -> Result<Vec<Cert>, String> {
    openpgp::certificates(data).map_err(|e| e.to_string())
}

/// Parses an ASCII-armored file: one or more `PGP PUBLIC KEY BLOCK`s
/// (text around them, such as comments, is ignored).
pub fn parse_armored(text: &[u8]) -> Result<Vec<Cert>, String> {
    let scan = armor::scan(text);
    if scan.blocks.is_empty() {
        return Err("no -----BEGIN PGP PUBLIC KEY BLOCK----- armor".into());
    }
    let mut certs = Vec::new();
    for (i, block) in scan.blocks.iter().enumerate() {
        let n = i + 1;
        let block = block
            .as_ref()
            .map_err(|e| format!("armor block {n}: {e}"))?;
        if block.kind != Kind::PublicKey {
            return Err(format!(
                "armor block {n} is {}, not a PGP PUBLIC KEY BLOCK",
                block.kind
            ));
        }
        certs.extend(parse_certs(&block.data).map_err(|e| format!("armor block {n}: {e}"))?);
    }
    Ok(certs)
}

/// An encryption-capable key reachable from an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressKey {
    /// The key.
    pub key: Key,
    /// The primary key's fingerprint (for logs).
    pub primary_fingerprint: Vec<u8>,
    /// Why the address's User ID does not bind it to this key, if it does
    /// not (revoked, no valid self-certification).
    pub user_id_problem: Option<String>,
}

impl AddressKey {
    /// Why this key cannot be used for the address at `now`, if it cannot.
    pub fn problem_at(&self, now: u64) -> Option<String> {
        self.user_id_problem
            .clone()
            .or_else(|| self.key.problem_at(now))
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The loaded keyring.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    certs: Vec<Cert>,
    by_address: HashMap<String, Vec<AddressKey>>,
    files: usize,
}

impl Keyring {
    /// A keyring of these certificates.
    pub fn from_certs(certs: Vec<Cert>) -> Keyring {
        let mut by_address: HashMap<String, Vec<AddressKey>> = HashMap::new();
        for cert in &certs {
            let primary_fingerprint = cert.primary().packet.fingerprint.clone();
            for (address, user_id_problem) in cert.addresses() {
                let entry = by_address.entry(address).or_default();
                for k in cert.keys.iter().filter(|k| k.can_encrypt) {
                    let k = AddressKey {
                        key: k.clone(),
                        primary_fingerprint: primary_fingerprint.clone(),
                        user_id_problem: user_id_problem.clone(),
                    };
                    if !entry.contains(&k) {
                        entry.push(k);
                    }
                }
            }
        }
        Keyring {
            certs,
            by_address,
            files: 0,
        }
    }

    /// Every address whose encryption keys are all unusable at `now`, with
    /// why: `key for bob@example.org expired 2025-01-01`. Sorted.
    pub fn problems_at(&self, now: u64) -> Vec<String> {
        let mut out: Vec<String> = self
            .by_address
            .iter()
            .filter(|(_, keys)| !keys.is_empty())
            .filter_map(|(address, keys)| {
                let problems: Vec<String> = keys
                    .iter()
                    .map(|k| k.problem_at(now))
                    .collect::<Option<_>>()?;
                Some(format!("key for {address} {}", problems[0]))
            })
            .collect();
        out.sort();
        out
    }

    /// Reads every `*.asc` file of `dir` (not recursively; other files are
    /// ignored). Any file that is not a well-formed public key is an error
    /// naming it.
    pub fn load_dir(dir: &Path) -> Result<Keyring, KeyringError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| KeyringError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io(dir))?;
        files.retain(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("asc")));
        files.sort();
        let mut certs = Vec::new();
        for path in &files {
            let bad = |message: String| KeyringError::BadKey {
                path: path.clone(),
                message,
            };
            let meta = std::fs::metadata(path).map_err(io(path))?;
            if !meta.is_file() {
                continue;
            }
            if meta.len() > MAX_KEY_FILE_BYTES {
                return Err(bad(format!(
                    "larger than {MAX_KEY_FILE_BYTES} bytes; not a key file?"
                )));
            }
            let text = std::fs::read(path).map_err(io(path))?;
            certs.extend(parse_armored(&text).map_err(bad)?);
        }
        let mut keyring = Keyring::from_certs(certs);
        keyring.files = files.len();
        Ok(keyring)
    }

    /// The encryption-capable keys of `address` (any spelling of it: it is
    /// canonicalised like the User IDs' addresses).
    pub fn keys_for(&self, address: &str) -> &[AddressKey] {
        crate::address::Address::parse(address)
            .and_then(|a| self.by_address.get(a.as_str()))
            .map_or(&[], Vec::as_slice)
    }

    /// The certificates.
    pub fn certs(&self) -> &[Cert] {
        &self.certs
    }

    /// Number of certificates (primary keys).
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// True if no key was loaded.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Number of addresses with at least one encryption key usable now.
    pub fn address_count(&self) -> usize {
        let now = now();
        self.by_address
            .values()
            .filter(|k| k.iter().any(|k| k.problem_at(now).is_none()))
            .count()
    }

    /// Number of `.asc` files read by [`Keyring::load_dir`].
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Number of encryption-capable keys (primary keys and subkeys) usable
    /// now.
    pub fn encryption_key_count(&self) -> usize {
        let now = now();
        self.certs
            .iter()
            .flat_map(|c| &c.keys)
            .filter(|k| k.can_encrypt && k.problem_at(now).is_none())
            .count()
    }
}

/// The keyring in force, replaceable while the milter runs (`SIGHUP`
/// reloads `keyring_dir`). Messages judged during a reload see the old or
/// the new keyring, never a mix.
#[derive(Debug)]
pub struct SharedKeyring {
    dir: Option<PathBuf>,
    current: RwLock<Arc<Keyring>>,
}

impl SharedKeyring {
    /// A keyring read from `dir` (so [`SharedKeyring::reload`] can read it again).
    pub fn from_dir(keyring: Keyring, dir: PathBuf) -> SharedKeyring {
        SharedKeyring {
            dir: Some(dir),
            current: RwLock::new(Arc::new(keyring)),
        }
    }

    /// A keyring that has no directory to reload from (tests, embedding).
    pub fn fixed(keyring: Keyring) -> SharedKeyring {
        SharedKeyring {
            dir: None,
            current: RwLock::new(Arc::new(keyring)),
        }
    }

    /// The keyring now.
    pub fn get(&self) -> Arc<Keyring> {
        // A poisoned lock still holds a whole keyring (it is only ever
        // replaced as a unit).
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The directory the keyring is read from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Reads the directory again; on success the new keyring replaces the
    /// old one, on error the old one stays in force.
    pub fn reload(&self) -> Result<Arc<Keyring>, KeyringError> {
        let Some(dir) = &self.dir else {
            return Ok(self.get());
        };
        let new = Arc::new(Keyring::load_dir(dir)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new.clone();
        Ok(new)
    }
}

/// A short list of targets for logs and replies.
pub fn describe_targets(targets: &[KeyTarget]) -> String {
    let mut names: Vec<String> = targets.iter().map(ToString::to_string).collect();
    names.dedup();
    if names.len() > 4 {
        let more = names.len() - 4;
        names.truncate(4);
        names.push(format!("{more} more"));
    }
    names.join(", ")
}

/// Hexadecimal key ID, for logs.
pub fn key_id_hex(key: &Key) -> String {
    hex(&key.packet.key_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `gpg --quick-generate-key "Fixture <Fixture@Example.ORG>"
    /// future-default` (GnuPG 2.2.40): ed25519 primary, cv25519 subkey.
    const FIXTURE: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEawQZKBYJKwYBBAHaRw8BAQdAqe7tog1eFQ/S/bPkbBLyNBpJmy/zSbisGJH2
bICl3f+0HUZpeHR1cmUgPEZpeHR1cmVARXhhbXBsZS5PUkc+iJAEExYIADgWIQTi
flvVPg7ryQCISQ3sgquPFR5z/wUCawQZKAIbAwULCQgHAgYVCgkICwIEFgIDAQIe
AQIXgAAKCRDsgquPFR5z/z3fAPsEPSSEnUjR79H6+5IMKBTsMxIufqiDlDv0yME9
WeJbbgD/bl+1fpmtyocrva6IClkSSdilqDZSoJ2JJowNwZ0Lfgm4OARrBBkoEgor
BgEEAZdVAQUBAQdAwfK/uVtZVMx7TaFpBD3/6ITcXM+oF/fLhub1vnag6i8DAQgH
iHgEGBYIACAWIQTiflvVPg7ryQCISQ3sgquPFR5z/wUCawQZKAIbDAAKCRDsgquP
FR5z/3edAQD+hnxVwCAAyeNp5q6PlIvcwHx7VMiTFQK4+Ex8/RzBDgD6A37Kx4S6
2JiK6XTDSDlaGYuJI/g4Ohycpd7vk+7vhwM=
=l2pb
-----END PGP PUBLIC KEY BLOCK-----
";

    #[test]
    fn fingerprints_and_key_ids_match_gpg_with_colons() {
        // gpg --with-colons --list-keys:
        // pub:u:255:22:EC82AB8F151E73FF:...:scESC:...:ed25519
        // fpr:::::::::E27E5BD53E0EEBC90088490DEC82AB8F151E73FF:
        // sub:u:255:18:12FF7259D956F972:...:e:...:cv25519
        // fpr:::::::::463A95A02B6A4E4718AB027412FF7259D956F972:
        let certs = parse_armored(FIXTURE.as_bytes()).unwrap();
        let [cert] = certs.as_slice() else { panic!() };
        let [primary, sub] = cert.keys.as_slice() else {
            panic!()
        };
        assert_eq!(
            hex(&primary.packet.fingerprint),
            "E27E5BD53E0EEBC90088490DEC82AB8F151E73FF"
        );
        assert_eq!(key_id_hex(primary), "EC82AB8F151E73FF");
        assert_eq!((primary.packet.algorithm, primary.subkey), (22, false));
        assert!(!primary.can_encrypt, "ed25519 signs only");
        assert_eq!(
            hex(&sub.packet.fingerprint),
            "463A95A02B6A4E4718AB027412FF7259D956F972"
        );
        assert_eq!(key_id_hex(sub), "12FF7259D956F972");
        assert_eq!((sub.packet.algorithm, sub.subkey), (18, true));
        assert!(sub.can_encrypt);
        assert_eq!(
            cert.user_ids,
            [UserIdStatus {
                user_id: "Fixture <Fixture@Example.ORG>".into(),
                problem: None
            }]
        );
        assert_eq!((primary.expires, &primary.problem), (None, &None));
        let ring = Keyring::from_certs(certs);
        let keys = ring.keys_for("FIXTURE@example.org");
        assert_eq!(keys.len(), 1);
        assert_eq!(key_id_hex(&keys[0].key), "12FF7259D956F972");
        assert!(
            keys[0]
                .key
                .is_target(&KeyTarget::KeyId(keys[0].key.packet.key_id))
        );
        assert!(!keys[0].key.is_target(&KeyTarget::Wildcard));
        assert!(ring.keys_for("other@example.org").is_empty());
        assert_eq!((ring.len(), ring.address_count()), (1, 1));
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_735_689_600), "2025-01-01");
        assert_eq!(date(1_735_689_599), "2024-12-31");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(4_107_542_400), "2100-03-01");
    }

    #[test]
    fn addresses_from_user_ids() {
        assert_eq!(
            address_of("Bob Smith (work) <Bob@Example.ORG>").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(
            address_of("bob@example.org").as_deref(),
            Some("bob@example.org")
        );
        assert_eq!(address_of("Bob Smith"), None);
        assert_eq!(address_of("<>"), None);
        assert_eq!(address_of("Bob <not an address>"), None);
    }

    #[test]
    fn garbage_keys_are_errors_not_panics() {
        assert!(parse_armored(b"hello").is_err());
        assert!(parse_certs(&[]).is_err());
        // Every truncation of the fixture's packets is an error or a
        // smaller valid key, never a panic.
        let data = &armor::scan(FIXTURE.as_bytes()).blocks[0]
            .as_ref()
            .unwrap()
            .data
            .clone();
        // rpgp runs isolated, so a panic would come back as an error too:
        // check it never does.
        let no_panic = |d: &[u8]| {
            let r = openpgp::certificates(d);
            assert!(
                !matches!(r, Err(openpgp::OpenPgpError::Panicked(_))),
                "{r:?}"
            );
            r
        };
        let mut unusable = 0;
        for n in 0..data.len() {
            let _ = no_panic(&data[..n]);
            let mut flipped = data.clone();
            flipped[n] ^= 0xff;
            if let Ok(certs) = no_panic(&flipped) {
                // Most flipped octets that still parse break a signature
                // (unhashed subpackets are not signed): counted below.
                let now = now();
                let usable = |c: &Cert| {
                    c.keys.iter().all(|k| k.problem_at(now).is_none())
                        && c.user_ids.iter().all(|u| u.problem.is_none())
                };
                if !certs.iter().all(usable) {
                    unusable += 1;
                }
            }
        }
        assert!(unusable > 0);
        // A PGP MESSAGE where a key was expected.
        let msg = "-----BEGIN PGP MESSAGE-----\n\nwcBMA0Q=\n-----END PGP MESSAGE-----\n";
        assert!(parse_armored(msg.as_bytes()).is_err());
        // A secret key (rpgp parses the packet first: a real one is needed).
        assert!(parse_certs(&[0xc5, 1, 4]).is_err());
        // A User ID before any key.
        assert!(
            parse_certs(&[0xcd, 1, b'x'])
                .unwrap_err()
                .contains("does not start with a public key")
        );
        // A v3 key.
        assert!(parse_certs(&[0xc6, 6, 3, 0, 0, 0, 0, 1]).is_err());
    }

    /// RFC 9580 Appendix A.3: the sample v6 certificate (Ed25519 primary
    /// with a direct-key signature, X25519 subkey; no User ID).
    const RFC9580_V6_CERT: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

xioGY4d/4xsAAAAg+U2nu0jWCmHlZ3BqZYfQMxmZu52JGggkLq2EVD34laPCsQYf
GwoAAABCBYJjh3/jAwsJBwUVCg4IDAIWAAKbAwIeCSIhBssYbE8GCaaX5NUt+mxy
KwwfHifBilZwj2Ul7Ce62azJBScJAgcCAAAAAK0oIBA+LX0ifsDm185Ecds2v8lw
gyU2kCcUmKfvBXbAf6rhRYWzuQOwEn7E/aLwIwRaLsdry0+VcallHhSu4RN6HWaE
QsiPlR4zxP/TP7mhfVEe7XWPxtnMUMtf15OyA51YBM4qBmOHf+MZAAAAIIaTJINn
+eUBXbki+PSAld2nhJh/LVmFsS+60WyvXkQ1wpsGGBsKAAAALAWCY4d/4wKbDCIh
BssYbE8GCaaX5NUt+mxyKwwfHifBilZwj2Ul7Ce62azJAAAAAAQBIKbpGG2dWTX8
j+VjFM21J0hqWlEg+bdiojWnKfA5AQpWUWtnNwDEM0g12vYxoWM8Y81W+bHBw805
I8kWVkXU6vFOi+HWvv/ira7ofJu16NnoUkhclkUrk0mXubZvyl4GBg==
-----END PGP PUBLIC KEY BLOCK-----
";

    #[test]
    fn v6_certificate_from_rfc9580() {
        let certs = parse_armored(RFC9580_V6_CERT.as_bytes()).unwrap();
        let [cert] = certs.as_slice() else { panic!() };
        let [primary, sub] = cert.keys.as_slice() else {
            panic!()
        };
        assert_eq!(
            hex(&primary.packet.fingerprint),
            "CB186C4F0609A697E4D52DFA6C722B0C1F1E27C18A56708F6525EC27BAD9ACC9"
        );
        assert_eq!(key_id_hex(primary), "CB186C4F0609A697");
        assert!(!primary.can_encrypt);
        assert_eq!(
            hex(&sub.packet.fingerprint),
            "12C83F1E706F6308FE151A417743A1F033790E93E9978488D1DB378DA9930885"
        );
        assert_eq!((sub.packet.version, sub.packet.algorithm), (6, 25));
        assert!(sub.can_encrypt);
        assert!(sub.is_target(&KeyTarget::Fingerprint {
            version: 6,
            fingerprint: sub.packet.fingerprint.clone()
        }));
        assert!(!sub.is_target(&KeyTarget::Fingerprint {
            version: 6,
            fingerprint: primary.packet.fingerprint.clone()
        }));
        assert!(cert.addresses().is_empty(), "no User ID");
    }

    #[test]
    fn shared_keyring_reloads_or_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let shared = SharedKeyring::from_dir(
            Keyring::load_dir(dir.path()).unwrap(),
            dir.path().to_owned(),
        );
        assert!(shared.get().keys_for("fixture@example.org").is_empty());
        std::fs::write(dir.path().join("fixture.asc"), FIXTURE).unwrap();
        let before = shared.get();
        let new = shared.reload().unwrap();
        assert_eq!(new.keys_for("fixture@example.org").len(), 1);
        assert_eq!(shared.get().len(), 1);
        assert!(before.is_empty(), "a reader keeps the keyring it took");
        std::fs::write(dir.path().join("junk.asc"), "junk").unwrap();
        let e = shared.reload().unwrap_err().to_string();
        assert!(e.contains("junk.asc"), "{e}");
        assert_eq!(shared.get().len(), 1, "the old keys stay in force");
        let fixed = SharedKeyring::fixed(Keyring::default());
        assert!(fixed.reload().unwrap().is_empty());
        assert_eq!(fixed.dir(), None);
    }
}
