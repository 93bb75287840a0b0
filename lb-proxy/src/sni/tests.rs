use proptest::prelude::*;

use super::*;

/// A ClientHello handshake message (type, length, body) with `sni` if given.
fn hello_message(sni: Option<&str>, padding: usize) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.push(32);
    body.extend_from_slice(&[1; 32]); // session id
    body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]); // two cipher suites
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut ext = Vec::new();
    // supported_versions first, so the server name is not the first extension.
    ext.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    if let Some(name) = sni {
        let n = name.len() as u16;
        ext.extend_from_slice(&[0, 0]);
        ext.extend_from_slice(&(n + 5).to_be_bytes());
        ext.extend_from_slice(&(n + 3).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&n.to_be_bytes());
        ext.extend_from_slice(name.as_bytes());
    }
    if padding > 0 {
        ext.extend_from_slice(&[0, 21]);
        ext.extend_from_slice(&(padding as u16).to_be_bytes());
        ext.extend(std::iter::repeat_n(0, padding));
    }
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut m = vec![1];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(&body);
    m
}

/// The message in handshake records of at most `record` bytes of payload.
fn records(message: &[u8], record: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in message.chunks(record) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn name(buf: &[u8]) -> Option<String> {
    match parse(buf) {
        Ok(Hello::Complete { server_name }) => server_name,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_server_name_is_read_lowercase() {
    assert_eq!(name(&records(&hello_message(Some("API.Example.com"), 0), 16384)).as_deref(), Some("api.example.com"));
}

#[test]
fn a_hello_split_across_records_and_segments_is_reassembled() {
    let message = hello_message(Some("www.example.org"), 300);
    for record in [1, 7, 50, 200, 16384] {
        let bytes = records(&message, record);
        assert_eq!(name(&bytes).as_deref(), Some("www.example.org"), "records of {record}");
        // Every prefix (a segment boundary anywhere) asks for more.
        for n in 0..bytes.len() {
            assert_eq!(parse(&bytes[..n]), Ok(Hello::Incomplete), "records of {record}, {n} bytes");
        }
    }
}

#[test]
fn a_hello_without_a_server_name_has_none() {
    assert_eq!(name(&records(&hello_message(None, 0), 16384)), None);
}

#[test]
fn bytes_after_the_hello_do_not_matter() {
    let mut bytes = records(&hello_message(Some("a.example.org"), 0), 16384);
    bytes.extend_from_slice(&[23, 3, 3, 0, 1, 0]);
    assert_eq!(name(&bytes).as_deref(), Some("a.example.org"));
}

#[test]
fn what_is_not_a_client_hello_is_refused_with_its_reason() {
    let good = records(&hello_message(Some("a.example.org"), 0), 16384);
    let mut not_hello = hello_message(Some("a.example.org"), 0);
    not_hello[0] = 2; // ServerHello
    let mut bad_sni = hello_message(Some("a.example.org"), 0);
    let at = bad_sni.windows(13).position(|w| w == b"a.example.org").unwrap();
    bad_sni[at] = b' ';
    let mut alert_between = records(&hello_message(Some("a.example.org"), 0)[..10], 16384);
    alert_between.extend_from_slice(&[21, 3, 3, 0, 2, 1, 0]);
    let cases: Vec<(&str, Vec<u8>, HelloError)> = vec![
        ("plain HTTP", b"GET / HTTP/1.1\r\n".to_vec(), HelloError::NotTls),
        ("SSH", b"SSH-2.0-OpenSSH\r\n".to_vec(), HelloError::NotTls),
        ("handshake type, version 2", vec![22, 2, 0], HelloError::NotTls),
        ("an alert record", vec![21, 3, 3, 0, 2, 2, 40], HelloError::NotTls),
        ("another record type in between", alert_between, HelloError::Malformed),
        ("an empty record", vec![22, 3, 1, 0, 0], HelloError::Malformed),
        ("a record over 2^14", vec![22, 3, 1, 0x40, 0x01], HelloError::Malformed),
        ("a ServerHello", records(&not_hello, 16384), HelloError::NotClientHello),
        ("a space in the server name", records(&bad_sni, 16384), HelloError::Malformed),
        ("a length beyond the bound", records(&[1, 0, 0x40, 0][..], 16384), HelloError::TooLarge),
        (
            "truncated inside the body",
            {
                // The message claims 10 bytes more than its body has.
                let mut m = hello_message(Some("a.example.org"), 0);
                let len = u32::from_be_bytes([0, m[1], m[2], m[3]]) - 10;
                m[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
                records(&m[..m.len() - 10], 16384)
            },
            HelloError::Malformed,
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(parse(&bytes), Err(want), "{what}");
    }
    assert!(parse(&good).is_ok());
}

#[test]
fn a_hello_larger_than_the_bound_is_refused_before_it_is_read() {
    let big = records(&hello_message(Some("a.example.org"), MAX_HELLO), 16384);
    assert_eq!(parse(&big[..100]), Err(HelloError::TooLarge), "known from the handshake length");
    // The largest that fits is read.
    let fits = records(&hello_message(Some("a.example.org"), MAX_HELLO - 300), 16384);
    assert!(fits.len() <= MAX_HELLO);
    assert_eq!(name(&fits).as_deref(), Some("a.example.org"));
}

#[test]
fn refusals_map_to_their_metric_reason() {
    assert_eq!(SniRefusal::from(HelloError::NotTls).as_str(), "not_tls");
    assert_eq!(SniRefusal::from(HelloError::NotClientHello).as_str(), "malformed");
    assert_eq!(SniRefusal::from(HelloError::TooLarge).as_str(), "too_large");
}

proptest! {
    /// Arbitrary bytes never panic, and never claim a hello past the bound.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse(&bytes);
    }

    /// Arbitrary bytes inside well-formed records: the paths past the record layer.
    #[test]
    fn arbitrary_handshake_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 1..3000), record in 1usize..600) {
        let _ = parse(&records(&payload, record));
        let mut hello = vec![1, 0, (payload.len() >> 8) as u8, payload.len() as u8];
        hello.extend_from_slice(&payload);
        let _ = parse(&records(&hello, record));
    }

    /// Any valid name in any record split reads back.
    #[test]
    fn any_split_reads_the_name(label in "[a-z0-9]{1,20}", record in 1usize..400, padding in 0usize..500) {
        let host = format!("{label}.example.org");
        let bytes = records(&hello_message(Some(&host), padding), record);
        prop_assert_eq!(parse(&bytes), Ok(Hello::Complete { server_name: Some(host) }));
    }
}
