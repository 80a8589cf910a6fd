//! The principal name of a client certificate, as Kafka derives it with its default
//! `ssl.principal.mapping.rules`: the subject's distinguished name in RFC 2253 form, the way
//! Java's `X500Principal.getName()` writes it ("CN=alice,OU=eng,O=Acme,C=US": most specific
//! name first, attribute keywords for the nine names RFC 2253 knows, `oid=#hex` for the rest).
//! ACL bindings name such a principal as `User:CN=alice,OU=eng,O=Acme,C=US`.

use std::fmt::Write as _;

use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

use super::TlsError;

/// RFC 2253's attribute keywords, by OID; every other attribute is written by its OID.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.1", "UID"),
    ("0.9.2342.19200300.100.1.25", "DC"),
];

/// The subject of a DER certificate as Kafka's principal name.
pub fn subject_principal(certificate_der: &[u8]) -> Result<String, TlsError> {
    let (_, cert) = X509Certificate::from_der(certificate_der)
        .map_err(|e| TlsError::Certificate(format!("cannot parse the certificate: {e}")))?;
    let mut out = String::new();
    // A DER name lists its RDNs from the root down; RFC 2253 writes them the other way.
    let rdns: Vec<_> = cert.subject().iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(&mut out, attribute);
        }
    }
    Ok(out)
}

fn write_attribute(out: &mut String, attribute: &AttributeTypeAndValue<'_>) {
    let oid = attribute.attr_type().to_id_string();
    let keyword = KEYWORDS.iter().find(|(o, _)| *o == oid).map(|(_, k)| *k);
    let text = keyword.and_then(|_| string_value(attribute.attr_value()));
    match (keyword, text) {
        (Some(keyword), Some(text)) => {
            out.push_str(keyword);
            out.push('=');
            escape_into(out, &text);
        }
        // RFC 2253 2.4: an attribute without a keyword (or a value that is not a string) is
        // written as the hex of its whole DER encoding.
        _ => {
            out.push_str(&oid);
            out.push_str("=#");
            let der = attribute.attr_value().to_der_vec().unwrap_or_default();
            for byte in der {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// The string types Java writes as text in RFC 2253 form (`isDerString`, non-canonical);
/// NumericString and UniversalString, like any other type, are written as hex.
fn string_value(value: &Any<'_>) -> Option<String> {
    let data: &[u8] = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
            std::str::from_utf8(data).ok().map(str::to_string)
        }
        // T.61 and GeneralString: Java decodes them as ISO-8859-1.
        Tag::TeletexString | Tag::GeneralString => {
            Some(data.iter().map(|&b| char::from(b)).collect())
        }
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 2.4 escaping as Java's `AVA.toRFC2253String` applies it: `,=+<>#;"\` anywhere, NUL
/// as `\00`, and every leading and trailing space or carriage return.
fn escape_into(out: &mut String, value: &str) {
    let chars: Vec<char> = value.chars().collect();
    let blank = |c: &char| *c == ' ' || *c == '\r';
    let lead = chars.iter().take_while(|c| blank(c)).count();
    let trail = chars.len() - chars.iter().rev().take_while(|c| blank(c)).count();
    for (i, &c) in chars.iter().enumerate() {
        if c == '\0' {
            out.push_str("\\00");
            continue;
        }
        let special = matches!(c, ',' | '=' | '+' | '<' | '>' | '#' | ';' | '"' | '\\');
        if special || i < lead || i >= trail {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;

    fn certificate_with(subject: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        let key = KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn most_specific_name_comes_first_with_keywords() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "US");
        dn.push(DnType::OrganizationName, "Acme");
        dn.push(DnType::OrganizationalUnitName, "eng");
        dn.push(DnType::CommonName, "alice");
        let principal = subject_principal(&certificate_with(dn)).expect("principal");
        assert_eq!(principal, "CN=alice,OU=eng,O=Acme,C=US");
    }

    #[test]
    fn special_characters_are_escaped_as_java_does() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Smith, Jones + Co");
        dn.push(DnType::OrganizationalUnitName, "Team #1");
        dn.push(DnType::CommonName, "  a=b;c  ");
        let principal = subject_principal(&certificate_with(dn)).expect("principal");
        assert_eq!(
            principal,
            "CN=\\ \\ a\\=b\\;c\\ \\ ,OU=Team \\#1,O=Smith\\, Jones \\+ Co"
        );
    }

    #[test]
    fn attributes_without_a_keyword_are_written_as_oid_and_hex() {
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CustomDnType(vec![1, 2, 840, 113_549, 1, 9, 1]),
            "a@b",
        );
        dn.push(DnType::CommonName, "bob");
        let principal = subject_principal(&certificate_with(dn)).expect("principal");
        // rcgen writes a custom attribute as a UTF8String (tag 0x0c), 3 bytes long.
        assert_eq!(principal, "CN=bob,1.2.840.113549.1.9.1=#0c03614062");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(subject_principal(b"not a certificate").is_err());
    }
}
