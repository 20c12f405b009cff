//! The kernel state in `ipvsadm -Ln` layout: the same header, columns, widths and sort
//! order (`--stats` too), so existing habits and scripts work, plus an optional trailing
//! `# cluster=… service=ns/name:port generation=…` column. For the nftables backend the
//! version and size print as 0.0.0 and 0, ActiveConn/InActConn as 0 (nftables does not
//! count them).

use std::fmt::Write as _;

use super::KernelState;

/// Which `ipvsadm -Ln` variant to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// `--stats` columns.
    pub stats: bool,
    /// Trailing comment naming the origin of each virtual service.
    pub explain: bool,
}

impl View {
    /// From a query string such as `stats&explain`.
    pub fn from_query(query: Option<&str>) -> View {
        let mut v = View::default();
        for part in query.unwrap_or("").split('&') {
            match part.split('=').next().unwrap_or("") {
                "stats" => v.stats = true,
                "explain" => v.explain = true,
                _ => {}
            }
        }
        v
    }
}

/// `print_largenum` of ipvsadm: 9 columns, K/M/G/T beyond 100 million.
fn largenum(out: &mut String, i: u64) {
    let _ = match i {
        i if i < 100_000_000 => write!(out, "{i:>9}"),
        i if i < 1_000_000_000 => write!(out, "{:>8}K", i / 1_000),
        i if i < 100_000_000_000 => write!(out, "{:>8}M", i / 1_000_000),
        i if i < 100_000_000_000_000 => write!(out, "{:>8}G", i / 1_000_000_000),
        i => write!(out, "{:>8}T", i / 1_000_000_000_000),
    };
}

/// Renders `state` as `ipvsadm -Ln` (or `--stats`) does.
pub fn render_ipvsadm(state: &KernelState, view: View) -> String {
    let mut out = String::new();
    let v = state.header.version;
    let _ = writeln!(
        out,
        "IP Virtual Server version {}.{}.{} (size={})",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff,
        state.header.size
    );
    if view.stats {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
    } else {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    }
    for (key, svc) in &state.services {
        // ipvsadm cuts IPv4 names at 33 and real servers at 28 characters.
        let mut name = format!("{}  {}", key.proto, key.addr);
        if key.addr.is_ipv4() {
            name.truncate(33);
        }
        if view.stats {
            let _ = write!(out, "{name:<33}");
            for n in [
                svc.stats.conns,
                svc.stats.in_pkts,
                svc.stats.out_pkts,
                svc.stats.in_bytes,
                svc.stats.out_bytes,
            ] {
                largenum(&mut out, n);
            }
        } else {
            let _ = write!(out, "{name} {}", svc.scheduler);
            if let Some(t) = svc.affinity {
                let _ = write!(out, " persistent {t}");
            }
        }
        if view.explain {
            match &svc.origin {
                Some(o) => {
                    let port = if o.port.is_empty() {
                        String::new()
                    } else {
                        format!(":{}", o.port)
                    };
                    let _ = write!(
                        out,
                        "  # cluster={} service={}{} generation={}",
                        o.cluster, o.service, port, o.slice_generation
                    );
                }
                None => out.push_str("  # origin unknown"),
            }
        }
        out.push('\n');
        for (addr, real) in &svc.reals {
            let mut dname = addr.to_string();
            if addr.is_ipv4() {
                dname.truncate(28);
            }
            if view.stats {
                let _ = write!(out, "  -> {dname:<28}");
                for n in [
                    real.stats.conns,
                    real.stats.in_pkts,
                    real.stats.out_pkts,
                    real.stats.in_bytes,
                    real.stats.out_bytes,
                ] {
                    largenum(&mut out, n);
                }
                out.push('\n');
            } else {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    "Masq", real.weight, real.active_conns, real.inactive_conns
                );
            }
        }
    }
    out
}
