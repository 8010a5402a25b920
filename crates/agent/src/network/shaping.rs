//! Enforcing an instance's `NetworkLimits` on one of its TAPs: bandwidth
//! in both directions and, while its traffic quota is used up with the
//! `suspend` policy, no traffic at all (the VM keeps running).
//!
//! Inbound (towards the guest) is the TAP's egress, which a qdisc can shape:
//! a `tbf` at the root queues what exceeds the rate, so TCP sees delay
//! rather than loss and settles at the rate.
//!
//! Outbound (from the guest) is the TAP's ingress, where nothing can be
//! queued, only dropped (policed). Where the kernel has tc actions, an
//! `ingress` qdisc with a `police` filter does it; many kernels lack them
//! (`act_police`, `matchall`, and the `ifb` redirect that shaping would
//! need), so the fallback is an nftables `netdev` table of the TAP whose
//! ingress chain drops what goes `over` a `limit`. Which one is used is
//! probed once per agent (`probe`).
//!
//! The same per-TAP table (`netdev nubis_<suffix>`) holds the suspension:
//! `drop` in an ingress and an egress chain bound to the TAP. It is replaced
//! atomically like the firewall's tables, so applying is idempotent.

use super::command::{link_exists, run, run_with_input};
use super::tap::TAP_PREFIX;
use nubis_api::agent::NetworkLimits;
use nubis_api::bandwidth::RateLimit;
use std::collections::HashSet;

/// Name prefix of the per-TAP `netdev` tables.
pub const TABLE_PREFIX: &str = "nubis_";

/// How traffic from the guest is limited on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// tc `police` in an `ingress` qdisc (the kernel has tc actions).
    Police,
    /// nftables `limit` in a `netdev` ingress chain.
    Nftables,
}

/// The `netdev` table of a TAP: `nubis_` and the TAP's suffix.
pub fn table_name(tap: &str) -> String {
    format!(
        "{TABLE_PREFIX}{}",
        tap.strip_prefix(TAP_PREFIX).unwrap_or(tap)
    )
}

/// The TAP a table of ours belongs to (`None` for other tables).
fn table_tap(table: &str) -> Option<String> {
    table
        .strip_prefix(TABLE_PREFIX)
        .map(|suffix| format!("{TAP_PREFIX}{suffix}"))
}

fn bits(mbit: u32) -> u64 {
    u64::from(mbit) * 1_000_000
}

/// The smallest bucket: the host hands TSO/GSO packets of up to 64 KiB to
/// the TAP, and a bucket smaller than a packet stalls (tbf must split it).
const MIN_BURST: u64 = 64 * 1024;

/// The token bucket of the shaper towards the guest: the asked-for burst,
/// else 5 ms at the rate (at least `MIN_BURST`), enough for the qdisc's
/// timer to keep the link busy at high rates while staying negligible in
/// the average (64 KiB is ~0.1 s at 4 Mbit/s).
fn tbf_burst(limit: &RateLimit) -> u64 {
    match limit.burst_kib {
        Some(kib) => u64::from(kib) * 1024,
        None => (limit.average_bytes() / 200).max(MIN_BURST),
    }
}

/// How long tbf queues packets before dropping: 100 ms at the rate (at
/// least 64 KiB) beyond the burst. TCP needs about a bandwidth-delay
/// product queued to fill the rate; the guest's RTT (TCG guests especially)
/// is a few ms to tens of ms.
fn tbf_limit(limit: &RateLimit) -> u64 {
    tbf_burst(limit) + (limit.average_bytes() / 10).max(MIN_BURST)
}

/// `tc` arguments shaping traffic towards the guest with a tbf at the
/// TAP's root. A peak above the average adds tbf's second bucket, one
/// millisecond at the peak rate (at least a full-size frame).
pub fn tbf_args(tap: &str, limit: &RateLimit) -> Vec<String> {
    let mut args: Vec<String> = ["qdisc", "replace", "dev", tap, "root", "tbf", "rate"]
        .map(str::to_owned)
        .to_vec();
    args.push(format!("{}bit", bits(limit.average_mbit)));
    args.extend(["burst".into(), tbf_burst(limit).to_string()]);
    args.extend(["limit".into(), tbf_limit(limit).to_string()]);
    if let Some(peak) = limit.peak_mbit.filter(|p| *p > limit.average_mbit) {
        let minburst = (u64::from(peak) * 125).max(2048);
        args.extend([
            "peakrate".into(),
            format!("{}bit", bits(peak)),
            "mtu".into(),
            minburst.to_string(),
        ]);
    }
    args
}

