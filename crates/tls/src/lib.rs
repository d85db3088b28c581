//! Certificates and TLS settings of a driftkv cluster: the CA (`driftkv cert ca`), node
//! certificates signed by it (`driftkv cert node`), and the rustls configurations a node serves
//! and dials with.
//!
//! Trust model: the cluster's CA is the membership credential. A node's certificate names its
//! node id (as a DNS name in the subject alternative names, and as the common name); between
//! nodes, both sides present certificates (mutual TLS) and each checks that the id the other
//! claims in its handshake is a name its certificate is valid for, so a member cannot speak for
//! another, and a holder of no certificate of the CA cannot speak at all. Clients see the same
//! node certificate on HTTP and RESP and check it against `ca.pem`.
//!
//! Only the `ring` provider is compiled in (see DEPENDENCIES.md: aws-lc costs a minute of every
//! cold build).

#![forbid(unsafe_code)]

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use rustls;

/// The CA certificate's file name in a TLS directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name: only where certificates are made, never on a node.
pub const CA_KEY_FILE: &str = "ca.key";
/// How long a CA certificate is valid.
const CA_VALID_DAYS: i64 = 10 * 365;
/// How long a node certificate is valid.
const NODE_VALID_DAYS: i64 = 5 * 365;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Certificate(String),
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> TlsError {
    move |e| TlsError::Io(format!("{what}: {e}"))
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> TlsError + '_ {
    move |e| TlsError::Certificate(format!("{what}: {e}"))
}

/// The one crypto provider every configuration uses.
// The ring provider without post-quantum key exchange is what this project compiles in (no
// aws-lc); rustls marks the function deprecated for that reason alone.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Makes the ring provider the process's default, for libraries that build their own TLS
/// settings (the CLI's HTTP client). Call once at start; a second call changes nothing.
#[allow(deprecated)]
pub fn install_default_provider() {
    let _ = ring::default_provider().install_default();
}

/// Whether `id` can be a node's name in a certificate: a DNS name in lower case without a
/// trailing dot (certificate names match regardless of case and that dot, node ids exactly, so
/// only one spelling may be an id), neither `localhost` nor an IP address (every node
/// certificate is valid for those, so they would name no one).
pub fn check_node_name(id: &str) -> Result<(), String> {
    let canonical = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !id.starts_with('.')
        && !id.ends_with('.')
        && !id.contains("..");
    if !canonical {
        return Err(format!(
            "node id {id:?} cannot be used with TLS: use lower-case letters, digits, '-', '_' and inner dots"
        ));
    }
    if id == "localhost" || id.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "node id {id:?} cannot be used with TLS: every node certificate is valid for localhost and 127.0.0.1"
        ));
    }
    match ServerName::try_from(id) {
        Ok(ServerName::DnsName(_)) => Ok(()),
        _ => Err(format!(
            "node id {id:?} is not a DNS name, so no certificate can carry it"
        )),
    }
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), TlsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    let mut f = options.open(path).map_err(io(format!(
        "cannot create {} (an existing file is never overwritten)",
        path.display()
    )))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io(format!("cannot write {}", path.display())))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
    // A day's slack for clocks a little behind the one that made the certificate.
    params.not_before = now - std::time::Duration::from_secs(86_400);
    params.not_after = now + std::time::Duration::from_secs(days as u64 * 86_400);
}

/// Makes a new cluster CA in `dir`: `ca.pem` (given to every node and client) and `ca.key`
/// (kept where certificates are made). Refuses to overwrite an existing CA.
pub fn write_ca(dir: &Path) -> Result<PathBuf, TlsError> {
    fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
    let key = KeyPair::generate().map_err(cert_err("cannot make a key"))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "driftkv cluster CA");
    name.push(DnType::OrganizationName, "driftkv");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, CA_VALID_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(cert_err("cannot sign the CA certificate"))?;
    let cert_path = dir.join(CA_CERT_FILE);
    let key_path = dir.join(CA_KEY_FILE);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(TlsError::Io(format!(
                "{} exists: a CA is made once (remove it to start a new cluster)",
                p.display()
            )));
        }
    }
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok(cert_path)
}

