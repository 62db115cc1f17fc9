//! The kernel's per-socket segment counters (`TCP_INFO`).
//!
//! Used for the one side we cannot wrap: the library's server writes to
//! sockets it accepts itself. The client's socket knows how many data segments
//! it *received* (`tcpi_data_segs_in`), which on loopback with `TCP_NODELAY`
//! is one per server `send` for messages below the 64 KiB loopback MSS. The
//! benchmark checks this against the exact wrapped counts of the baseline,
//! whose server it does wrap.

use std::os::fd::RawFd;

/// The prefix of `struct tcp_info` (linux/tcp.h) up to the data-segment
/// counters, which the kernel has filled since Linux 4.6.
#[repr(C)]
#[derive(Default)]
struct TcpInfo {
    _u8s: [u8; 8],
    _u32s: [u32; 24],
    _u64s: [u64; 4],
    segs_out: u32,
    segs_in: u32,
    notsent_bytes: u32,
    min_rtt: u32,
    data_segs_in: u32,
    data_segs_out: u32,
}

/// Data segments received and sent on `fd` so far, if the kernel says.
pub fn data_segments(fd: RawFd) -> Option<(u64, u64)> {
    let mut info = TcpInfo::default();
    let mut len = std::mem::size_of::<TcpInfo>() as libc::socklen_t;
    // SAFETY: `info` is a plain C struct of `len` bytes; the kernel writes at
    // most `len` bytes into it and reports how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut TcpInfo).cast(),
            &mut len,
        )
    };
    let _ = (
        info.segs_out,
        info.segs_in,
        info.notsent_bytes,
        info.min_rtt,
    );
    (rc == 0 && len as usize >= std::mem::size_of::<TcpInfo>())
        .then(|| (u64::from(info.data_segs_in), u64::from(info.data_segs_out)))
}