/// The policer's bucket: the asked-for burst, else 100 ms at the rate (at
/// least 128 KiB). A policer drops instead of queueing, so TCP reaches
/// the rate only if the bucket covers roughly a window (rate x RTT).
fn police_burst(limit: &RateLimit) -> u64 {
    match limit.burst_kib {
        Some(kib) => u64::from(kib) * 1024,
        None => (limit.average_bytes() / 10).max(2 * MIN_BURST),
    }
}

/// `tc` arguments of a filter policing everything from the guest, in the
/// TAP's `ingress` qdisc.
pub fn police_args(tap: &str, limit: &RateLimit) -> Vec<String> {
    let mut args: Vec<String> = [
        "filter", "add", "dev", tap, "parent", "ffff:", "protocol", "all", "prio", "1", "u32",
        "match", "u32", "0", "0", "police", "rate",
    ]
    .map(str::to_owned)
    .to_vec();
    args.push(format!("{}bit", bits(limit.average_mbit)));
    args.extend(["burst".into(), police_burst(limit).to_string()]);
    args.extend(["mtu".into(), "65535".into()]);
    if let Some(peak) = limit.peak_mbit.filter(|p| *p > limit.average_mbit) {
        args.extend(["peakrate".into(), format!("{}bit", bits(peak))]);
    }
    args.extend(["drop", "flowid", ":1"].map(str::to_owned));
    args
}

/// nftables `limit` rules dropping what the guest sends above `limit`.
///
/// The kernel's byte limiter (`nft_limit`) holds one second at the rate
/// on top of the `burst` given: a limiter that has been idle lets about a
/// second's worth pass at line rate before it bites, and the average over
/// longer periods is the rate. So no burst is added unless asked for
/// (that second already covers a TCP window and the 64 KiB GSO packets
/// QEMU hands over). A peak adds a second limiter at the peak rate.
fn nft_limits(limit: &RateLimit) -> String {
    let mut rules = String::new();
    if let Some(peak) = limit.peak_mbit.filter(|p| *p > limit.average_mbit) {
        rules.push_str(&format!(
            "        limit rate over {} bytes/second drop\n",
            u64::from(peak) * 125_000
        ));
    }
    let burst = match limit.burst_kib {
        Some(kib) => format!(" burst {} bytes", u64::from(kib) * 1024),
        None => String::new(),
    };
    rules.push_str(&format!(
        "        limit rate over {} bytes/second{burst} drop\n",
        limit.average_bytes()
    ));
    rules
}

/// Declares and deletes the TAP's table: declaring first makes the delete
/// succeed when the table does not exist yet.
fn drop_table(tap: &str) -> String {
    let table = table_name(tap);
    format!("table netdev {table}\ndelete table netdev {table}\n")
}

/// The `nft -f` transaction that makes the TAP's table what `limits` need
/// (or removes it when they need nothing), atomically. Only the generated
/// TAP name and numbers go into it.
pub fn ruleset(tap: &str, limits: &NetworkLimits, outbound: Outbound) -> String {
    let mut chains = String::new();
    let chain = |name: &str, hook: &str, body: &str| {
        format!(
            "    chain {name} {{\n        type filter hook {hook} device \"{tap}\" priority filter; policy accept;\n{body}    }}\n"
        )
    };
    if limits.suspended {
        // Cut both ways; the guest itself keeps running.
        chains.push_str(&chain("from_guest", "ingress", "        drop\n"));
        chains.push_str(&chain("to_guest", "egress", "        drop\n"));
    } else if let (Some(limit), Outbound::Nftables) = (&limits.bandwidth.outbound, outbound) {
        chains.push_str(&chain("from_guest", "ingress", &nft_limits(limit)));
    }
    let mut out = drop_table(tap);
    if !chains.is_empty() {
        out.push_str(&format!(
            "table netdev {} {{\n{chains}}}\n",
            table_name(tap)
        ));
    }
    out
}

