//! Prometheus metrics of the DNS server, registered at construction.
//!
//! The UDP fast path counts into thread-local arrays ([`LocalCounts`]) flushed every few
//! hundred queries (and when idle), so that two cores answering 100k queries per second
//! each do not fight over the counters' cache lines.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Which part of the server answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Zone {
    /// A `cluster.<name>` zone or a PTR name of a cluster CIDR.
    Cluster,
    /// The merged zone (or its `clusterset.local` alias).
    All,
    /// Sent to the upstream resolvers.
    Forwarded,
    /// Malformed or unsupported queries.
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum Proto {
    Udp,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum Rcode {
    NOERROR,
    FORMERR,
    SERVFAIL,
    NXDOMAIN,
    NOTIMP,
    REFUSED,
    OTHER,
}

impl Rcode {
    pub fn from_u8(code: u8) -> Self {
        match code {
            0 => Rcode::NOERROR,
            1 => Rcode::FORMERR,
            2 => Rcode::SERVFAIL,
            3 => Rcode::NXDOMAIN,
            4 => Rcode::NOTIMP,
            5 => Rcode::REFUSED,
            _ => Rcode::OTHER,
        }
    }
}

const ZONES: [Zone; 4] = [Zone::Cluster, Zone::All, Zone::Forwarded, Zone::Invalid];
const RCODES: usize = 7;

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QueryLabels {
    zone: Zone,
    rcode: Rcode,
    protocol: Proto,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProtoLabels {
    protocol: Proto,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

struct Inner {
    queries: Family<QueryLabels, Counter>,
    udp_counters: Vec<Counter>,
    latency: Family<ProtoLabels, Histogram>,
    truncated: Counter,
    upstream_errors: Family<ReasonLabels, Counter>,
    index_build: Histogram,
    index_names: Gauge,
}

/// Handles to the DNS metrics (cheap to clone).
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

fn zone_index(z: Zone) -> usize {
    ZONES.iter().position(|x| *x == z).unwrap_or(0)
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let queries = Family::<QueryLabels, Counter>::default();
        let latency = Family::<ProtoLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
        });
        let truncated = Counter::default();
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        let index_build = Histogram::new(exponential_buckets(0.000_5, 2.0, 14));
        let index_names = Gauge::default();
        let dns = registry.sub_registry_with_prefix("causeway_dns");
        dns.register(
            "queries",
            "DNS queries answered, by zone kind, rcode and protocol",
            queries.clone(),
        );
        dns.register(
            "query_duration_seconds",
            "Time to answer a query (UDP fast-path answers are sampled 1 in 64)",
            latency.clone(),
        );
        dns.register(
            "truncated",
            "UDP answers sent with TC set",
            truncated.clone(),
        );
        dns.register(
            "upstream_errors",
            "Forwarded queries that failed, by reason",
            upstream_errors.clone(),
        );
        dns.register(
            "index_build_seconds",
            "Time to rebuild the answer index after a change",
            index_build.clone(),
        );
        dns.register(
            "index_names",
            "Names in the answer index",
            index_names.clone(),
        );
        let mut udp_counters = Vec::new();
        for zone in ZONES {
            for code in 0..RCODES as u8 {
                udp_counters.push(
                    queries
                        .get_or_create(&QueryLabels {
                            zone,
                            rcode: Rcode::from_u8(if code == 6 { 255 } else { code }),
                            protocol: Proto::Udp,
                        })
                        .clone(),
                );
            }
        }
        Metrics(Arc::new(Inner {
            queries,
            udp_counters,
            latency,
            truncated,
            upstream_errors,
            index_build,
            index_names,
        }))
    }

    /// Counts one query answered outside the UDP fast path.
    pub fn query(&self, zone: Zone, rcode: u8, protocol: Proto, took: Duration) {
        self.0
            .queries
            .get_or_create(&QueryLabels {
                zone,
                rcode: Rcode::from_u8(rcode),
                protocol,
            })
            .inc();
        self.latency(protocol, took);
    }

    pub fn latency(&self, protocol: Proto, took: Duration) {
        self.0
            .latency
            .get_or_create(&ProtoLabels { protocol })
            .observe(took.as_secs_f64());
    }

    pub fn upstream_error(&self, reason: &str) {
        self.0
            .upstream_errors
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn index_built(&self, took: Duration, names: usize) {
        self.0.index_build.observe(took.as_secs_f64());
        self.0.index_names.set(names as i64);
    }
}

/// Per-thread counts of the UDP fast path.
pub struct LocalCounts {
    counts: [[u64; RCODES]; 4],
    truncated: u64,
    pending: u32,
}

impl Default for LocalCounts {
    fn default() -> Self {
        Self {
            counts: [[0; RCODES]; 4],
            truncated: 0,
            pending: 0,
        }
    }
}

impl LocalCounts {
    const FLUSH_EVERY: u32 = 256;

    /// Counts one answer; flushes now and then.
    pub fn count(&mut self, metrics: &Metrics, zone: Zone, rcode: u8, truncated: bool) {
        let code = Rcode::from_u8(rcode) as usize;
        self.counts[zone_index(zone)][code] += 1;
        self.truncated += u64::from(truncated);
        self.pending += 1;
        if self.pending >= Self::FLUSH_EVERY {
            self.flush(metrics);
        }
    }

    pub fn flush(&mut self, metrics: &Metrics) {
        if self.pending == 0 {
            return;
        }
        for (z, row) in self.counts.iter_mut().enumerate() {
            for (c, n) in row.iter_mut().enumerate() {
                if *n > 0 {
                    metrics.0.udp_counters[z * RCODES + c].inc_by(*n);
                    *n = 0;
                }
            }
        }
        if self.truncated > 0 {
            metrics.0.truncated.inc_by(self.truncated);
            self.truncated = 0;
        }
        self.pending = 0;
    }
}
