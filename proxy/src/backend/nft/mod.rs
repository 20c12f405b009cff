//! The nftables backend: tables of our own, kube-proxy-nftables style.
//!
//! ```text
//! table inet <t>         (proxy.nftTable, default "causeway")
//!   chain nat-postrouting { type nat hook postrouting priority srcnat; masquerade what we
//!                           DNATed, except what comes from the local cluster's pods }
//! table inet <t>-<i>     (one per shard, i = 0 … shards-1; a service lives in shard
//!                         hash(proto, VIP, port) mod shards)
//!   map service-ips  { ipv4_addr . inet_proto . inet_service : verdict }   VIP.proto.port → goto svc chain
//!   map service-ips6 { ipv6_addr . inet_proto . inet_service : verdict }
//!   chain nat-prerouting  { type nat hook prerouting priority dstnat; jump services }
//!   chain nat-output      { type nat hook output priority -100; jump services }
//!   chain services        { ip daddr . meta l4proto . th dport vmap @service-ips; ip6 … @service-ips6 }
//!   chain svc-HASH-…      { counter meta mark set meta mark or 0x8000 comment "cw:svc …";
//!                           [ip saddr @aff-… <DNAT to that real>, …]        (affinity: one per real)
//!                           numgen inc mod N-i == 0 <DNAT to slot i's real>, …, <DNAT to the last slot's real>
//!                           [counter comment "cw:ep … w=0 …", …] }           (draining reals, never reached)
//!   <DNAT to real>        = counter [update @aff-… { ip saddr }] meta l4proto tcp dnat ip to A:P
//!                           comment "cw:ep vs=… w=… to=A:P"
//!   set aff-HASH-…        { ipv4_addr; flags dynamic,timeout; timeout <affinity>s }   (sessionAffinity: ClientIP only)
//! ```
//!
//! This is kube-proxy's nftables layout with the per-endpoint chains folded into the
//! service chain (each DNAT rule is what kube-proxy's endpoint chain holds), spread over
//! several tables. Both serve one cost of the kernel: a transaction that adds a rule
//! with a DNAT, a jump or a goto makes the kernel re-validate every chain reachable from
//! the base chains **of that table** (twice here: prerouting and output). One table of
//! 10,000 services costs ~45 ms per transaction for that alone; sixteen tables cost a
//! sixteenth of it, and a new connection pays one hash lookup per shard in the nat hook
//! (the nat hook stops at the first chain that translates).
//!
//! Weight-0 (draining) real servers get no slot rule (nor affinity rule), so they get no
//! new connections; established ones keep flowing through their conntrack NAT binding,
//! which no rule change touches.
//!
//! A full apply (at start, at each periodic resync, after a failure) lists our tables and
//! is one transaction: the base chains, dispatch rules and maps are rewritten; each service
//! chain the kernel already holds as it should be (by its rules' comments and their number)
//! is left alone, its counters intact; every other one is flushed and rewritten; chains,
//! sets and tables no longer wanted are deleted. A partial apply rewrites only the virtual
//! services that changed since the last apply. Chain and rule comments (`cw:svc`, `cw:ep`)
//! carry what [`NftBackend::read`] needs to rebuild the state after a restart.
//! Transactions go to the kernel as netlink messages (`causeway_nfnl`) encoded from
//! [`ops::Op`]s, the same operations [`ops::script`] renders as `nft -f` text (used by
//! the tests, the logs and [`Writer::Nft`]). Reading back uses netlink dumps.
//!
//! - [`layout`]: the table names, which table a service lives in, which tables are ours,
//!   and the record of the chains and sets they hold;
//! - [`render`]: the pure rendering of a desired state into operations (golden tests);
//! - [`ops`]: the operations as data, their `nft -f` text and their mapping onto
//!   `causeway_nfnl`'s messages;
//! - [`readback`]: listing our tables back and parsing the rule comments;
//! - this file: the backend itself (apply, read, the netlink socket, the `nft` writer).

pub mod layout;
pub mod ops;
pub mod readback;
pub mod render;

