//! A generic-netlink client for the kernel's IPVS (`ip_vs`) load balancer, used by the
//! IPVS backend. No maintained crate does this (see the project's CRATES.md); this one
//! is built on `netlink-packet-generic` + `netlink-sys`.
//!
//! - [`message`]: typed messages and attributes of `include/uapi/linux/ip_vs.h`,
//!   encode and decode;
//! - [`request`]: the whole requests the client sends (tests compare them with the
//!   bytes ipvsadm sends);
//! - [`IpvsClient`]: a blocking socket: family resolution, request/ack, dumps;
//! - [`VirtualService`], [`RealServer`] and friends: the backend's view, free of
//!   netlink details.
//!
//! Only protocol (TCP/UDP/SCTP) services are modelled; firewall-mark services are
//! skipped when listing. IPv4 and IPv6 both work.

mod client;
mod convert;
mod error;
pub mod message;
mod model;
mod reply;
pub mod request;

pub use client::IpvsClient;
pub use error::Error;
pub use model::{
    DestStats, Forward, Info, Protocol, RealServer, ServiceEntry, Stats, VirtualService,
};
