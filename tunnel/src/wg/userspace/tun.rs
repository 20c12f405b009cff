//! Quarantined TUN device setup: `/dev/net/tun` + `TUNSETIFF`, one file per queue.
//!
//! Kernel quirk: rtnetlink cannot create TUN devices (EOPNOTSUPP); only the ioctl can. With
//! `IFF_MULTI_QUEUE` each open file is a queue of the same device, and the kernel spreads flows
//! over the queues by hash. Without `TUNSETPERSIST` the device (and every route through it)
//! disappears when the last queue is closed; we make it persistent, so that a stopped or killed
//! process leaves the device and its routes in place, with no reader: packets routed into it are
//! dropped (fail closed), and the next start attaches its queues to the same device.
//!
//! Offloads: with `IFF_VNET_HDR` every read and write starts with a `virtio_net_hdr` (see
//! `offload/`), and `TUNSETOFFLOAD` tells the kernel what we can finish ourselves: checksums
//! (`TUN_F_CSUM`), TCP segmentation (`TUN_F_TSO4/6`: reads of up to 64 KiB TCP segments) and, on
//! kernels since 6.2, UDP segmentation (`TUN_F_USO4/6`). The TUN device then also accepts
//! large coalesced TCP packets on write. `IFF_VNET_HDR` is a device-wide flag that every queue
//! must open with; `TUNSETOFFLOAD` sets the device's features and is repeated per queue.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt as _;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// The longest interface name (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

/// One queue of a TUN device, in non-blocking mode.
#[derive(Debug)]
pub struct TunQueue {
    file: File,
    vnet: bool,
    offloads: Offloads,
}

/// Which offloads the kernel accepted for a queue opened with `vnet` headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// TCP segmentation (and checksum) offload.
    pub tso: bool,
    /// UDP segmentation offload.
    pub uso: bool,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TunQueue {
    /// Opens one more queue of the TUN device `name`, creating the device with the first one (or
    /// attaching to the device a previous process left). With `vnet`, packets carry a
    /// `virtio_net_hdr` and the offloads the kernel accepts are enabled (TSO and checksum, USO
    /// where supported); see [`TunQueue::offloads`].
    pub fn open(name: &str, vnet: bool) -> io::Result<Self> {
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE | if vnet { IFF_VNET_HDR } else { 0 },
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq (40 bytes), which IfReq lays out.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &raw mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut offloads = Offloads::default();
        if vnet {
            let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
            // Kernels before 6.2 refuse the USO bits with EINVAL: retry without them.
            if set_offload(&file, tso | TUN_F_USO4 | TUN_F_USO6).is_ok() {
                offloads = Offloads {
                    tso: true,
                    uso: true,
                };
            } else if set_offload(&file, tso).is_ok() {
                offloads.tso = true;
            }
        }
        Ok(Self {
            file,
            vnet,
            offloads,
        })
    }

    /// Makes the device outlive its queues (`persist`) or not: a device that is not persistent
    /// is removed by the kernel when its last queue closes.
    pub fn set_persist(&self, persist: bool) -> io::Result<()> {
        // SAFETY: TUNSETPERSIST takes the flag as the ioctl's integer argument.
        let rc = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                TUNSETPERSIST,
                libc::c_ulong::from(persist),
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Whether reads and writes carry a `virtio_net_hdr`.
    #[inline]
    pub fn vnet(&self) -> bool {
        self.vnet
    }

    /// The offloads enabled.
    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// Writes one packet preceded by its `virtio_net_hdr` (queues opened with `vnet`), in one
    /// `writev` so the packet is not copied behind the header.
    #[inline]
    pub fn write_vnet(&self, hdr: &[u8], packet: &[u8]) -> io::Result<usize> {
        (&self.file).write_vectored(&[IoSlice::new(hdr), IoSlice::new(packet)])
    }

    /// Reads one packet; `WouldBlock` when none is queued.
    #[inline]
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one packet.
    #[inline]
    pub fn write(&self, packet: &[u8]) -> io::Result<usize> {
        (&self.file).write(packet)
    }
}

fn set_offload(file: &File, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes the flags as the ioctl's integer argument.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD, libc::c_ulong::from(flags)) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl AsFd for TunQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
