//! The IPVS client's errors, and how kernel errnos map to them.

use std::{fmt, io};

use netlink_packet_core::DecodeError;

use super::model::{RealServer, VirtualService};

/// Everything the IPVS client can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kernel has no `IPVS` generic-netlink family: `ip_vs` is neither built in nor
    /// loaded. The `auto` backend choice reads this as "use nftables".
    #[error("the kernel has no IPVS generic-netlink family (ip_vs module not loaded)")]
    NotAvailable,
    /// Opening, binding or using the netlink socket failed (including a reply timeout).
    #[error("netlink socket {op} failed")]
    Socket {
        /// `open`, `bind`, `connect`, `send`, `recv` or `set timeout`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A reply could not be parsed as netlink/IPVS.
    #[error("cannot decode the kernel's reply to {request}")]
    Decode {
        /// What was asked, e.g. `list virtual services`.
        request: String,
        /// The parse error.
        #[source]
        source: DecodeError,
    },
    /// A reply parsed but lacks an attribute or holds a value this client does not know.
    #[error("unexpected reply to {request}: {reason}")]
    BadReply {
        /// What was asked.
        request: String,
        /// What was wrong.
        reason: String,
    },
    /// `EEXIST` on NEW_SERVICE.
    #[error("virtual service {service} already exists")]
    ServiceExists {
        /// The service, e.g. `TCP 10.0.0.1:80`.
        service: String,
    },
    /// `ESRCH`: the service a request names does not exist.
    #[error("virtual service {service} does not exist")]
    NoSuchService {
        /// The service.
        service: String,
    },
    /// `EEXIST` on NEW_DEST.
    #[error("real server {dest} already exists in virtual service {service}")]
    DestExists {
        /// The service.
        service: String,
        /// The real server, e.g. `10.0.0.2:8080`.
        dest: String,
    },
    /// `ENOENT` on SET_DEST or DEL_DEST.
    #[error("real server {dest} does not exist in virtual service {service}")]
    NoSuchDest {
        /// The service.
        service: String,
        /// The real server.
        dest: String,
    },
    /// `ENOENT` on NEW/SET_SERVICE: the kernel found no module `ip_vs_<scheduler>`.
    #[error(
        "scheduler {scheduler:?} of virtual service {service} is not available (no module ip_vs_{scheduler})"
    )]
    UnknownScheduler {
        /// The service.
        service: String,
        /// The scheduler name asked for.
        scheduler: String,
    },
    /// `EPERM`: every IPVS command needs `CAP_NET_ADMIN`.
    #[error("permission denied to {request} (CAP_NET_ADMIN needed)")]
    PermissionDenied {
        /// What was asked.
        request: String,
    },
    /// `EINVAL`, `ERANGE`, `EAFNOSUPPORT` or `EOPNOTSUPP`: the kernel refused the values
    /// (e.g. a weight above `i32::MAX`, or an IPv4 real server for an IPv6 service
    /// outside tunnel mode).
    #[error("the kernel rejected the request to {request} as invalid")]
    Invalid {
        /// What was asked.
        request: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
    /// Any other errno.
    #[error("the kernel failed to {request}")]
    Kernel {
        /// What was asked.
        request: String,
        /// The errno.
        #[source]
        source: io::Error,
    },
}

/// What a netlink request was about: the subject of error messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Request<'a> {
    ResolveFamily,
    Info,
    ListServices,
    ListDests(&'a VirtualService),
    AddService(&'a VirtualService),
    EditService(&'a VirtualService),
    DeleteService(&'a VirtualService),
    AddDest(&'a VirtualService, &'a RealServer),
    EditDest(&'a VirtualService, &'a RealServer),
    DeleteDest(&'a VirtualService, &'a RealServer),
    Flush,
}

impl fmt::Display for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ResolveFamily => write!(f, "resolve generic-netlink family IPVS"),
            Self::Info => write!(f, "get IPVS info"),
            Self::ListServices => write!(f, "list virtual services"),
            Self::ListDests(s) => write!(f, "list real servers of virtual service {s}"),
            Self::AddService(s) => write!(f, "add virtual service {s}"),
            Self::EditService(s) => write!(f, "edit virtual service {s}"),
            Self::DeleteService(s) => write!(f, "delete virtual service {s}"),
            Self::AddDest(s, d) => write!(f, "add real server {d} to virtual service {s}"),
            Self::EditDest(s, d) => write!(f, "edit real server {d} of virtual service {s}"),
            Self::DeleteDest(s, d) => write!(f, "delete real server {d} of virtual service {s}"),
            Self::Flush => write!(f, "flush IPVS"),
        }
    }
}

impl Request<'_> {
    fn service(&self) -> Option<&VirtualService> {
        match *self {
            Self::ListDests(s)
            | Self::AddService(s)
            | Self::EditService(s)
            | Self::DeleteService(s)
            | Self::AddDest(s, _)
            | Self::EditDest(s, _)
            | Self::DeleteDest(s, _) => Some(s),
            Self::ResolveFamily | Self::Info | Self::ListServices | Self::Flush => None,
        }
    }
}

