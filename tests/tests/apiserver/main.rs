//! The test API server against the real `kube` client over TCP.
//!
//! Test addresses: Service cluster IPs from 192.0.2.0/24 and Node addresses from
//! 198.51.100.0/24 (RFC 5737).

mod binary;
mod common;
mod crud;
mod faults;
mod watch;
