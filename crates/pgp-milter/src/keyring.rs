//! The public keyring: a directory of ASCII-armored OpenPGP public keys
//! (`*.asc`), read at start-up (and again on `SIGHUP`, through
//! [`SharedKeyring`]), mapping e-mail addresses from User IDs to
//! the encryption-capable keys (primary keys and subkeys) of those
//! certificates.
//!
//! Parsing is the crate's own packet walker: fingerprints and key IDs are
//! computed (v4: SHA-1, RFC 4880 §12.2; v5/v6: SHA-256), User IDs read, and
//! Key Flags taken from the self-signatures. Nothing is verified: the
//! keyring is the administrator's, trusted as installed. Expiry is not
//! looked at; an (unverified) revocation signature removes the key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use thiserror::Error;

use crate::armor::{self, Kind};
use crate::packets::{self, KeyTarget, hex, tag};

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

/// One key (primary or subkey) of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Fingerprint and key ID.
    pub packet: packets::KeyPacket,
    /// A subkey (not the primary key).
    pub subkey: bool,
    /// Usable to encrypt mail: an algorithm that can encrypt and, if the
    /// self-signatures carry Key Flags, the "encrypt communications" or
    /// "encrypt storage" flag; not revoked.
    pub can_encrypt: bool,
}

impl Key {
    /// True if a PKESK for `target` is for this key. A wildcard matches no
    /// key (the policy decides about hidden recipients).
    pub fn is_target(&self, target: &KeyTarget) -> bool {
        match target {
            KeyTarget::KeyId(id) => *id == self.packet.key_id,
            KeyTarget::Fingerprint {
                version,
                fingerprint,
            } => *version == self.packet.version && *fingerprint == self.packet.fingerprint,
            KeyTarget::Wildcard => false,
        }
    }
}

/// A transferable public key: the primary key, its subkeys, its User IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// Primary key first, then the subkeys in order.
    pub keys: Vec<Key>,
    /// The User ID strings (lossy UTF-8).
    pub user_ids: Vec<String>,
}