use std::time::Duration;

use causeway_nfnl::{Batch, NfSocket, NfnlError};
use causeway_shared::tool::{Tool, ToolError};
use ipnet::IpNet;

use super::{ApplyReport, Backend, BackendError, KernelState};
use crate::plan::DesiredState;

use layout::track_one;
pub use layout::{DEFAULT_SHARDS, Layout, TableObjects, Tables, objects_of, track};
pub use readback::{ChainSeen, Listing, parse_listing, parse_listing_seen};
pub use render::{
    Kernel, MASQ_MARK, Sink, render_full, render_full_into, render_partial, render_partial_into,
};

/// Netlink bytes per virtual service in a full sync (a little above the 2,950 measured
/// with 5 endpoints each): the batch buffer is sized once, since doubling a 30 MB buffer
/// would hold both copies at the peak.
const BYTES_PER_SERVICE: usize = 3072;

/// How long one `nft -f` may run before it is killed: a full sync of 10,000 services
/// takes ~4 s through `nft`, and a wedged `nft` must not stall the sync loop forever.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the nftables backend failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` could not be started, refused the transaction, or was killed at its
    /// deadline.
    #[error("nft {what}: {source}")]
    Nft {
        what: &'static str,
        #[source]
        source: ToolError,
    },
    /// The kernel refused an operation of the transaction (all of it was undone).
    #[error("nf_tables refused `{op}`: {source}")]
    Refused {
        op: String,
        #[source]
        source: NfnlError,
    },
    /// The netlink socket failed, or the kernel refused the transaction as a whole.
    #[error("nf_tables transaction of {operations} operations failed")]
    Netlink {
        operations: usize,
        #[source]
        source: NfnlError,
    },
}

/// How transactions reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// nf_tables netlink messages, written by us (the default).
    Netlink,
    /// `nft -f -` with the same operations as text.
    Nft,
}

/// The nftables backend.
pub struct NftBackend {
    layout: Layout,
    writer: Writer,
    /// The `nft` program of [`Writer::Nft`].
    nft: String,
    /// How long one `nft` run may take.
    nft_timeout: Duration,
    /// The network namespace to work in (by name), when not our own.
    netns: Option<String>,
    socket: Option<NfSocket>,
    /// Sources that keep their address (the local cluster's pod CIDRs), see
    /// [`NftBackend::keep_sources`].
    keep: Vec<IpNet>,
    /// Our tables, chains and sets as of the last successful apply; `None` after a
    /// failure (the next full apply lists the ruleset first).
    known: Option<Tables>,
}

impl NftBackend {
    /// A backend for tables `inet <table>` and `inet <table>-<i>`; [`Writer::Nft`]
    /// runs `nft` from `PATH`.
    pub fn new(table: impl Into<String>) -> Self {
        NftBackend {
            layout: Layout::new(table, DEFAULT_SHARDS),
            writer: Writer::Netlink,
            nft: "nft".to_string(),
            nft_timeout: NFT_TIMEOUT,
            netns: None,
            socket: None,
            keep: Vec::new(),
            known: None,
        }
    }

    /// Number of service tables (at least 1).
    pub fn shards(mut self, shards: usize) -> Self {
        self.layout = Layout::new(self.layout.base.clone(), shards);
        self
    }

    /// How transactions are sent.
    pub fn writer(mut self, writer: Writer) -> Self {
        self.writer = writer;
        self
    }

    /// Connections from these sources (the local cluster's pod CIDRs) are not masqueraded.
    ///
    /// The remote cluster routes our pod CIDRs back through the tunnel, and the remote tunnel
    /// accepts only our pod addresses from us. Masquerading would take the address of the
    /// outgoing interface, and the tunnel interface has none, so the kernel
    /// (`inet_select_addr`) takes the first global address of the namespace, usually the
    /// node's own: the remote tunnel drops the packet.
    pub fn keep_sources(mut self, cidrs: impl IntoIterator<Item = IpNet>) -> Self {
        self.keep = cidrs.into_iter().collect();
        self
    }

