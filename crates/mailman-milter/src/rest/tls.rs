//! TLS for `https://` REST URLs: rustls (with the `ring` provider) under
//! hyper's HTTP/1.1 client. The server is verified against the system's
//! trusted roots (the store Debian's ca-certificates keeps, read through
//! rustls-native-certs, which also honours `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`), or, when `ca_file` is set, against the certificates in
//! that file alone (as `curl --cacert` does): a private CA then vouches for
//! the API and no public CA can.
//!
//! Plain `http://` URLs use the same connector without reading any roots.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::{ConfigBuilderExt as _, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};

use super::RestError;

/// The connector of the REST client and of `--check-backend`.
pub(crate) type Connector = HttpsConnector<HttpConnector>;

/// Whether `url` (already checked) is an `https://` URL.
pub(crate) fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// A connector for `url`: TLS with the roots described above when `url`
/// is `https://`, plain TCP otherwise; connecting bounded by `timeout`.
/// Errors: the roots cannot be read (no system roots, an unreadable or
/// empty `ca_file`).
pub(crate) fn connector(
    url: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Connector, RestError> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    // rustls 0.23.48 deprecates its ring provider because ring has no
    // post-quantum key exchange (ML-KEM). It stays the choice here: it
    // builds with a C compiler alone, where aws-lc-rs compiles a large C
    // library (and wants cmake on some targets); what travels is list
    // membership, and the classical X25519/ECDHE exchanges remain sound.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| RestError::Tls(format!("TLS set-up: {e}")))?;
    let tls = if !is_https(url) {
        builder.with_root_certificates(RootCertStore::empty())
    } else if let Some(file) = ca_file {
        builder.with_root_certificates(roots_from(file)?)
    } else {
        builder.with_native_roots().map_err(|e| {
            RestError::Tls(format!(
                "{url}: no trusted root certificates on this system ({e}); install \
                 ca-certificates, or set [mailman] ca_file to the CA that signed the \
                 API's certificate"
            ))
        })?
    }
    .with_no_client_auth();
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// The CA certificates (PEM) in `file`; at least one.
pub fn roots_from(file: &Path) -> Result<RootCertStore, RestError> {
    let bad = |why: String| RestError::Tls(format!("ca_file {}: {why}", file.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .map_err(|e| bad(format!("cannot read it: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots
            .add(cert)
            .map_err(|e| bad(format!("certificate {}: {e}", i + 1)))?;
    }
    Ok(roots)
}

/// A hint for a TLS failure's text (`message`, the error chain), or "".
pub(crate) fn hint(message: &str) -> &'static str {
    if message.contains("UnknownIssuer") {
        " (the API's certificate is not signed by a trusted CA: set [mailman] ca_file to its CA)"
    } else if message.contains("not valid for name") || message.contains("NotValidForName") {
        " (the API's certificate does not name the host in [mailman] url)"
    } else if message.contains("InvalidContentType") {
        " (the server does not speak TLS there: is the url's port a plain http:// one?)"
    } else {
        ""
    }
}
