//! Quarantined TUN device setup: `/dev/net/tun` + `TUNSETIFF`, one file per queue.
//!
//! Kernel quirk: rtnetlink cannot create TUN devices (EOPNOTSUPP); only the ioctl can. With
//! `IFF_MULTI_QUEUE` each open file is a queue of the same device, and the kernel spreads flows
//! over the queues by hash. The device disappears when the last queue is closed.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt as _;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

/// The longest interface name (IFNAMSIZ - 1).
pub const MAX_NAME_LEN: usize = 15;

/// One queue of a TUN device, in non-blocking mode.
#[derive(Debug)]
pub struct TunQueue {
    file: File,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

impl TunQueue {
    /// Opens one more queue of the TUN device `name`, creating the device with the first one.
    pub fn open(name: &str) -> io::Result<Self> {
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
            flags: IFF_TUN | IFF_NO_PI | IFF_MULTI_QUEUE,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a struct ifreq (40 bytes), which IfReq lays out.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &raw mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { file })
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

impl AsRawFd for TunQueue {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