/// Makes node `id`'s certificate and key in `dir` (`ID.pem`, `ID.key`), signed by the CA there,
/// valid for the node id, each of `hosts` (DNS names or IP addresses), 127.0.0.1 and localhost.
pub fn write_node(dir: &Path, id: &str, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    check_node_name(id).map_err(TlsError::Certificate)?;
    let ca_pem = fs::read_to_string(dir.join(CA_CERT_FILE)).map_err(io(format!(
        "cannot read the CA certificate {} (make one with `driftkv cert ca --dir {}`)",
        dir.join(CA_CERT_FILE).display(),
        dir.display()
    )))?;
    let ca_key_pem = fs::read_to_string(dir.join(CA_KEY_FILE)).map_err(io(format!(
        "cannot read the CA key {}",
        dir.join(CA_KEY_FILE).display()
    )))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(cert_err("the CA key is not valid"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(cert_err("the CA certificate is not valid"))?;

    let mut names = vec![SanType::DnsName(
        id.try_into().map_err(cert_err("the node id"))?,
    )];
    let mut add = |san: SanType| {
        if !names.contains(&san) {
            names.push(san);
        }
    };
    for host in hosts.iter().map(String::as_str).chain(["localhost"]) {
        match host.parse::<IpAddr>() {
            Ok(ip) => add(SanType::IpAddress(ip)),
            Err(_) => add(SanType::DnsName(
                host.try_into()
                    .map_err(cert_err(&format!("--host {host:?}")))?,
            )),
        }
    }
    add(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));

    let key = KeyPair::generate().map_err(cert_err("cannot make a key"))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, id);
    name.push(DnType::OrganizationName, "driftkv");
    params.distinguished_name = name;
    params.subject_alt_names = names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, NODE_VALID_DAYS);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(cert_err("cannot sign the node certificate"))?;
    let cert_path = dir.join(format!("{id}.pem"));
    let key_path = dir.join(format!("{id}.key"));
    write_file(&key_path, &key.serialize_pem(), true)?;
    write_file(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate(format!("cannot read {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError::Certificate(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError::Certificate(format!("cannot read {}: {e}", path.display())))
}

fn roots(ca_file: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca_file)? {
        roots.add(cert).map_err(|e| {
            TlsError::Certificate(format!(
                "{} is not a CA certificate: {e}",
                ca_file.display()
            ))
        })?;
    }
    Ok(Arc::new(roots))
}

/// Whether `cert` names node `id` (one of its DNS names is the id). Checks the name only: the
/// chain was verified by the TLS handshake that produced the certificate.
pub fn certificate_names(cert: &CertificateDer<'_>, id: &str) -> bool {
    if check_node_name(id).is_err() {
        return false;
    }
    let (Ok(parsed), Ok(name)) = (ParsedCertificate::try_from(cert), ServerName::try_from(id))
    else {
        return false;
    };
    verify_server_name(&parsed, &name).is_ok()
}

/// A node's TLS settings, loaded from its TLS directory.
#[derive(Clone)]
pub struct NodeTls {
    /// Accepting peers: a certificate of the cluster's CA is required (mutual TLS).
    pub peer_server: Arc<ServerConfig>,
    /// Dialling peers: presents this node's certificate; the peer's chain is verified during
    /// the handshake and its name against the id it claims just after (see [`NodeTls`]).
    pub peer_client: Arc<ClientConfig>,
    /// HTTP and RESP: serves this node's certificate; clients authenticate with passwords.
    pub api_server: Arc<ServerConfig>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeTls")
    }
}