impl Cert {
    /// The primary key.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// The e-mail addresses of the User IDs (lower case, deduplicated).
    pub fn addresses(&self) -> Vec<String> {
        let mut out: Vec<String> = self.user_ids.iter().filter_map(|u| address_of(u)).collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The address in a User ID: the last `<...>`, or the whole User ID when
/// it is a bare address. Lower-cased (domains are case-insensitive, and so
/// are mailboxes in practice).
pub fn address_of(user_id: &str) -> Option<String> {
    let candidate = match (user_id.rfind('<'), user_id.rfind('>')) {
        (Some(open), Some(close)) if open < close => &user_id[open + 1..close],
        _ => user_id,
    };
    let candidate = candidate.trim();
    let (local, domain) = candidate.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || candidate.contains(char::is_whitespace) {
        return None;
    }
    Some(candidate.to_lowercase())
}

/// Public-key algorithms that can encrypt: RSA (1, 2), Elgamal (16, 20),
/// ECDH (18), X25519 (25), X448 (26).
fn algorithm_can_encrypt(algorithm: u8) -> bool {
    matches!(algorithm, 1 | 2 | 16 | 18 | 20 | 25 | 26)
}

/// Key Flags "encrypt communications" and "encrypt storage".
const FLAGS_ENCRYPT: u8 = 0x04 | 0x08;

/// Which key the signatures that follow belong to.
#[derive(Clone, Copy)]
enum Context {
    Primary,
    UserId,
    UserAttribute,
    Subkey(usize),
}

/// Parses binary packets holding one or more transferable public keys.
pub fn parse_certs(data: &[u8]) -> Result<Vec<Cert>, String> {
    struct Building {
        cert: Cert,
        flags: Vec<Option<u8>>,
        revoked: Vec<bool>,
    }
    fn finish(b: Building) -> Cert {
        let mut cert = b.cert;
        for (i, key) in cert.keys.iter_mut().enumerate() {
            key.can_encrypt = algorithm_can_encrypt(key.packet.algorithm)
                && b.flags[i].is_none_or(|f| f & FLAGS_ENCRYPT != 0)
                && !b.revoked[i]
                && !b.revoked[0];
        }
        cert
    }
    let packets = packets::walk(data).map_err(|e| e.to_string())?;
    let mut certs = Vec::new();
    let mut current: Option<Building> = None;
    let mut context = Context::Primary;
    for p in packets {
        let at = |what: &str| format!("packet tag {} at offset {}: {what}", p.tag, p.offset);
        let body = || p.body(data).ok_or_else(|| at("partial body length"));
        let key = |subkey| -> Result<Key, String> {
            Ok(Key {
                packet: packets::key_packet(body()?).map_err(|e| at(&e))?,
                subkey,
                can_encrypt: false,
            })
        };
        match p.tag {
            tag::PUBLIC_KEY => {
                certs.extend(current.take().map(finish));
                current = Some(Building {
                    cert: Cert {
                        keys: vec![key(false)?],
                        user_ids: Vec::new(),
                    },
                    flags: vec![None],
                    revoked: vec![false],
                });
                context = Context::Primary;
            }
            tag::SECRET_KEY | tag::SECRET_SUBKEY => {
                return Err("secret key material: only public keys belong in the keyring".into());
            }
            tag::MARKER | tag::PADDING | tag::TRUST => {}
            t => {
                let Some(b) = current.as_mut() else {
                    return Err(at("does not start a public key (tag 6 expected first)"));
                };
                match t {
                    tag::PUBLIC_SUBKEY => {
                        b.cert.keys.push(key(true)?);
                        b.flags.push(None);
                        b.revoked.push(false);
                        context = Context::Subkey(b.cert.keys.len() - 1);
                    }
                    tag::USER_ID => {
                        b.cert
                            .user_ids
                            .push(String::from_utf8_lossy(body()?).into_owned());
                        context = Context::UserId;
                    }
                    tag::USER_ATTRIBUTE => context = Context::UserAttribute,
                    tag::SIGNATURE => {
                        let sig = packets::signature_info(body()?).map_err(at)?;
                        let target = match (context, sig.sig_type) {
                            (Context::Primary | Context::UserId, 0x10..=0x13 | 0x1f | 0x20) => {
                                Some(0)
                            }
                            (Context::Subkey(i), 0x18 | 0x28) => Some(i),
                            _ => None,
                        };
                        if let Some(i) = target {
                            if matches!(sig.sig_type, 0x20 | 0x28) {
                                b.revoked[i] = true;
                            } else if let Some(f) = sig.key_flags {
                                b.flags[i] = Some(b.flags[i].unwrap_or(0) | f);
                            }
                        }
                    }
                    t => return Err(at(&format!("unexpected packet tag {t} in a public key"))),
                }
            }
        }
    }
    certs.extend(current.take().map(finish));
    if certs.is_empty() {
        return Err("no public key".into());
    }
    Ok(certs)
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
                "armor block {n} is {:?}, not a PGP PUBLIC KEY BLOCK",
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
            let keys: Vec<AddressKey> = cert
                .keys
                .iter()
                .filter(|k| k.can_encrypt)
                .map(|k| AddressKey {
                    key: k.clone(),
                    primary_fingerprint: primary_fingerprint.clone(),
                })
                .collect();
            for address in cert.addresses() {
                let entry = by_address.entry(address).or_default();
                for k in &keys {
                    if !entry.contains(k) {
                        entry.push(k.clone());
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

    /// The encryption-capable keys of `address` (any case).
    pub fn keys_for(&self, address: &str) -> &[AddressKey] {
        self.by_address
            .get(&address.to_lowercase())
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

    /// Number of addresses with at least one encryption key.
    pub fn address_count(&self) -> usize {
        self.by_address.values().filter(|k| !k.is_empty()).count()
    }

    /// Number of `.asc` files read by [`Keyring::load_dir`].
    pub fn file_count(&self) -> usize {
        self.files
    }

    /// Number of encryption-capable keys (primary keys and subkeys).
    pub fn encryption_key_count(&self) -> usize {
        self.certs
            .iter()
            .flat_map(|c| &c.keys)
            .filter(|k| k.can_encrypt)
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
        assert_eq!(cert.user_ids, ["Fixture <Fixture@Example.ORG>"]);
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
        for n in 0..data.len() {
            let _ = parse_certs(&data[..n]);
            let mut flipped = data.clone();
            flipped[n] ^= 0xff;
            let _ = parse_certs(&flipped);
        }
        // A PGP MESSAGE where a key was expected.
        let msg = "-----BEGIN PGP MESSAGE-----\n\nwcBMA0Q=\n-----END PGP MESSAGE-----\n";
        assert!(parse_armored(msg.as_bytes()).is_err());
        // A secret key.
        assert!(parse_certs(&[0xc5, 1, 4]).unwrap_err().contains("secret"));
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
