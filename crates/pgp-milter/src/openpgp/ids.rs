//! Names the OpenPGP layer shares with everything above it: packet tags,
//! whom a session key is for, key IDs in hexadecimal.

/// Packet tags this crate knows by name.
pub mod tag {
    /// Public-Key Encrypted Session Key.
    pub const PKESK: u8 = 1;
    /// Signature.
    pub const SIGNATURE: u8 = 2;
    /// Symmetric-Key Encrypted Session Key.
    pub const SKESK: u8 = 3;
    /// One-Pass Signature.
    pub const ONE_PASS_SIGNATURE: u8 = 4;
    /// Secret key.
    pub const SECRET_KEY: u8 = 5;
    /// Public key.
    pub const PUBLIC_KEY: u8 = 6;
    /// Compressed data.
    pub const COMPRESSED: u8 = 8;
    /// Symmetrically Encrypted Data (legacy, no integrity protection).
    pub const SED: u8 = 9;
    /// Marker (ignored by readers).
    pub const MARKER: u8 = 10;
    /// Literal data.
    pub const LITERAL: u8 = 11;
    /// Symmetrically Encrypted and Integrity Protected Data.
    pub const SEIPD: u8 = 18;
    /// LibrePGP/GnuPG OCB "AEAD Encrypted Data".
    pub const AEAD: u8 = 20;
    /// Padding (RFC 9580).
    pub const PADDING: u8 = 21;
    /// Secret subkey.
    pub const SECRET_SUBKEY: u8 = 7;
    /// Trust (GnuPG keyring metadata, ignored).
    pub const TRUST: u8 = 12;
    /// User ID.
    pub const USER_ID: u8 = 13;
    /// Public subkey.
    pub const PUBLIC_SUBKEY: u8 = 14;
    /// User attribute (a photo ID).
    pub const USER_ATTRIBUTE: u8 = 17;
}

/// Whom a public-key session-key packet is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyTarget {
    /// A v3 PKESK: the recipient key's 8-octet key ID.
    KeyId([u8; 8]),
    /// A v6 PKESK: the recipient key's version and fingerprint.
    Fingerprint {
        /// Key version (4 or 6).
        version: u8,
        /// The fingerprint (20 octets for v4, 32 for v6).
        fingerprint: Vec<u8>,
    },
    /// A hidden recipient: the all-zero key ID (v3, `gpg --throw-keyids`,
    /// `--hidden-recipient`) or an anonymous v6 PKESK.
    Wildcard,
}

impl std::fmt::Display for KeyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyTarget::KeyId(id) => write!(f, "{}", hex(id)),
            KeyTarget::Fingerprint { fingerprint, .. } => write!(f, "{}", hex(fingerprint)),
            KeyTarget::Wildcard => f.write_str("hidden recipient"),
        }
    }
}

/// Upper-case hexadecimal, as GnuPG prints key IDs and fingerprints.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
