use std::io::Cursor;
use std::net::TcpListener;
use std::thread;

use super::*;

/// Serve each connection's canned response in turn on 127.0.0.1; the URL
/// base and the requests seen (joined when the thread ends).
fn serve(responses: Vec<Vec<u8>>) -> (String, thread::JoinHandle<Vec<String>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/seed/", l.local_addr().unwrap());
    let h = thread::spawn(move || {
        let mut seen = Vec::new();
        for resp in responses {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut req = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                req += &line;
            }
            seen.push(req);
            let _ = s.write_all(&resp);
        }
        seen
    });
    (base, h)
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const T: Duration = Duration::from_secs(5);

#[test]
fn content_length_and_request_shape() {
    let (base, h) = serve(vec![ok("instance-id: a\n")]);
    let r = get(&format!("{base}meta-data"), T).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"instance-id: a\n");
    let seen = h.join().unwrap();
    assert!(
        seen[0].starts_with("GET /seed/meta-data HTTP/1.1\r\n"),
        "{seen:?}"
    );
    assert!(seen[0].contains("\r\nHost: 127.0.0.1:"), "{seen:?}");
}

#[test]
fn chunked_and_close_delimited() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n".to_vec();
    let close = b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec();
    let (base, h) = serve(vec![chunked, close]);
    assert_eq!(get(&base, T).unwrap().body, b"hello, world");
    assert_eq!(get(&base, T).unwrap().body, b"until close");
    h.join().unwrap();
}

#[test]
fn statuses_are_responses() {
    let (base, h) = serve(vec![
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ]);
    assert_eq!(get(&base, T).unwrap().status, 404);
    h.join().unwrap();
}

#[test]
fn errors_name_the_url() {
    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/x");
    let e = get(&url, T).unwrap_err();
    assert!(
        e.starts_with(&format!("{url}: connecting to 127.0.0.1:{port}: ")),
        "{e}"
    );
    let e = get("https://example.com/", T).unwrap_err();
    assert_eq!(e, "https://example.com/: only http:// URLs are supported");
    let (base, h) = serve(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
    ]);
    let e = get(&base, T).unwrap_err();
    assert!(
        e.starts_with(&format!("{base}: body shorter than Content-Length 10")),
        "{e}"
    );
    h.join().unwrap();
}

#[test]
fn framing_errors() {
    let parse = |s: &[u8], limit| read_response(&mut Cursor::new(s.to_vec()), limit);
    assert!(
        parse(b"SSH-2.0-x\r\n\r\n", 100)
            .unwrap_err()
            .contains("bad status line")
    );
    assert!(
        parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n12345", 4)
            .unwrap_err()
            .contains("over the 4-byte limit")
    );
    assert!(
        parse(b"HTTP/1.1 200 OK\r\n\r\n12345", 4)
            .unwrap_err()
            .contains("limit")
    );
    assert!(
        parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n123456789\r\n0\r\n\r\n",
            4
        )
        .unwrap_err()
        .contains("limit")
    );
    assert!(
        parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100
        )
        .unwrap_err()
        .contains("bad chunk size")
    );
    assert!(
        parse(b"HTTP/1.1 200 OK\r\nContent-Le", 100)
            .unwrap_err()
            .contains("closed in the response header")
    );
    assert!(
        parse(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 100)
            .unwrap_err()
            .contains("bad header line")
    );
    let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(70_000));
    assert!(
        parse(huge.as_bytes(), 100)
            .unwrap_err()
            .contains("too large")
    );
}

#[test]
fn nocloud_fetch_with_and_without_network_config() {
    let (base, h) = serve(vec![
        ok("instance-id: i\n"),
        ok("#cloud-config\n"),
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec(),
    ]);
    let (meta, user, net) = nocloud_fetch(&base).unwrap();
    assert_eq!(meta, b"instance-id: i\n");
    assert_eq!(user, b"#cloud-config\n");
    assert_eq!(net, None);
    let seen = h.join().unwrap();
    let paths: Vec<&str> = seen
        .iter()
        .map(|r| r.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/seed/meta-data", "/seed/user-data", "/seed/network-config"]
    );

    let (base, h) = serve(vec![ok("m"), ok("u"), ok("version: 2\n")]);
    assert_eq!(
        nocloud_fetch(&base).unwrap().2.as_deref(),
        Some(&b"version: 2\n"[..])
    );
    h.join().unwrap();

    let (base, h) = serve(vec![
        ok("m"),
        b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ]);
    assert_eq!(
        nocloud_fetch(&base).unwrap_err(),
        format!("{base}user-data: HTTP 500")
    );
    h.join().unwrap();
}

#[test]
fn cmdline_forms() {
    let cases = [
        (
            "console=ttyS0 ds=nocloud;s=http://10.0.2.2:8000/ quiet",
            Some("http://10.0.2.2:8000/"),
        ),
        ("ds=nocloud-net;s=http://h/p", Some("http://h/p/")),
        (
            "\"ds=nocloud;s=http://10.0.2.2/seed/\"",
            Some("http://10.0.2.2/seed/"),
        ),
        ("ds=\"nocloud;seedfrom=http://x/\" ro", Some("http://x/")),
        ("ds='nocloud;h=host;s=http://x/y/'", Some("http://x/y/")),
        ("ds=nocloud\\;s=http://x/", Some("http://x/")),
        ("ds=nocloud", None),
        ("ds=ec2;s=http://x/", None),
        ("root=/dev/vda s=http://x/", None),
        ("", None),
    ];
    for (cmdline, want) in cases {
        assert_eq!(nocloud_url(cmdline).as_deref(), want, "{cmdline}");
    }
}

#[test]
fn urls() {
    let u = parse_url("http://[::1]:8080/a/b").unwrap();
    assert_eq!(
        (u.host, u.port, u.path, u.authority),
        ("::1", 8080, "/a/b", "[::1]:8080")
    );
    let u = parse_url("http://host").unwrap();
    assert_eq!((u.host, u.port, u.path), ("host", 80, "/"));
    assert!(
        parse_url("http://host:x/")
            .unwrap_err()
            .contains("bad port")
    );
    assert!(parse_url("http:///p").unwrap_err().contains("no host"));
}

#[test]
fn read_response_never_panics_on_cut_input() {
    let full = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    for n in 0..full.len() {
        assert!(
            read_response(&mut Cursor::new(full[..n].to_vec()), 100).is_err(),
            "{n}"
        );
    }
    assert!(read_response(&mut Cursor::new(full.to_vec()), 100).is_ok());
}