impl Error {
    /// Maps a negative-acknowledgement errno (positive, e.g. `libc::EEXIST`) for
    /// `request` to the variant that says what happened. The meanings are those of
    /// `net/netfilter/ipvs/ip_vs_ctl.c` (6.1): ESRCH for a missing service, ENOENT for
    /// a missing destination or scheduler module.
    pub(crate) fn from_errno(errno: i32, request: Request<'_>) -> Self {
        let os = || io::Error::from_raw_os_error(errno);
        let svc = || {
            request
                .service()
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        match (errno, request) {
            (ENOENT, Request::ResolveFamily) => Self::NotAvailable,
            (EPERM | EACCES, _) => Self::PermissionDenied {
                request: request.to_string(),
            },
            (EEXIST, Request::AddService(_)) => Self::ServiceExists { service: svc() },
            (EEXIST, Request::AddDest(s, d)) => Self::DestExists {
                service: s.to_string(),
                dest: d.to_string(),
            },
            (ESRCH, r) if r.service().is_some() => Self::NoSuchService { service: svc() },
            (ENOENT, Request::AddService(s) | Request::EditService(s)) => Self::UnknownScheduler {
                service: s.to_string(),
                scheduler: s.scheduler.clone(),
            },
            (ENOENT, Request::EditDest(s, d) | Request::DeleteDest(s, d)) => Self::NoSuchDest {
                service: s.to_string(),
                dest: d.to_string(),
            },
            (EINVAL | ERANGE | EAFNOSUPPORT | EOPNOTSUPP, _) => Self::Invalid {
                request: request.to_string(),
                source: os(),
            },
            _ => Self::Kernel {
                request: request.to_string(),
                source: os(),
            },
        }
    }
}

// Linux errno values (asm-generic/errno-base.h, errno.h); every Linux architecture
// Causeway builds for uses these.
const EPERM: i32 = 1;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EACCES: i32 = 13;
const EEXIST: i32 = 17;
const EINVAL: i32 = 22;
const ERANGE: i32 = 34;
const EOPNOTSUPP: i32 = 95;
const EAFNOSUPPORT: i32 = 97;

#[cfg(test)]
mod tests {
    //! Test addresses: 192.0.2.0/24 (RFC 5737).

    use super::*;
    use crate::model::{Forward, Protocol};

    fn svc() -> VirtualService {
        VirtualService::new(Protocol::Tcp, "192.0.2.1".parse().unwrap(), 80, "nosuch")
    }

    fn dest() -> RealServer {
        RealServer::new("192.0.2.2".parse().unwrap(), 8080, 1, Forward::Masq)
    }

    #[test]
    fn errno_constants_match_the_os() {
        for (ours, os) in [
            (EPERM, io::ErrorKind::PermissionDenied),
            (ENOENT, io::ErrorKind::NotFound),
            (EEXIST, io::ErrorKind::AlreadyExists),
            (EINVAL, io::ErrorKind::InvalidInput),
            (EOPNOTSUPP, io::ErrorKind::Unsupported),
        ] {
            assert_eq!(
                io::Error::from_raw_os_error(ours).kind(),
                os,
                "errno {ours}"
            );
        }
    }

    #[test]
    fn service_errnos_name_the_service() {
        let (s, d) = (svc(), dest());
        let e = Error::from_errno(EEXIST, Request::AddService(&s));
        assert!(matches!(e, Error::ServiceExists { .. }));
        assert_eq!(
            e.to_string(),
            "virtual service TCP 192.0.2.1:80 already exists"
        );
        for r in [
            Request::EditService(&s),
            Request::DeleteService(&s),
            Request::AddDest(&s, &d),
            Request::EditDest(&s, &d),
            Request::DeleteDest(&s, &d),
        ] {
            let e = Error::from_errno(ESRCH, r);
            assert_eq!(
                e.to_string(),
                "virtual service TCP 192.0.2.1:80 does not exist",
                "{r}"
            );
        }
        let e = Error::from_errno(ENOENT, Request::AddService(&s));
        assert_eq!(
            e.to_string(),
            "scheduler \"nosuch\" of virtual service TCP 192.0.2.1:80 is not available (no module ip_vs_nosuch)"
        );
        assert!(matches!(
            Error::from_errno(ENOENT, Request::EditService(&s)),
            Error::UnknownScheduler { .. }
        ));
    }

    #[test]
    fn dest_errnos_name_service_and_dest() {
        let (s, d) = (svc(), dest());
        let e = Error::from_errno(EEXIST, Request::AddDest(&s, &d));
        assert_eq!(
            e.to_string(),
            "real server 192.0.2.2:8080 already exists in virtual service TCP 192.0.2.1:80"
        );
        for r in [Request::EditDest(&s, &d), Request::DeleteDest(&s, &d)] {
            let e = Error::from_errno(ENOENT, r);
            assert!(matches!(e, Error::NoSuchDest { .. }), "{r}");
            assert_eq!(
                e.to_string(),
                "real server 192.0.2.2:8080 does not exist in virtual service TCP 192.0.2.1:80"
            );
        }
    }

    #[test]
    fn generic_errnos() {
        let (s, d) = (svc(), dest());
        assert!(matches!(
            Error::from_errno(ENOENT, Request::ResolveFamily),
            Error::NotAvailable
        ));
        let e = Error::from_errno(EPERM, Request::ListServices);
        assert_eq!(
            e.to_string(),
            "permission denied to list virtual services (CAP_NET_ADMIN needed)"
        );
        for errno in [EINVAL, ERANGE, EAFNOSUPPORT, EOPNOTSUPP] {
            let e = Error::from_errno(errno, Request::AddDest(&s, &d));
            assert!(matches!(e, Error::Invalid { .. }), "errno {errno}");
            assert_eq!(
                e.to_string(),
                "the kernel rejected the request to add real server 192.0.2.2:8080 to virtual service TCP 192.0.2.1:80 as invalid"
            );
        }
        // ENOMEM: kept as the source
        let e = Error::from_errno(12, Request::Flush);
        assert_eq!(e.to_string(), "the kernel failed to flush IPVS");
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("memory"), "{source}");
        // ESRCH without a service in the request is not "no such service"
        assert!(matches!(
            Error::from_errno(ESRCH, Request::Info),
            Error::Kernel { .. }
        ));
    }
}