    /// The `nft` program [`Writer::Nft`] runs (`nft` from `PATH` unless set).
    pub fn nft_program(mut self, program: impl Into<String>) -> Self {
        self.nft = program.into();
        self
    }

    /// How long one `nft` run may take before it is killed ([`NFT_TIMEOUT`] unless set).
    pub fn nft_timeout(mut self, timeout: Duration) -> Self {
        self.nft_timeout = timeout;
        self
    }

    /// Works inside network namespace `netns` (`ip netns exec NAME nft …`, and the
    /// netlink socket opened there), for tests and tools that drive a namespace from
    /// outside.
    pub fn in_netns(mut self, netns: &str) -> Self {
        self.netns = Some(netns.to_string());
        self
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Runs `nft` (in the namespace, if one is set) with its deadline.
    fn run(
        &self,
        what: &'static str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, NftError> {
        let tool = match &self.netns {
            Some(ns) => Tool::in_netns(&self.nft, ns),
            None => Tool::new(self.nft.as_str()),
        };
        tool.with_timeout(self.nft_timeout)
            .run_blocking(args, stdin)
            .map_err(|source| NftError::Nft { what, source })
    }

    /// Our tables, their chains and sets, and their rules ([`readback::list`]).
    fn list(&mut self) -> Result<Listing, NftError> {
        let layout = self.layout.clone();
        let socket = self.socket().map_err(|source| NftError::Netlink {
            operations: 0,
            source,
        })?;
        readback::list(socket, &layout).map_err(|source| NftError::Netlink {
            operations: 0,
            source,
        })
    }

    /// The netlink socket, opened on first use (in the namespace, if one is set).
    fn socket(&mut self) -> Result<&mut NfSocket, NfnlError> {
        if self.socket.is_none() {
            let socket = match &self.netns {
                Some(ns) => NfSocket::open_in_netns(ns)?,
                None => NfSocket::open()?,
            };
            self.socket = Some(socket);
        }
        Ok(self.socket.as_mut().expect("opened above"))
    }

    fn apply_inner(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, NftError> {
        // `known` is taken: a failure below leaves it unset, so the next apply lists the
        // kernel's ruleset first.
        let known = self.known.take();
        let (layout, keep) = (self.layout.clone(), self.keep.clone());
        let (Some(prev), Some(mut tables)) = (previous, known) else {
            // A full apply (start, periodic resync, after a failure, whatever `previous`
            // says then): compared with what the kernel holds now, service by service, so
            // that what is right stays with its counters.
            let listing = self.list()?;
            let (state, tables, seen) = parse_listing_seen(&layout, &listing);
            let kernel = Kernel {
                services: state.to_desired(|_| None),
                tables,
                seen,
            };
            let render = |out: &mut Sink| render_full_into(&layout, &keep, desired, &kernel, out);
            let mut record = kernel.tables.clone();
            let operations = self.write(desired, true, &render, &mut record)?;
            self.known = Some(record);
            return Ok(ApplyReport { operations });
        };
        let render = |out: &mut Sink| render_partial_into(&layout, prev, desired, out);
        let operations = self.write(desired, false, &render, &mut tables)?;
        self.known = Some(tables);
        Ok(ApplyReport { operations })
    }

    /// Sends what `render` makes through the configured writer, tracking it into
    /// `tables`. Returns the number of operations.
    fn write(
        &mut self,
        desired: &DesiredState,
        full: bool,
        render: &dyn Fn(&mut Sink),
        tables: &mut Tables,
    ) -> Result<usize, NftError> {
        match self.writer {
            Writer::Nft => {
                let mut ops = Vec::new();
                render(&mut |op| ops.push(op));
                if !ops.is_empty() {
                    self.run("apply", &["-f", "-"], Some(&ops::script(&ops)))?;
                }
                track(tables, &ops);
                Ok(ops.len())
            }
            Writer::Netlink => self.send_netlink(desired, full, render, tables),
        }
    }

    /// Encodes what `render` makes straight into one netlink batch (no list of
    /// operations is kept: at 10,000 services that list alone is tens of MB), tracks it
    /// into `tables`, and sends it. Returns the number of operations.
    fn send_netlink(
        &mut self,
        desired: &DesiredState,
        full: bool,
        render: &dyn Fn(&mut Sink),
        tables: &mut Tables,
    ) -> Result<usize, NftError> {
        let started = std::time::Instant::now();
        let netlink_err = |operations, source| NftError::Netlink { operations, source };
        let socket = self.socket().map_err(|e| netlink_err(0, e))?;
        // Sized once for a full sync: doubling a 30 MB buffer would hold both copies.
        let capacity = if full {
            desired.services.len() * BYTES_PER_SERVICE + 65536
        } else {
            65536
        };
        let mut batch = Batch::new(socket.next_seq(), capacity);
        // For each message, the operation it belongs to (to name a refused one).
        let mut owner: Vec<u32> = Vec::new();
        let mut count = 0usize;
        render(&mut |op| {
            ops::encode(&op, &mut batch);
            owner.resize(batch.messages(), count as u32);
            track_one(tables, &op);
            count += 1;
        });
        if count == 0 {
            return Ok(0);
        }
        let encoded = started.elapsed();
        let batch = batch.finish();
        let bytes = batch.bytes().len();
        let sent = socket.send(batch);
        tracing::debug!(
            operations = count,
            bytes,
            encode_ms = encoded.as_secs_f64() * 1000.0,
            kernel_ms = (started.elapsed() - encoded).as_secs_f64() * 1000.0,
            "nftables transaction"
        );
        match sent {
            Ok(()) => Ok(count),
            Err(source @ NfnlError::Refused { index, .. }) => {
                // Rendering is deterministic: render again to name the operation.
                let wanted = owner.get(index).map(|i| *i as usize);
                let mut op = String::new();
                let mut at = 0usize;
                render(&mut |o| {
                    if Some(at) == wanted {
                        o.text(&mut op);
                    }
                    at += 1;
                });
                Err(NftError::Refused {
                    op: op.trim_end().to_string(),
                    source,
                })
            }
            Err(e @ NfnlError::Socket { .. }) => {
                // A fresh socket next time.
                self.socket = None;
                Err(netlink_err(count, e))
            }
            Err(e) => Err(netlink_err(count, e)),
        }
    }
}

impl Backend for NftBackend {
    fn name(&self) -> &'static str {
        "nftables"
    }

    fn read(&mut self) -> Result<KernelState, BackendError> {
        let listing = self.list()?;
        let (state, objects) = parse_listing(&self.layout, &listing);
        if self.known.is_none() {
            self.known = Some(objects);
        }
        Ok(state)
    }

    fn apply(
        &mut self,
        desired: &DesiredState,
        previous: Option<&DesiredState>,
    ) -> Result<ApplyReport, BackendError> {
        self.apply_inner(desired, previous).map_err(|e| {
            self.known = None;
            BackendError::from(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::Instant;

    use super::*;
    use crate::testdata::CLUSTER_B;

    #[test]
    fn a_wedged_nft_writer_is_killed_at_its_deadline() {
        // An `nft` that never finishes.
        let dir = tempfile::tempdir().unwrap();
        let nft = dir.path().join("nft");
        std::fs::write(&nft, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut backend = NftBackend::new("causeway")
            .writer(Writer::Nft)
            .nft_program(nft.display().to_string())
            .nft_timeout(Duration::from_millis(300));
        // A partial apply against a known record: no listing (no netlink) first.
        backend.known = Some(Tables::new());
        let desired = crate::testdata::desired(CLUSTER_B);
        let started = Instant::now();
        let err = backend
            .apply(&desired, Some(&DesiredState::default()))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
        assert!(
            matches!(
                err,
                BackendError::Nft(NftError::Nft {
                    what: "apply",
                    source: ToolError::Timeout { .. }
                })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("killed"), "{err}");
        assert!(
            backend.known.is_none(),
            "after a failure the next apply lists the kernel first"
        );
    }
}
