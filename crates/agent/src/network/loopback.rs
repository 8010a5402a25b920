//! The host's loopback interface, which the agent relies on: floating IPs
//! live on `lo`, and a controller on the same host (`nubis up`) is reached
//! at 127.0.0.1. A fresh network namespace starts with `lo` down, so the
//! agent brings it up rather than retrying registration forever.
//!
//! Asked of `ip`, not read from `/sys/class/net`: sysfs shows the namespace
//! it was mounted in, which need not be the agent's.

use super::command;

/// Whether `ip -o link show dev lo` says the interface is administratively
/// up (the `UP` flag between `<` and `>`).
fn link_line_says_up(line: &str) -> bool {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
}

/// Brings `lo` up if it is down; returns whether it had to.
pub async fn ensure_up() -> anyhow::Result<bool> {
    let line = command::run("ip", &["-o", "link", "show", "dev", "lo"]).await?;
    if link_line_says_up(&line) {
        return Ok(false);
    }
    command::run("ip", &["link", "set", "dev", "lo", "up"]).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_up_flag_is_read_from_the_link_line() {
        assert!(link_line_says_up(
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN"
        ));
        assert!(!link_line_says_up(
            "1: lo: <LOOPBACK> mtu 65536 qdisc noop state DOWN mode DEFAULT"
        ));
        // LOWER_UP alone is not UP; garbage is not up.
        assert!(!link_line_says_up("1: lo: <LOOPBACK,LOWER_UP> mtu 65536"));
        assert!(!link_line_says_up("garbage"));
    }
}