/// The kinds of the TAP's root and ingress qdiscs (`tc -j qdisc show`).
async fn qdiscs(tap: &str) -> anyhow::Result<(Option<String>, bool)> {
    let json = run("tc", &["-j", "qdisc", "show", "dev", tap]).await?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&json)?;
    let root = list
        .iter()
        .find(|q| q["root"] == true)
        .and_then(|q| q["kind"].as_str().map(str::to_owned));
    let ingress = list.iter().any(|q| q["kind"] == "ingress");
    Ok((root, ingress))
}

/// Whether `tc qdisc del` failed only because there was nothing to delete:
/// the root is the device's default qdisc (handle 0), the ingress qdisc or
/// the device itself is gone. Another removal of the same TAP (the
/// instance's own delete and the sweep of stray TAPs can overlap) may have
/// got there between our look and our delete; that is success, not a fault.
fn qdisc_already_absent(error: &str) -> bool {
    [
        "Cannot delete qdisc with handle of zero",
        "Cannot find specified qdisc on specified device",
        "Cannot find device",
    ]
    .iter()
    .any(|m| error.contains(m))
}

/// Removes the TAP's `root` or `ingress` qdisc; one already absent is fine.
async fn delete_qdisc(tap: &str, which: &str) -> anyhow::Result<()> {
    match run("tc", &["qdisc", "del", "dev", tap, which]).await {
        Err(e) if qdisc_already_absent(&format!("{e:#}")) => {
            tracing::debug!(%tap, which, "qdisc already gone");
            Ok(())
        }
        other => other.map(drop),
    }
}

async fn tc(args: &[String]) -> anyhow::Result<String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("tc", &args).await
}

/// Makes the TAP enforce `limits` (whatever it enforced before): the shaper
/// towards the guest, the limiter from it, and the suspension.
pub async fn apply(tap: &str, limits: &NetworkLimits, outbound: Outbound) -> anyhow::Result<()> {
    let (root, ingress) = qdiscs(tap).await?;
    match &limits.bandwidth.inbound {
        Some(limit) => {
            tc(&tbf_args(tap, limit)).await?;
        }
        // Only our tbf is removed; the device's default qdisc stays.
        None if root.as_deref() == Some("tbf") => {
            delete_qdisc(tap, "root").await?;
        }
        None => {}
    }
    // The policer is rebuilt from scratch: a u32 filter cannot be replaced
    // in place without naming its handle.
    if ingress {
        delete_qdisc(tap, "ingress").await?;
    }
    if let (Some(limit), Outbound::Police) = (&limits.bandwidth.outbound, outbound) {
        run("tc", &["qdisc", "add", "dev", tap, "ingress"]).await?;
        tc(&police_args(tap, limit)).await?;
    }
    run_with_input("nft", &["-f", "-"], &ruleset(tap, limits, outbound)).await
}

/// Removes everything `apply` made on the TAP (qdiscs go with a deleted
/// TAP; its table does not).
pub async fn clear(tap: &str) -> anyhow::Result<()> {
    if link_exists(tap).await {
        apply(tap, &NetworkLimits::default(), Outbound::Nftables).await
    } else {
        run_with_input("nft", &["-f", "-"], &drop_table(tap)).await
    }
}

/// Whether tc policing works here, tried on `tap` (left as it was).
pub async fn probe(tap: &str) -> Outbound {
    let works = async {
        let (_, ingress) = qdiscs(tap).await?;
        if !ingress {
            run("tc", &["qdisc", "add", "dev", tap, "ingress"]).await?;
        }
        let result = tc(&police_args(tap, &RateLimit::average(1))).await;
        delete_qdisc(tap, "ingress").await?;
        result
    };
    match works.await {
        Ok(_) => Outbound::Police,
        Err(e) => {
            tracing::debug!(error = %format!("{e:#}"), "no tc policing");
            Outbound::Nftables
        }
    }
}

/// Removes our `netdev` tables whose TAP is not in `wanted` (left by a
/// crash, or by a TAP deleted behind our back).
pub async fn remove_stray_tables(wanted: &HashSet<String>) -> anyhow::Result<()> {
    let listing = run("nft", &["list", "tables", "netdev"]).await?;
    for table in listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table netdev "))
    {
        if let Some(tap) = table_tap(table) {
            if !wanted.contains(&tap) {
                clear(&tap).await?;
                tracing::info!(%tap, "removed stray network limits");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