/// Loads node `id`'s settings from `dir` (`ca.pem`, `ID.pem`, `ID.key`), checking that the
/// certificate is signed by the CA and names the id.
pub fn load_node(dir: &Path, id: &str) -> Result<NodeTls, TlsError> {
    check_node_name(id).map_err(TlsError::Certificate)?;
    let roots = roots(&dir.join(CA_CERT_FILE))?;
    let chain = read_certs(&dir.join(format!("{id}.pem")))?;
    let key = read_key(&dir.join(format!("{id}.key")))?;
    if !certificate_names(&chain[0], id) {
        return Err(TlsError::Certificate(format!(
            "{}/{id}.pem is not a certificate for node {id:?} (make one with `driftkv cert node --id {id}`)",
            dir.display()
        )));
    }
    let provider = provider();
    let chain_verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| TlsError::Certificate(format!("the CA certificate: {e}")))?;
    // Our own certificate must verify against the CA, or peers would all refuse us.
    chain_verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(id.to_string()).map_err(|e| {
                TlsError::Certificate(format!("node id {id:?} is not a DNS name: {e}"))
            })?,
            &[],
            UnixTime::now(),
        )
        .map_err(|e| {
            TlsError::Certificate(format!(
                "{}/{id}.pem does not verify against {}/{CA_CERT_FILE}: {e}",
                dir.display(),
                dir.display()
            ))
        })?;
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
            .build()
            .map_err(|e| TlsError::Certificate(format!("the CA certificate: {e}")))?;
    let versions = rustls::DEFAULT_VERSIONS;
    let peer_server = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| TlsError::Certificate(format!("{id}.key: {e}")))?;
    let peer_client = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(chain_verifier)))
        .with_client_auth_cert(chain.clone(), key.clone_key())
        .map_err(|e| TlsError::Certificate(format!("{id}.key: {e}")))?;
    let mut api_server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Certificate(format!("{id}.key: {e}")))?;
    api_server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(NodeTls {
        peer_server: Arc::new(peer_server),
        peer_client: Arc::new(peer_client),
        api_server: Arc::new(api_server),
    })
}

/// A client's settings (the CLI): trusts the CA in `ca_file` and checks the server's name as
/// usual (node certificates name their hosts, 127.0.0.1 and localhost).
pub fn client_config(ca_file: &Path) -> Result<ClientConfig, TlsError> {
    let roots = roots(ca_file)?;
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| TlsError::Certificate(e.to_string()))
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// Verifies a peer node's chain against the cluster's CA but not its name against the address
/// dialled: peers are dialled by address, and which node answered is settled by the id it
/// claims in the handshake, checked against its certificate ([`certificate_names`]).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_certificate_names_its_id_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        write_ca(dir.path()).unwrap();
        let (pem, _) = write_node(dir.path(), "n1", &["db1.example".into()]).unwrap();
        let cert = &read_certs(&pem).unwrap()[0];
        assert!(certificate_names(cert, "n1"));
        assert!(!certificate_names(cert, "n2"));
        assert!(
            !certificate_names(cert, "N1"),
            "another spelling of the name is another id"
        );
        assert!(!certificate_names(cert, "n1."));
        assert!(!certificate_names(cert, "localhost"), "names no node");
        assert!(!certificate_names(cert, "127.0.0.1"));
        load_node(dir.path(), "n1").unwrap();
        // n1's files presented as n2's are refused at load.
        fs::copy(&pem, dir.path().join("n2.pem")).unwrap();
        fs::copy(dir.path().join("n1.key"), dir.path().join("n2.key")).unwrap();
        let err = load_node(dir.path(), "n2").unwrap_err().to_string();
        assert!(err.contains("not a certificate for node"), "{err}");
    }

    #[test]
    fn a_ca_is_never_overwritten_and_a_node_of_another_ca_does_not_verify() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_ca(a.path()).unwrap();
        assert!(write_ca(a.path()).is_err());
        write_ca(b.path()).unwrap();
        write_node(b.path(), "n4", &[]).unwrap();
        fs::copy(b.path().join("n4.pem"), a.path().join("n4.pem")).unwrap();
        fs::copy(b.path().join("n4.key"), a.path().join("n4.key")).unwrap();
        let err = load_node(a.path(), "n4").unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn names_that_would_name_every_node_are_refused() {
        for id in [
            "localhost",
            "127.0.0.1",
            "::1",
            "a b",
            "",
            "N2",
            "n2.",
            ".n2",
            "a..b",
        ] {
            assert!(check_node_name(id).is_err(), "{id}");
        }
        for id in ["n1", "node-7.dc1", "a_b"] {
            assert!(check_node_name(id).is_ok(), "{id}");
        }
    }
}
