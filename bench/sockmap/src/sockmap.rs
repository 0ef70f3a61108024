//! A sockmap splice by raw `bpf(2)` calls: two SOCKHASH maps, the verdict
//! one (a socket put there has its received data run through the program)
//! and the targets (keyed by a socket's cookie: the socket its data goes
//! to), and a 12-instruction `sk_skb` verdict program that redirects each
//! received buffer to the target of its socket's cookie.
//!
//! The handoff has no gap: both sockets are put in the targets first, every
//! byte read so far is written on, and only then does each join the verdict
//! map; data that came in meanwhile waits in the socket and is run through
//! the program on the next arrival, or at once by `poke` (`SO_RCVLOWAT`
//! makes TCP signal readable data). After that the relay never reads: it
//! waits for each side's FIN (`POLLRDHUP`) and passes it on once every byte
//! received on that side has reached the other (`flushed`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const MAP_TYPE_SOCKHASH: u32 = 18;
const PROG_TYPE_SK_SKB: u32 = 14;
const ATTACH_SK_SKB_VERDICT: u32 = 38;
const HELPER_GET_SOCKET_COOKIE: i32 = 46;
const HELPER_SK_REDIRECT_HASH: i32 = 72;
const SK_PASS: i32 = 1;

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    pad: [u32; 27],
}
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    pad: [u64; 12],
}
#[repr(C)]
#[derive(Default)]
struct MapElem {
    map_fd: u32,
    pad0: u32,
    key: u64,
    value: u64,
    flags: u64,
    pad: [u64; 12],
}
#[repr(C)]
#[derive(Default)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    pad: [u32; 28],
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as u32) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}
fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: dst | (src << 4), off, imm }
}

pub struct Sockmap {
    verdict: OwnedFd,
    targets: OwnedFd,
    _prog: OwnedFd,
}

fn map() -> io::Result<OwnedFd> {
    let mut a =
        MapCreate { map_type: MAP_TYPE_SOCKHASH, key_size: 8, value_size: 8, max_entries: 65536, ..Default::default() };
    Ok(unsafe { OwnedFd::from_raw_fd(bpf(BPF_MAP_CREATE, &mut a)? as RawFd) })
}

impl Sockmap {
    pub fn new() -> io::Result<Sockmap> {
        let verdict = map()?;
        let targets = map()?;
        let prog = [
            i(0xbf, 6, 1, 0, 0),                        // r6 = ctx
            i(0x85, 0, 0, 0, HELPER_GET_SOCKET_COOKIE), // r0 = cookie(skb->sk)
            i(0x7b, 10, 0, -8, 0),                      // *(u64 *)(r10 - 8) = r0
            i(0xbf, 1, 6, 0, 0),                        // r1 = ctx
            i(0x18, 2, 1, 0, targets.as_raw_fd()),      // r2 = &targets
            i(0, 0, 0, 0, 0),
            i(0xbf, 3, 10, 0, 0), // r3 = r10
            i(0x07, 3, 0, 0, -8), // r3 -= 8
            i(0xb7, 4, 0, 0, 0),  // r4 = 0 (egress)
            i(0x85, 0, 0, 0, HELPER_SK_REDIRECT_HASH),
            i(0xb7, 0, 0, 0, SK_PASS), // redirected, or kept here when the peer is gone
            i(0x95, 0, 0, 0, 0),
        ];
        let license = b"GPL\0";
        let mut log = vec![0u8; 64 * 1024];
        let mut a = ProgLoad {
            prog_type: PROG_TYPE_SK_SKB,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: log.len() as u32,
            log_buf: log.as_mut_ptr() as u64,
            kern_version: 0,
            prog_flags: 0,
            pad: [0; 12],
        };
        let fd = match bpf(BPF_PROG_LOAD, &mut a) {
            Ok(fd) => fd,
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(0);
                return Err(io::Error::new(e.kind(), format!("{e}: {}", String::from_utf8_lossy(&log[..end]))));
            }
        };
        let prog = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let mut a = ProgAttach {
            target_fd: verdict.as_raw_fd() as u32,
            attach_bpf_fd: prog.as_raw_fd() as u32,
            attach_type: ATTACH_SK_SKB_VERDICT,
            ..Default::default()
        };
        bpf(BPF_PROG_ATTACH, &mut a)?;
        Ok(Sockmap { verdict, targets, _prog: prog })
    }

    fn put(map: &OwnedFd, key: u64, fd: RawFd) -> io::Result<()> {
        let v: u64 = fd as u64;
        let mut a = MapElem {
            map_fd: map.as_raw_fd() as u32,
            key: &key as *const u64 as u64,
            value: &v as *const u64 as u64,
            ..Default::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }
    pub fn target(&self, from: u64, to: RawFd) -> io::Result<()> {
        Self::put(&self.targets, from, to)
    }
    pub fn start(&self, cookie: u64, fd: RawFd) -> io::Result<()> {
        Self::put(&self.verdict, cookie, fd)
    }
}

pub fn cookie(fd: RawFd) -> io::Result<u64> {
    let mut c: u64 = 0;
    let mut len = 8 as libc::socklen_t;
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, 57, &mut c as *mut u64 as *mut libc::c_void, &mut len) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(c) }
}

pub fn poke(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    let r = unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVLOWAT, &one as *const _ as *const libc::c_void, 4)
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

pub fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    let mut t: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, &mut t as *mut _ as *mut libc::c_void, &mut len)
    };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(t) }
}

/// Waits (bounded) until every byte `from` received has been written into `to`.
pub fn flushed(from: &std::net::TcpStream, to: &std::net::TcpStream) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let (Ok(f), Ok(t)) = (tcp_info(from.as_raw_fd()), tcp_info(to.as_raw_fd())) else { return };
        let mut outq: libc::c_int = 0;
        unsafe { libc::ioctl(to.as_raw_fd(), libc::TIOCOUTQ, &mut outq) };
        let written = t.tcpi_bytes_acked + outq as u64;
        let received = f.tcpi_bytes_received;
        if written + 1 >= received || std::time::Instant::now() > deadline {
            if written + 1 < received {
                eprintln!("flush deadline: written {written} received {received}");
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}
