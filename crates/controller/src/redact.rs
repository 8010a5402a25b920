//! Messages shown to tenants lose what only the operator should see: file
//! system paths and URLs (an agent's address, a database's). Faults that
//! agents report are full error chains ("creating
//! /var/lib/nubis/agent/instances/<id>/disk.qcow2: ..."); the whole chain
//! stays in the agent's log and the store, the tenant sees the gist.

/// `message` with each absolute path replaced by `<path>` and each URL by
/// `<url>`. Network prefixes such as `10.0.0.0/24` are not paths: a path
/// starts with `/` at the start of a word (after a space, a quote, a
/// bracket, `=` or `:`).
pub fn for_tenants(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        if let Some(len) = url_len(rest, prev) {
            out.push_str("<url>");
            rest = &rest[len..];
            prev = Some('>');
            continue;
        }
        if c == '/' && starts_word(prev) && path_len(rest) > 1 {
            out.push_str("<path>");
            rest = &rest[path_len(rest)..];
            prev = Some('>');
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
        prev = Some(c);
    }
    out
}

fn starts_word(prev: Option<char>) -> bool {
    match prev {
        None => true,
        Some(p) => {
            p.is_whitespace() || matches!(p, '"' | '\'' | '`' | '(' | '[' | '{' | '=' | ':' | ',')
        }
    }
}

/// Bytes of the path at the start of `s`: up to white space or a closing
/// quote/bracket (a trailing `.`/`,`/`:` ends a sentence, not the path).
fn path_len(s: &str) -> usize {
    let end = s
        .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ')' | ']' | '}'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(['.', ',', ':', ';']).len()
}

/// Bytes of the URL (`scheme://...`) at the start of `s`, if one starts there.
fn url_len(s: &str, prev: Option<char>) -> Option<usize> {
    if prev.is_some_and(|p| p.is_ascii_alphanumeric() || matches!(p, '+' | '-' | '.')) {
        return None;
    }
    let scheme = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .filter(|n| *n > 0 && s.as_bytes()[0].is_ascii_alphabetic())?;
    if !s[scheme..].starts_with("://") {
        return None;
    }
    Some(scheme + 3 + path_len(&s[scheme + 3..]))
}

#[cfg(test)]
mod tests {
    use super::for_tenants;

    #[test]
    fn paths_and_urls_are_hidden() {
        let cases = [
            (
                "creating /var/lib/nubis/agent/instances/abc/disk.qcow2: No space left",
                "creating <path>: No space left",
            ),
            (
                "qemu-system-x86_64: -blockdev {\"filename\":\"/srv/x.img\"}: Permission denied",
                "qemu-system-x86_64: -blockdev {\"filename\":\"<path>\"}: Permission denied",
            ),
            (
                "error sending request for url (http://10.0.0.5:4321/v1/instances/x/console-log)",
                "error sending request for url (<url>)",
            ),
            (
                "connecting to postgres://nubis:secret@db.internal/nubis failed",
                "connecting to <url> failed",
            ),
            ("-vnc unix:/run/nubis/x/vnc.sock", "-vnc unix:<path>"),
            ("see '/etc/shadow'.", "see '<path>'."),
        ];
        for (given, want) in cases {
            assert_eq!(for_tenants(given), want, "{given}");
        }
    }

    #[test]
    fn ordinary_messages_are_kept() {
        for kept in [
            "DHCP and DNS of network 10.64.0.0/24 (alice.nubis.internal) fail on this host",
            "the guest did not power down within 60 s; stopped hard",
            "either/or and 1/2 of a TB/s",
            "a / b",
            "",
            "ünïcode – fine",
        ] {
            assert_eq!(for_tenants(kept), kept);
        }
    }
}
