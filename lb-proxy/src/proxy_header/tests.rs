use std::net::SocketAddr;

use proptest::prelude::*;

use super::parse::HeaderError;
use super::*;
use lb_config::ProxyHeaderVersion::{V1, V2};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn complete(buf: &[u8]) -> (Header, usize) {
    match parse(buf) {
        Ok(Parsed::Complete { header, len }) => (header, len),
        other => panic!("{other:?} for {buf:?}"),
    }
}

/// A v2 header with the given byte 13/14 and body.
fn v2_raw(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(version_command);
    h.push(family);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

#[test]
fn v2_for_ipv4_is_the_protocols_bytes() {
    let h = encode(V2, a("192.0.2.1:56324"), a("198.51.100.1:443"));
    let mut expected = V2_SIGNATURE.to_vec();
    expected.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c, 192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb]);
    assert_eq!(h, expected);
}

#[test]
fn what_is_written_reads_back_in_both_versions_and_families() {
    for (src, dst) in [("192.0.2.1:40000", "172.20.0.100:80"), ("[fd00:20::2]:40000", "[fd00:20::100]:443")] {
        for v in [V1, V2] {
            let mut bytes = encode(v, a(src), a(dst));
            let len = bytes.len();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(complete(&bytes), (Header::Proxied { source: a(src), destination: a(dst) }, len), "{v:?}");
        }
    }
}

#[test]
fn v1_is_the_protocols_text() {
    assert_eq!(encode(V1, a("192.0.2.1:5"), a("192.0.2.2:80")), b"PROXY TCP4 192.0.2.1 192.0.2.2 5 80\r\n");
}

#[test]
fn mixed_families_are_written_as_ipv6() {
    let h = encode(V2, a("192.0.2.1:5"), a("[fd00::1]:80"));
    let (header, _) = complete(&h);
    assert_eq!(header, Header::Proxied { source: a("[::ffff:192.0.2.1]:5"), destination: a("[fd00::1]:80") });
}

#[test]
fn local_and_unspecified_headers_use_the_real_peer() {
    assert_eq!(complete(&v2_raw(0x20, 0x00, &[])), (Header::Local, 16));
    // LOCAL's addresses (if any) are skipped.
    assert_eq!(complete(&v2_raw(0x20, 0x11, &[0; 12])).0, Header::Local);
    assert_eq!(complete(&v2_raw(0x21, 0x00, &[])).0, Header::Unspecified);
    assert_eq!(complete(&v2_raw(0x21, 0x31, &[0; 216])).0, Header::Unspecified);
    assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (Header::Unspecified, 15));
    assert_eq!(complete(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nxyz").1, 35);
}

#[test]
fn tlvs_after_the_addresses_are_skipped() {
    let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
    body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // ALPN "h2"
    let h = v2_raw(0x21, 0x11, &body);
    assert_eq!(complete(&h), (Header::Proxied { source: a("10.0.0.1:1"), destination: a("10.0.0.2:2") }, h.len()));
}

#[test]
fn every_prefix_of_a_header_asks_for_more() {
    for v in [V1, V2] {
        let h = encode(v, a("[fd00:20::2]:40000"), a("[fd00:20::100]:443"));
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]), Ok(Parsed::Incomplete), "{v:?}, {n} bytes");
        }
    }
}

