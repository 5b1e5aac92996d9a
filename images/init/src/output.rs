//! Container output: each line a container writes goes to the console
//! prefixed `[NAME] ` and, unprefixed, to its log file.
//!
//! Non-goals: log rotation, timestamps (the console has the kernel's).

use std::io::{self, BufRead, Write};

/// Copy `reader` line by line until EOF; returns the number of lines.
///
/// Invalid UTF-8 is passed through lossily; a final line without `\n` is
/// still written (with one). A console write error stops nothing: the log
/// still gets the line, since a broken console must not block a service.
pub fn forward(
    mut reader: impl BufRead,
    name: &str,
    console: &mut dyn Write,
    log: &mut dyn Write,
) -> io::Result<usize> {
    let mut buf = Vec::new();
    let mut lines = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(lines);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf);
        let _ = writeln!(console, "[{name}] {line}");
        let _ = writeln!(log, "{line}");
        lines += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_console_and_logs_plain() {
        let input = b"hello\nworld\npartial".as_slice();
        let (mut con, mut log) = (Vec::new(), Vec::new());
        let n = forward(input, "getty", &mut con, &mut log).unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            String::from_utf8(con).unwrap(),
            "[getty] hello\n[getty] world\n[getty] partial\n"
        );
        assert_eq!(String::from_utf8(log).unwrap(), "hello\nworld\npartial\n");
    }

    #[test]
    fn invalid_utf8_is_lossy_not_fatal() {
        let input = b"a\xffb\n".as_slice();
        let (mut con, mut log) = (Vec::new(), Vec::new());
        forward(input, "x", &mut con, &mut log).unwrap();
        assert_eq!(String::from_utf8(con).unwrap(), "[x] a\u{fffd}b\n");
    }
}
