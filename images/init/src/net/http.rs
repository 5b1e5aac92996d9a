//! A minimal HTTP/1.1 GET client for NoCloud seeds (`ds=nocloud;s=URL`),
//! over std's `TcpStream`.
//!
//! Supported: `http://HOST[:PORT]/PATH`, `Content-Length`, chunked and
//! read-to-close bodies, a body limit, connect and read timeouts. HOST
//! should be an IP literal: names go through glibc's getaddrinfo, which in
//! the static init needs NSS libraries the image does not have. Non-goals:
//! TLS, redirects, keep-alive, proxies, compression.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest body accepted: a seed is a few KiB; this bounds a broken server.
pub const MAX_BODY: usize = 16 << 20;
/// Largest status line + headers.
const MAX_HEAD: usize = 64 << 10;
/// Per request in [`nocloud_fetch`].
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
struct Url<'a> {
    /// As written, for the Host header (brackets kept for IPv6).
    authority: &'a str,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => {
            (h, p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?)
        }
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url {
        authority,
        host,
        port,
        path,
    })
}

/// GET `url`; any status is a response, only transport and framing
/// problems are errors (each naming the URL). `timeout` bounds the connect
/// and each read and write, not the whole exchange.
pub fn get(url: &str, timeout: Duration) -> Result<HttpResponse, String> {
    // std rejects zero timeouts.
    let timeout = timeout.max(Duration::from_millis(1));
    let u = parse_url(url)?;
    let addrs: Vec<_> = (u.host, u.port)
        .to_socket_addrs()
        .map_err(|e| format!("{url}: resolving {}: {e}", u.host))?
        .collect();
    let mut last = format!("{url}: {} has no address", u.host);
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{url}: connecting to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    let io = |e: std::io::Error| format!("{url}: {e}");
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: smelt-init\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        u.path, u.authority
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{url}: sending request: {e}"))?;
    read_response(&mut BufReader::new(s), MAX_BODY).map_err(|e| format!("{url}: {e}"))
}

/// One CRLF (or LF) terminated line, counted against `budget`.
fn line(r: &mut impl BufRead, budget: &mut usize) -> Result<String, String> {
    let mut buf = Vec::new();
    let n = r
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| format!("reading response: {e}"))?;
    if n > *budget {
        return Err("response header too large".into());
    }
    *budget -= n;
    if !buf.ends_with(b"\n") {
        return Err("connection closed in the response header".into());
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_string())
}

/// Status line, headers, body from `r`, the body at most `limit` bytes.
pub fn read_response(r: &mut impl BufRead, limit: usize) -> Result<HttpResponse, String> {
    let mut budget = MAX_HEAD;
    let status_line = line(r, &mut budget)?;
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .map_err(|_| format!("bad status line {status_line:?}"))?,
        _ => return Err(format!("bad status line {status_line:?}")),
    };
    let mut length = None;
    let mut chunked = false;
    loop {
        let h = line(r, &mut budget)?;
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(format!("bad header line {h:?}"));
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(
                v.parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {v:?}"))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        read_chunked(r, limit)?
    } else if let Some(n) = length {
        if n > limit {
            return Err(format!("body of {n} bytes is over the {limit}-byte limit"));
        }
        let mut b = vec![0u8; n];
        r.read_exact(&mut b)
            .map_err(|e| format!("body shorter than Content-Length {n}: {e}"))?;
        b
    } else {
        read_limited(r, limit)?
    };
    Ok(HttpResponse { status, body })
}

fn read_limited(r: &mut impl Read, limit: usize) -> Result<Vec<u8>, String> {
    let mut b = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut b)
        .map_err(|e| format!("reading body: {e}"))?;
    if b.len() > limit {
        return Err(format!("body over the {limit}-byte limit"));
    }
    Ok(b)
}

/// RFC 9112 §7.1: `SIZE[;ext]` CRLF data CRLF … `0` CRLF trailers CRLF.
fn read_chunked(r: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let l = line(r, &mut budget)?;
        let size = l.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size {l:?}"))?;
        if n == 0 {
            // Trailers up to the empty line.
            while !line(r, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + n > limit {
            return Err(format!("body over the {limit}-byte limit"));
        }
        let start = body.len();
        body.resize(start + n, 0);
        r.read_exact(&mut body[start..])
            .map_err(|e| format!("chunk of {n} bytes cut short: {e}"))?;
        if !line(r, &mut budget)?.is_empty() {
            return Err("no CRLF after a chunk".into());
        }
    }
}

/// `(meta-data, user-data, network-config)` as served; the caller makes the
/// `config::Seed` of them.
pub type NoCloudFiles = (Vec<u8>, Vec<u8>, Option<Vec<u8>>);

/// Fetch `meta-data`, `user-data` (both must be 200) and `network-config`
/// (404 means none) below `base_url`, which ends with `/`.
pub fn nocloud_fetch(base_url: &str) -> Result<NoCloudFiles, String> {
    let fetch = |name: &str| get(&format!("{base_url}{name}"), FETCH_TIMEOUT);
    let required = |name: &str| -> Result<Vec<u8>, String> {
        let r = fetch(name)?;
        if r.status != 200 {
            return Err(format!("{base_url}{name}: HTTP {}", r.status));
        }
        Ok(r.body)
    };
    let meta = required("meta-data")?;
    let user = required("user-data")?;
    let net = fetch("network-config")?;
    let net = match net.status {
        200 => Some(net.body),
        404 => None,
        s => return Err(format!("{base_url}network-config: HTTP {s}")),
    };
    Ok((meta, user, net))
}

/// Split a kernel command line into words, double quotes grouping (the
/// kernel's own rule, lib/cmdline.c `next_arg`), quotes removed.
fn words(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in cmdline.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The seed URL of `ds=nocloud;s=URL` (or `nocloud-net`, `seedfrom=`),
/// with a `/` added if it lacks one; `None` without such an argument.
pub fn nocloud_url(cmdline: &str) -> Option<String> {
    for w in words(cmdline) {
        let Some(v) = w.strip_prefix("ds=") else {
            continue;
        };
        let v = v.trim_matches('\'').replace("\\;", ";");
        let mut fields = v.split(';');
        if !matches!(fields.next(), Some("nocloud" | "nocloud-net")) {
            continue;
        }
        let url = fields.find_map(|f| f.strip_prefix("s=").or_else(|| f.strip_prefix("seedfrom=")));
        if let Some(u) = url.filter(|u| !u.is_empty()) {
            return Some(if u.ends_with('/') {
                u.to_string()
            } else {
                format!("{u}/")
            });
        }
    }
    None
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