#[test]
fn malformed_headers_are_refused_with_their_reason() {
    let ok = encode(V2, a("192.0.2.1:1"), a("192.0.2.2:2"));
    let cases: Vec<(&str, Vec<u8>, HeaderError)> = vec![
        ("plain HTTP", b"GET / HTTP/1.1\r\n".to_vec(), HeaderError::Signature),
        ("a TLS ClientHello", vec![0x16, 0x03, 0x01], HeaderError::Signature),
        ("v2 signature broken", [&ok[..5], b"X"].concat(), HeaderError::Signature),
        ("v1 prefix broken", b"PROXX TCP4".to_vec(), HeaderError::Signature),
        ("version 1 in binary", v2_raw(0x11, 0x11, &[0; 12]), HeaderError::Version),
        ("version 3", v2_raw(0x31, 0x11, &[0; 12]), HeaderError::Version),
        ("version checked before the rest", [&V2_SIGNATURE[..], &[0x31]].concat(), HeaderError::Version),
        ("command 2", v2_raw(0x22, 0x11, &[0; 12]), HeaderError::Command),
        ("family 4", v2_raw(0x21, 0x41, &[0; 12]), HeaderError::Family),
        ("transport 3", v2_raw(0x21, 0x13, &[0; 12]), HeaderError::Family),
        ("IPv4 in 11 bytes", v2_raw(0x21, 0x11, &[0; 11]), HeaderError::AddressTooShort),
        ("IPv6 in 12 bytes", v2_raw(0x21, 0x21, &[0; 12]), HeaderError::AddressTooShort),
        ("unix in 36 bytes", v2_raw(0x21, 0x31, &[0; 36]), HeaderError::AddressTooShort),
        (
            "oversize, by its length alone",
            v2_raw(0x21, 0x11, &[0; MAX_HEADER - 15])[..16].to_vec(),
            HeaderError::TooLong,
        ),
        ("v1 without CRLF in 107 bytes", [b"PROXY TCP4 ".as_slice(), &[b'1'; 100]].concat(), HeaderError::TooLong),
        ("v1 other protocol", b"PROXY UDP4 1.1.1.1 2.2.2.2 1 2\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 family mismatch", b"PROXY TCP4 ::1 ::2 1 2\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 port too big", b"PROXY TCP4 1.1.1.1 2.2.2.2 65536 2\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 leading zero", b"PROXY TCP4 1.1.1.1 2.2.2.2 01 2\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 missing port", b"PROXY TCP4 1.1.1.1 2.2.2.2 1\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 extra field", b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2 3\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 double space", b"PROXY TCP4  1.1.1.1 2.2.2.2 1 2\r\n".to_vec(), HeaderError::V1Syntax),
        ("v1 not UTF-8", b"PROXY TCP4 \xff\r\n".to_vec(), HeaderError::V1Syntax),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(parse(&bytes), Err(want), "{what}");
    }
    // The largest accepted v2 header is accepted.
    let biggest = v2_raw(0x21, 0x11, &[0; MAX_HEADER - 16]);
    assert_eq!(complete(&biggest).1, MAX_HEADER);
}

proptest! {
    /// Arbitrary bytes never panic, and a complete header never claims more than it was
    /// given or more than the bounds.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
            prop_assert!(len <= bytes.len() && len <= MAX_HEADER);
        }
    }

    /// Bytes after a valid signature: the parser's paths past the signature, never a panic.
    #[test]
    fn arbitrary_v2_bodies_never_panic(vc in any::<u8>(), fam in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let h = v2_raw(vc, fam, &body);
        let _ = parse(&h);
        let _ = parse(&h[..h.len() / 2]);
    }

    #[test]
    fn arbitrary_v1_lines_never_panic(tail in "[ -~]{0,120}") {
        let line = format!("PROXY {tail}\r\n");
        let _ = parse(line.as_bytes());
    }

    /// Whatever addresses are written, they read back.
    #[test]
    fn any_addresses_round_trip(s in any::<SocketAddr>(), d in any::<SocketAddr>(), v2 in any::<bool>()) {
        let h = encode(if v2 { V2 } else { V1 }, s, d);
        let Ok(Parsed::Complete { header: Header::Proxied { source, destination }, len }) = parse(&h) else {
            return Err(TestCaseError::fail("not read back"));
        };
        prop_assert_eq!(len, h.len());
        let same = |x: SocketAddr, y: SocketAddr| lb_config::canonical_ip(x.ip()) == lb_config::canonical_ip(y.ip()) && x.port() == y.port();
        prop_assert!(same(source, s) && same(destination, d), "{:?} {:?} -> {:?} {:?}", s, d, source, destination);
    }
}
