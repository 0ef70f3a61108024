//! The cluster's certificate authority and the TLS configurations built on it.
//!
//! Owns: creating a cluster CA (rcgen), issuing node certificates under it,
//! storing them in the data dir, and the rustls configs for node-to-node
//! mutual TLS. A joining node has no CA yet: it trusts the server only if the
//! CA the server presents hashes to the value pinned in its join token
//! (`PinnedCa`), before it sends any secret.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

/// Every node certificate carries this DNS name; clients verify it.
pub const SERVER_NAME: &str = "shoal";
/// ALPN of node-to-node connections (mutual TLS).
pub const ALPN_PEER: &[u8] = b"shoal/1";
/// ALPN of join connections (server-authenticated only).
pub const ALPN_JOIN: &[u8] = b"shoal-join/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cluster identity in {0}: {1}")]
    Io(String, std::io::Error),
    #[error("cluster identity in {0} is unreadable: {1}")]
    Corrupt(String, String),
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What makes a node a member: the cluster id, the CA (certificate and key,
/// so that any node can admit new ones) and this node's certificate.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    pub cluster_id: String,
    pub node_name: String,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub node_cert_pem: String,
    pub node_key_pem: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cluster_id", &self.cluster_id)
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// The CA's parameters, rebuilt the same way every time from the cluster id
/// (so a node can sign certificates after a restart without parsing X.509).
fn ca_params(cluster_id: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("shoal cluster {cluster_id}"));
    dn.push(DnType::OrganizationName, "shoal");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    p
}

/// blake3 of a DER certificate, hex.
pub fn cert_hash(der: &[u8]) -> String {
    blake3::hash(der).to_hex().to_string()
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Corrupt("certificate".into(), e.to_string()))
}

fn key_der(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Corrupt("key".into(), e.to_string()))
}

impl Identity {
    /// A new cluster: a fresh CA and this node's certificate.
    pub fn create_cluster(node_name: &str) -> Result<Identity, TlsError> {
        let cluster_id = crate::util::random_hex(8);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params(&cluster_id).self_signed(&ca_key)?;
        let mut id = Identity {
            cluster_id,
            node_name: node_name.to_string(),
            ca_cert_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            node_cert_pem: String::new(),
            node_key_pem: String::new(),
        };
        let (c, k) = id.issue(node_name)?;
        id.node_cert_pem = c;
        id.node_key_pem = k;
        Ok(id)
    }

    /// Issues a certificate and key for `node_name` under this cluster's CA.
    pub fn issue(&self, node_name: &str) -> Result<(String, String), TlsError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params(&self.cluster_id), ca_key);
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![SERVER_NAME.to_string(), format!("{node_name}.node.shoal")])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_name);
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The identity of another node of this cluster.
    pub fn for_node(&self, node_name: &str) -> Result<Identity, TlsError> {
        let (c, k) = self.issue(node_name)?;
        Ok(Identity { node_name: node_name.to_string(), node_cert_pem: c, node_key_pem: k, ..self.clone() })
    }

    /// The hash a join token pins.
    pub fn ca_hash(&self) -> Result<String, TlsError> {
        Ok(cert_hash(&pem_to_der(&self.ca_cert_pem)?))
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(pem_to_der(&self.ca_cert_pem)?)?;
        Ok(roots)
    }

    fn chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        Ok(vec![pem_to_der(&self.node_cert_pem)?, pem_to_der(&self.ca_cert_pem)?])
    }

    /// Server side: presents this node's certificate (and the CA, so joining
    /// nodes can check the pin); asks peers for a certificate of the cluster
    /// CA, which node-to-node connections then require (see `quic`).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let p = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), p.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
        let mut c = ServerConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain()?, key_der(&self.node_key_pem)?)?;
        c.alpn_protocols = vec![ALPN_PEER.to_vec(), ALPN_JOIN.to_vec()];
        Ok(c)
    }

    /// Client side of node-to-node connections: mutual TLS under the CA.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let mut c = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain()?, key_der(&self.node_key_pem)?)?;
        c.alpn_protocols = vec![ALPN_PEER.to_vec()];
        Ok(c)
    }

    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        let path = dir.join("identity.json");
        let s = serde_json::to_string_pretty(self)
            .map_err(|e| TlsError::Corrupt(path.display().to_string(), e.to_string()))?;
        crate::util::write_private(&path, &s).map_err(|e| TlsError::Io(path.display().to_string(), e))
    }

    pub fn load(dir: &Path) -> Result<Option<Identity>, TlsError> {
        let path = dir.join("identity.json");
        match std::fs::read_to_string(&path) {
            Ok(s) => serde_json::from_str(&s)
                .map(Some)
                .map_err(|e| TlsError::Corrupt(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TlsError::Io(path.display().to_string(), e)),
        }
    }
}

