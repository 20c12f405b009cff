//! The webhook's own certificate authority and serving certificate, as pure functions: what
//! to issue, and whether a stored bundle is still good for the Service's names.
//!
//! The CA is self-signed with a fixed subject (`CN=causeway-webhook-ca`), so any replica that
//! holds the CA key can issue a serving certificate that chains to the stored CA certificate:
//! the `caBundle` stays the same across renewals and restarts. A stored bundle is judged the
//! way the API server will judge it: the serving certificate is verified with rustls' WebPKI
//! verifier, trusting only the stored CA, for every name of the Service, at a time
//! `renew_before` ahead of now.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// Subject common name of the webhook's CA.
pub const CA_COMMON_NAME: &str = "causeway-webhook-ca";
/// Lifetime of a new CA certificate.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Lifetime of a new serving certificate.
pub const SERVING_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates are valid from this long before they were issued (clock skew between nodes).
const BACKDATE: Duration = Duration::from_secs(3600);

/// What the Secret holds, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The CA certificate: the `caBundle` of the webhook configuration.
    pub ca_cert: String,
    /// The CA's private key (never leaves the Secret and the webhook's memory).
    pub ca_key: String,
    /// The serving certificate, signed by the CA.
    pub cert: String,
    /// The serving certificate's private key.
    pub key: String,
}

impl std::fmt::Debug for Bundle {
    // Keys are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").finish_non_exhaustive()
    }
}

/// What to do with a stored bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assessment {
    /// Good for every name until past the renewal margin.
    Keep,
    /// The CA is fine but the serving certificate is not: issue a new one from the same CA.
    RenewServing(String),
    /// The CA itself is unusable or expiring: start over with a new CA.
    NewCa(String),
}

/// Errors of certificate generation.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// rcgen refused to build or sign a certificate.
    #[error("cannot generate certificate")]
    Generate(#[from] rcgen::Error),
}

/// The names a client may use for the Service `service` in `namespace`: the API server uses
/// `<service>.<namespace>.svc`.
pub fn service_names(service: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}

fn ca_params(now: SystemTime) -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + CA_LIFETIME).into();
    Ok(params)
}

/// A new CA and a serving certificate for `names` signed by it.
pub fn new_bundle(names: &[String], now: SystemTime) -> Result<Bundle, CertError> {
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params(now)?.self_signed(&ca_key)?.pem();
    let ca_key = ca_key.serialize_pem();
    let (cert, key) = issue_serving(&ca_key, names, now)?;
    Ok(Bundle {
        ca_cert,
        ca_key,
        cert,
        key,
    })
}

/// A new serving certificate for `names`, signed by the CA whose key is `ca_key` (PEM).
/// Returns the certificate and its key, both PEM.
pub fn issue_serving(
    ca_key: &str,
    names: &[String],
    now: SystemTime,
) -> Result<(String, String), CertError> {
    let ca_key = KeyPair::from_pem(ca_key)?;
    // The issuer needs the CA's subject and key usages, which are fixed: see the module docs.
    let issuer = Issuer::new(ca_params(now)?, ca_key);
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        names.first().map_or("causeway-webhook", String::as_str),
    );
    params.distinguished_name = subject;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + SERVING_LIFETIME).into();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether `bundle` can serve `names` until `now + renew_before`.
pub fn assess(
    bundle: &Bundle,
    names: &[String],
    now: SystemTime,
    renew_before: Duration,
) -> Assessment {
    let Some(ca) = one_certificate(&bundle.ca_cert) else {
        return Assessment::NewCa("the CA certificate is not one PEM certificate".into());
    };
    let at = now + renew_before;
    // WebPKI does not look at a trust anchor's validity; the API server's verifier does.
    match not_after(&ca) {
        Some(end) if end > at => {}
        Some(_) => return Assessment::NewCa("the CA expires inside the renewal margin".into()),
        None => return Assessment::NewCa("the CA certificate has no readable validity".into()),
    }
    // The CA must be able to sign what we would issue next: a fresh certificate from its key
    // that does not verify against it means the key does not belong to it, or the CA
    // expires inside the margin.
    let probe = match issue_serving(&bundle.ca_key, names, now) {
        Ok((cert, _)) => cert,
        Err(e) => return Assessment::NewCa(format!("the CA key cannot sign: {e}")),
    };
    if let Err(why) = verify(&ca, &probe, names, at) {
        return Assessment::NewCa(format!("the CA cannot issue a usable certificate: {why}"));
    }
    if KeyPair::from_pem(&bundle.key).is_err() {
        return Assessment::RenewServing("the serving key does not parse".into());
    }
    if !key_matches(&bundle.cert, &bundle.key) {
        return Assessment::RenewServing("the serving key does not match its certificate".into());
    }
    match verify(&ca, &bundle.cert, names, at) {
        Ok(()) => Assessment::Keep,
        Err(why) => Assessment::RenewServing(why),
    }
}

fn one_certificate(pem: &str) -> Option<CertificateDer<'static>> {
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let first = certs.next()?.ok()?;
    certs.next().is_none().then_some(first)
}

/// The `notAfter` of a DER certificate: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
/// [0] version OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore,
/// notAfter }, ... } ... } (RFC 5280 §4.1).
fn not_after(cert: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, certificate, _) = der_element(cert.as_ref())?;
    let (_, mut tbs, _) = der_element(certificate)?;
    let mut fields = Vec::new();
    while !tbs.is_empty() && fields.len() < 5 {
        let (tag, value, rest) = der_element(tbs)?;
        if !(fields.is_empty() && tag == 0xa0) {
            fields.push(value);
        }
        tbs = rest;
    }
    let (_, _, rest) = der_element(fields.get(3)?)?;
    let (tag, time, _) = der_element(rest)?;
    parse_time(tag, std::str::from_utf8(time).ok()?)
}

