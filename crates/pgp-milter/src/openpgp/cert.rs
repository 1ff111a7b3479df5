//! What a certificate is, as far as the keyring's policy cares: our own
//! summary of rpgp's parse ([`super::certificates`] builds it), so the
//! keyring never sees rpgp's types and this module needs nothing above it.

use super::KeyTarget;

/// What identifies a key (primary or subkey).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPacket {
    /// Key version (4, 5 or 6).
    pub version: u8,
    /// Public-key algorithm ID (RFC 9580 §9.1).
    pub algorithm: u8,
    /// The fingerprint: v4 SHA-1 (RFC 4880 §12.2), v5/v6 SHA-256.
    pub fingerprint: Vec<u8>,
    /// The key ID: the low 64 bits of a v4 fingerprint, the high 64 bits of
    /// a v5/v6 one.
    pub key_id: [u8; 8],
}

/// One key (primary or subkey) of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Fingerprint and key ID.
    pub packet: KeyPacket,
    /// A subkey (not the primary key).
    pub subkey: bool,
    /// Capable of encrypting mail: an algorithm that can encrypt and, if the
    /// newest valid self-signature carries Key Flags, the "encrypt
    /// communications" or "encrypt storage" flag.
    pub can_encrypt: bool,
    /// When the key (or its primary key) expires, Unix seconds.
    pub expires: Option<u64>,
    /// Why the key is unusable regardless of time (revoked, no valid
    /// binding signature), if it is.
    pub problem: Option<String>,
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

    /// Why the key cannot be used at `now` (Unix seconds), if it cannot.
    pub fn problem_at(&self, now: u64) -> Option<String> {
        if let Some(p) = &self.problem {
            return Some(p.clone());
        }
        match self.expires {
            Some(t) if t <= now => Some(format!("expired {}", date(t))),
            _ => None,
        }
    }
}

/// A User ID and whether it is bound to the primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdStatus {
    /// The User ID string (lossy UTF-8).
    pub user_id: String,
    /// Why it does not count (revoked, no valid self-certification).
    pub problem: Option<String>,
}

/// A transferable public key: the primary key, its subkeys, its User IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    /// Primary key first, then the subkeys in order.
    pub keys: Vec<Key>,
    /// The User IDs.
    pub user_ids: Vec<UserIdStatus>,
}

impl Cert {
    /// The primary key.
    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// The e-mail addresses of the User IDs (lower case, deduplicated),
    /// each with the problem of its User ID (`None` when it is bound).
    pub fn addresses(&self) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = self
            .user_ids
            .iter()
            .filter_map(|u| Some((address_of(&u.user_id)?, u.problem.clone())))
            .collect();
        // A bound User ID of an address wins over an unbound one.
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.is_some().cmp(&b.1.is_some())));
        out.dedup_by(|a, b| a.0 == b.0);
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
    // The form recipients are compared in (`Bob@Example.ORG.` is
    // `bob@example.org`).
    crate::address::Address::parse(candidate).map(|a| a.as_str().to_owned())
}

/// `YYYY-MM-DD` (UTC) of Unix seconds, for reasons and logs.
pub fn date(unix: u64) -> String {
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by
    // 400-year eras of 146,097 days.
    let days = (unix / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