/// ALPN of the HTTPS API (HTTP/1.1 only).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A validity period: from and until, each as (year, month, day).
pub type Dates = ((i32, u8, u8), (i32, u8, u8));

impl Identity {
    /// The HTTPS API's certificate and key for this node, under the cluster
    /// CA: its subject alternative names are `sans` (names and IPs: what
    /// clients put in the URL) plus `shoal` and `<node>.node.shoal`.
    pub fn issue_api(&self, sans: &[String]) -> Result<(String, String), TlsError> {
        self.issue_api_valid(sans, None)
    }

    /// `issue_api` valid only between two dates (year, month, day), not
    /// rcgen's default span (what the TLS tests use to make an expired one).
    pub fn issue_api_valid(&self, sans: &[String], validity: Option<Dates>) -> Result<(String, String), TlsError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::new(ca_params(&self.cluster_id), ca_key);
        let key = KeyPair::generate()?;
        let mut names = vec![SERVER_NAME.to_string(), format!("{}.node.shoal", self.node_name)];
        for s in sans {
            if !names.contains(s) {
                names.push(s.clone());
            }
        }
        let mut p = CertificateParams::new(names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{} API", self.node_name));
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if let Some(((y0, m0, d0), (y1, m1, d1))) = validity {
            p.not_before = rcgen::date_time_ymd(y0, m0, d0);
            p.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        let cert = p.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The HTTPS API's server config: `cert`/`key` from `issue_api`, the CA
    /// sent along so clients can check it against a pin.
    pub fn api_server_config(&self, cert_pem: &str, key_pem: &str) -> Result<ServerConfig, TlsError> {
        let mut c = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![pem_to_der(cert_pem)?, pem_to_der(&self.ca_cert_pem)?], key_der(key_pem)?)?;
        c.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(c)
    }
}

/// A client config for the HTTPS API that trusts only the cluster CA given
/// (PEM): what the CLI and nodes use to reach a node's API.
pub fn api_client_config(ca_pem: &str) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(pem_to_der(ca_pem)?)?;
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(c)
}

/// Client side of a join: no client certificate; the server is trusted only
/// if its chain contains a CA whose hash is `pin`, and its certificate is
/// valid under that CA.
pub fn join_client_config(pin: &str) -> Result<ClientConfig, TlsError> {
    pinned_client_config(pin, ALPN_JOIN)
}

/// A client config for the HTTPS API that trusts a node whose chain holds
/// the CA with hash `pin` (a join token's): the CLI's way in from a machine
/// that has no copy of the CA.
pub fn api_pinned_client_config(pin: &str) -> Result<ClientConfig, TlsError> {
    pinned_client_config(pin, ALPN_HTTP1)
}

fn pinned_client_config(pin: &str, alpn: &[u8]) -> Result<ClientConfig, TlsError> {
    let p = provider();
    let verifier = Arc::new(PinnedCa { pin: pin.to_ascii_lowercase(), provider: p.clone() });
    let mut c = ClientConfig::builder_with_provider(p)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    Ok(c)
}

#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|c| cert_hash(c) == self.pin).ok_or_else(|| {
            rustls::Error::General(
                "the node's CA does not match the pinned hash (the join token's): wrong cluster, a rotated CA, or an impostor"
                    .into(),
            )
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        v.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