/// One DER element: tag, contents, what follows.
fn der_element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, tag 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, tag 0x18).
fn parse_time(tag: u8, text: &str) -> Option<SystemTime> {
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = digits.get(..2)?.parse().ok()?;
            (
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
                digits.get(2..)?,
            )
        }
        0x18 => (digits.get(..4)?.parse().ok()?, digits.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |at: usize| rest[at..at + 2].parse::<i64>().ok();
    let (month, day) = (part(0)?, part(2)?);
    let seconds = part(4)? * 3600 + part(6)? * 60 + part(8)?;
    // Days from 1970-01-01 to the civil date (H. Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + seconds).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

fn key_matches(cert_pem: &str, key_pem: &str) -> bool {
    let (Some(cert), Ok(key)) = (one_certificate(cert_pem), KeyPair::from_pem(key_pem)) else {
        return false;
    };
    // The SubjectPublicKeyInfo is DER inside the certificate; finding it there is enough
    // to know the certificate was issued for this key.
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    cert.as_ref().windows(spki.len()).any(|w| w == spki)
}

/// Verifies `cert_pem` the way a TLS client trusting only `ca` does, for each of `names`, at
/// `at`. The error is the verifier's reason.
fn verify(
    ca: &CertificateDer<'static>,
    cert_pem: &str,
    names: &[String],
    at: SystemTime,
) -> Result<(), String> {
    let cert = one_certificate(cert_pem).ok_or("not one PEM certificate")?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| e.to_string())?;
    let at = UnixTime::since_unix_epoch(
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    for name in names {
        let server = ServerName::try_from(name.as_str()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&cert, &[], &server, &[], at)
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn names() -> Vec<String> {
        service_names("causeway-webhook", "causeway", "cluster.local")
    }

    fn now() -> SystemTime {
        SystemTime::now()
    }

    #[test]
    fn a_new_bundle_is_kept() {
        let bundle = new_bundle(&names(), now()).unwrap();
        assert_eq!(assess(&bundle, &names(), now(), 30 * DAY), Assessment::Keep);
    }

    #[test]
    fn a_serving_certificate_inside_the_margin_is_renewed_from_the_same_ca() {
        let issued = now() - (SERVING_LIFETIME - 10 * DAY);
        let bundle = new_bundle(&names(), issued).unwrap();
        let Assessment::RenewServing(why) = assess(&bundle, &names(), now(), 30 * DAY) else {
            panic!("expected a renewal");
        };
        assert!(why.contains("causeway-webhook.causeway.svc"), "{why}");
        let (cert, key) = issue_serving(&bundle.ca_key, &names(), now()).unwrap();
        let renewed = Bundle {
            cert,
            key,
            ..bundle
        };
        assert_eq!(
            assess(&renewed, &names(), now(), 30 * DAY),
            Assessment::Keep
        );
    }

    #[test]
    fn a_certificate_for_other_names_is_renewed() {
        let other = service_names("other", "causeway", "cluster.local");
        let bundle = new_bundle(&other, now()).unwrap();
        assert!(matches!(
            assess(&bundle, &names(), now(), DAY),
            Assessment::RenewServing(_)
        ));
    }

    #[test]
    fn a_serving_key_from_elsewhere_is_renewed() {
        let bundle = new_bundle(&names(), now()).unwrap();
        let other = new_bundle(&names(), now()).unwrap();
        let mixed = Bundle {
            key: other.key,
            ..bundle
        };
        assert_eq!(
            assess(&mixed, &names(), now(), DAY),
            Assessment::RenewServing("the serving key does not match its certificate".into())
        );
    }

    #[test]
    fn a_ca_key_that_is_not_the_cas_means_a_new_ca() {
        let bundle = new_bundle(&names(), now()).unwrap();
        let other = new_bundle(&names(), now()).unwrap();
        let mixed = Bundle {
            ca_key: other.ca_key,
            ..bundle
        };
        assert!(matches!(
            assess(&mixed, &names(), now(), DAY),
            Assessment::NewCa(_)
        ));
    }

    #[test]
    fn an_expiring_ca_or_garbage_means_a_new_ca() {
        let old = now() - (CA_LIFETIME - 5 * DAY);
        let bundle = new_bundle(&names(), old).unwrap();
        assert!(matches!(
            assess(&bundle, &names(), now(), 30 * DAY),
            Assessment::NewCa(_)
        ));
        let garbage = Bundle {
            ca_cert: "not pem".into(),
            ..new_bundle(&names(), now()).unwrap()
        };
        assert!(matches!(
            assess(&garbage, &names(), now(), DAY),
            Assessment::NewCa(_)
        ));
    }

    #[test]
    fn the_ca_validity_is_read_from_its_der() {
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let bundle = new_bundle(&names(), issued).unwrap();
        let ca = one_certificate(&bundle.ca_cert).unwrap();
        assert_eq!(not_after(&ca), Some(issued + CA_LIFETIME));
        let leaf = one_certificate(&bundle.cert).unwrap();
        assert_eq!(not_after(&leaf), Some(issued + SERVING_LIFETIME));
        assert_eq!(
            parse_time(0x17, "000229120000Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(951_825_600))
        );
        assert_eq!(parse_time(0x18, "20491231235959"), None);
    }

    #[test]
    fn keys_are_not_printed() {
        let bundle = new_bundle(&names(), now()).unwrap();
        let printed = format!("{bundle:?}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
    }
}
