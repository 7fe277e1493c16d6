//! A cheap HTTP/1.1 keep-alive client for bench/: one pre-built request, one socket per
//! client thread, responses framed by Content-Length. Std only, so its own cost per request
//! is a few microseconds (bench/bench.py prints it, measured against a canned server).
//!
//! ```text
//! bench_client latency    ADDR PATH BODY N            -> one latency in ns per line
//! bench_client throughput ADDR PATH BODY CLIENTS SECS -> "<requests> <seconds>"
//! bench_client serve      ADDR                        -> a canned Invoke response per request
//! ```
//! `serve` is the trivial local endpoint: it answers every request with the bytes a warm
//! RequestResponse Invoke returns, so a client's own overhead can be measured against it.
//! BODY is sent as is; an `@` in it is replaced per request by a fresh counter
//! (so Event payloads can carry a unique id). Any status other than 2xx aborts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Conn {
        let sock = TcpStream::connect(addr).unwrap_or_else(|e| die(&format!("connect {addr}: {e}")));
        sock.set_nodelay(true).ok();
        Conn { sock, buf: Vec::with_capacity(64 * 1024) }
    }

    /// Sends one request, reads one response; returns the status.
    fn call(&mut self, req: &[u8]) -> u16 {
        self.sock.write_all(req).unwrap_or_else(|e| die(&format!("write: {e}")));
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).unwrap_or("");
                let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.trim().parse().ok())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    self.fill(&mut chunk);
                }
                return status;
            }
            self.fill(&mut chunk);
        }
    }

    fn fill(&mut self, chunk: &mut [u8]) {
        let n = self.sock.read(chunk).unwrap_or_else(|e| die(&format!("read: {e}")));
        if n == 0 {
            die("server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn die(msg: &str) -> ! {
    eprintln!("bench_client: {msg}");
    std::process::exit(2)
}

/// Answers every request on every connection with a canned Invoke response.
fn serve(addr: &str) -> ! {
    let l = std::net::TcpListener::bind(addr).unwrap_or_else(|e| die(&format!("bind {addr}: {e}")));
    println!("{}", l.local_addr().map(|a| a.to_string()).unwrap_or_default());
    let _ = std::io::stdout().flush();
    const RESP: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-amz-executed-version: $LATEST\r\nx-amzn-requestid: 9f1c8e2a-3b4d-4e5f-8a6b-7c8d9e0f1a2b\r\ncontent-length: 11\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n{\"ok\":true}";
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            s.set_nodelay(true).ok();
            let mut buf: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                // One request: head, then Content-Length bytes of body.
                let end = loop {
                    if let Some(e) = find(&buf, b"\r\n\r\n") {
                        break e;
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.strip_prefix("content-length:"))
                    .find_map(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..end + 4 + len);
                if s.write_all(RESP).is_err() {
                    return;
                }
            }
        });
    }
    std::process::exit(0)
}

fn request(addr: &str, path: &str, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() == 3 && a[1] == "serve" {
        serve(&a[2]);
    }
    if a.len() < 6 {
        die("usage: bench_client latency|throughput ADDR PATH BODY N|CLIENTS [SECS]");
    }
    let (mode, addr, path, body) = (a[1].as_str(), a[2].clone(), a[3].clone(), a[4].clone());
    // Extra request headers, e.g. "X-Amz-Invocation-Type: Event\r\n".
    let headers = std::env::var("BENCH_HEADERS").unwrap_or_default().replace("\\r\\n", "\r\n");
    let templated = body.contains('@');
    match mode {
        "latency" => {
            let n: usize = a[5].parse().unwrap_or_else(|_| die("N"));
            let mut conn = Conn::open(&addr);
            let fixed = request(&addr, &path, &body, &headers);
            let mut out = String::with_capacity(n * 8);
            for i in 0..n {
                let owned;
                let req: &[u8] = if templated {
                    owned = request(&addr, &path, &body.replace('@', &i.to_string()), &headers);
                    &owned
                } else {
                    &fixed
                };
                let t = Instant::now();
                let status = conn.call(req);
                let ns = t.elapsed().as_nanos();
                if !(200..300).contains(&status) {
                    die(&format!("status {status}"));
                }
                out.push_str(&ns.to_string());
                out.push('\n');
            }
            print!("{out}");
        }
        "throughput" => {
            let clients: usize = a[5].parse().unwrap_or_else(|_| die("CLIENTS"));
            let secs: f64 = a.get(6).and_then(|s| s.parse().ok()).unwrap_or(3.0);
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let threads: Vec<_> = (0..clients)
                .map(|_| {
                    let (stop, done, addr) = (stop.clone(), done.clone(), addr.clone());
                    let req = request(&addr, &path, &body, &headers);
                    std::thread::spawn(move || {
                        let mut conn = Conn::open(&addr);
                        while !stop.load(Ordering::Relaxed) {
                            let status = conn.call(&req);
                            if !(200..300).contains(&status) {
                                die(&format!("status {status}"));
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
            for t in threads {
                let _ = t.join();
            }
            println!("{} {:.6}", done.load(Ordering::Relaxed), start.elapsed().as_secs_f64());
        }
        _ => die("mode must be latency or throughput"),
    }
}
