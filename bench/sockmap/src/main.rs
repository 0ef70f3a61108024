//! Which TCP relay can keep up with a direct connection on this machine:
//! a user-space relay, or one whose bytes stay in the kernel (a sockmap:
//! after the first request and answer, relayed in user space so that a
//! balancer could time it, both sockets are redirected to each other by an
//! `sk_skb` verdict program). Destination NAT, the third way, needs no
//! program: an iptables rule.
//!
//! ```sh
//! cargo build --release --manifest-path bench/sockmap/Cargo.toml
//! B=bench/sockmap/target/release/sockmap-bench
//! $B backend 127.0.0.1:9001 &                   # answers `ok`, keep-alive
//! $B user 127.0.0.1:9002 127.0.0.1:9001 &       # user-space relay
//! sudo $B kernel 127.0.0.1:9003 127.0.0.1:9001 &  # sockmap (root: bpf)
//! sudo iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 9004 -j DNAT --to-destination 127.0.0.1:9001
//! for p in 9001 9002 9003 9004; do wrk -t2 -c32 -d4s --latency http://127.0.0.1:$p/; done
//! ```
//!
//! A measurement tool, not part of Shoal: the README gives its figures.

mod sockmap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;

fn backend(addr: &str) {
    let l = TcpListener::bind(addr).unwrap();
    for c in l.incoming() {
        let Ok(mut c) = c else { continue };
        std::thread::spawn(move || {
            c.set_nodelay(true).ok();
            let mut buf = [0u8; 4096];
            let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        // count requests in the chunk
                        let k = buf[..n].windows(4).filter(|w| w == b"\r\n\r\n").count().max(1);
                        for _ in 0..k {
                            if c.write_all(resp).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
    }
}

fn drain(from: &mut TcpStream, to: &mut TcpStream) -> std::io::Result<bool> {
    from.set_nonblocking(true)?;
    let mut buf = [0u8; 16384];
    let r = loop {
        match from.read(&mut buf) {
            Ok(0) => break Ok(true),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(false),
            Err(e) => break Err(e),
        }
    };
    from.set_nonblocking(false)?;
    r
}

fn proxy(listen: &str, to: &str, kernel: bool) {
    let sm = if kernel { Some(Arc::new(sockmap::Sockmap::new().expect("sockmap"))) } else { None };
    let l = TcpListener::bind(listen).unwrap();
    for c in l.incoming() {
        let Ok(mut c) = c else { continue };
        let to = to.to_string();
        let sm = sm.clone();
        std::thread::spawn(move || {
            let Ok(mut b) = TcpStream::connect(to) else { return };
            c.set_nodelay(true).ok();
            b.set_nodelay(true).ok();
            let mut buf = [0u8; 16384];
            let Ok(n) = c.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            if b.write_all(&buf[..n]).is_err() {
                return;
            }
            let Ok(n) = b.read(&mut buf) else { return };
            if n == 0 {
                return;
            }
            if c.write_all(&buf[..n]).is_err() {
                return;
            }
            match sm {
                Some(sm) => {
                    let (kc, kb) = (sockmap::cookie(c.as_raw_fd()).unwrap(), sockmap::cookie(b.as_raw_fd()).unwrap());
                    sm.target(kc, b.as_raw_fd()).unwrap();
                    sm.target(kb, c.as_raw_fd()).unwrap();
                    let (mut c2, mut b2) = (c.try_clone().unwrap(), b.try_clone().unwrap());
                    let _ = drain(&mut c, &mut b2);
                    let _ = drain(&mut b, &mut c2);
                    sm.start(kc, c.as_raw_fd()).unwrap();
                    sm.start(kb, b.as_raw_fd()).unwrap();
                    sockmap::poke(c.as_raw_fd()).unwrap();
                    sockmap::poke(b.as_raw_fd()).unwrap();
                    // wait for FINs, never reading: the verdict owns the bytes
                    let (mut c_open, mut b_open) = (true, true);
                    while c_open || b_open {
                        let mut fds = [
                            libc::pollfd {
                                fd: if c_open { c.as_raw_fd() } else { -1 },
                                events: libc::POLLRDHUP,
                                revents: 0,
                            },
                            libc::pollfd {
                                fd: if b_open { b.as_raw_fd() } else { -1 },
                                events: libc::POLLRDHUP,
                                revents: 0,
                            },
                        ];
                        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                        if r < 0 {
                            break;
                        }
                        if (fds[0].revents | fds[1].revents) & (libc::POLLHUP | libc::POLLERR) != 0 {
                            break;
                        }
                        if fds[0].revents & libc::POLLRDHUP != 0 {
                            c_open = false;
                            sockmap::flushed(&c, &b);
                            let _ = b.shutdown(Shutdown::Write);
                        }
                        if fds[1].revents & libc::POLLRDHUP != 0 {
                            b_open = false;
                            sockmap::flushed(&b, &c);
                            let _ = c.shutdown(Shutdown::Write);
                        }
                    }
                }
                None => {
                    let (mut c2, mut b2) = (c.try_clone().unwrap(), b.try_clone().unwrap());
                    let t = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut b2, &mut c2);
                        let _ = c2.shutdown(Shutdown::Write);
                    });
                    let _ = std::io::copy(&mut c, &mut b);
                    let _ = b.shutdown(Shutdown::Write);
                    let _ = t.join();
                }
            }
        });
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a[1].as_str() {
        "backend" => backend(&a[2]),
        "user" => proxy(&a[2], &a[3], false),
        "kernel" => proxy(&a[2], &a[3], true),
        _ => panic!("mode"),
    }
}
