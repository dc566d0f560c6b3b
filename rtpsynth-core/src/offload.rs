//! Relay offload: the kernel forwards a relayed channel pair's RTP, with no
//! socket, no system call and no worker in the path (the `relay-offload` of
//! `rtpmuxserver`). A tc program (bpf/relay_offload.bpf.c, compiled by
//! build.rs and embedded here) sits on the ingress of every Ethernet and
//! loopback interface; the worker gives it one route per direction of a
//! pair, reads back what it counted and folds that into the channels'
//! statistics and sessions ([`crate::mux`]).
//!
//! The program is attached through tcx links (Linux 6.6), which the kernel
//! removes when the last descriptor closes: dropping [`Offload`], or the
//! process ending however it ends, leaves nothing behind on an interface.
//! Loading needs `CAP_BPF` and `CAP_NET_ADMIN` (or root).

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::session::Reception;

/// The program, or nothing when clang was missing at build time.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/relay_offload.bpf.o"));

/// `BPF_TCX_INGRESS` (Linux 6.6), which Debian 12's headers predate.
const TCX_INGRESS: u32 = 46;
/// `BPF_F_LOCK`: read or write a route's value under its spin lock.
const BPF_F_LOCK: u64 = 4;
/// `ARPHRD_ETHER` and `ARPHRD_LOOPBACK`: the interfaces whose frames start
/// with the Ethernet header the program reads.
const LINK_TYPES: [u32; 2] = [1, 772];

#[repr(C)]
struct BpfObject {
    _opaque: [u8; 0],
}
#[repr(C)]
struct BpfProgram {
    _opaque: [u8; 0],
}

// The few libbpf calls used, as Debian 12's libbpf 1.1 has them; 1.x's
// low-level calls return a negative errno.
#[link(name = "bpf")]
unsafe extern "C" {
    /// The printer (`libbpf_print_fn_t`, variadic) is only ever passed
    /// back as it came, never called from here: typed as any function.
    fn libbpf_set_print(f: Option<unsafe extern "C" fn()>) -> Option<unsafe extern "C" fn()>;
    fn bpf_object__open_mem(buf: *const c_void, size: usize, opts: *const c_void)
    -> *mut BpfObject;
    fn bpf_object__load(obj: *mut BpfObject) -> c_int;
    fn bpf_object__close(obj: *mut BpfObject);
    fn bpf_object__find_program_by_name(
        obj: *const BpfObject,
        name: *const c_char,
    ) -> *mut BpfProgram;
    fn bpf_object__find_map_fd_by_name(obj: *const BpfObject, name: *const c_char) -> c_int;
    fn bpf_program__fd(prog: *const BpfProgram) -> c_int;
    fn bpf_link_create(prog_fd: c_int, target: c_int, attach: u32, opts: *const c_void) -> c_int;
    fn bpf_map_update_elem(
        fd: c_int,
        key: *const c_void,
        value: *const c_void,
        flags: u64,
    ) -> c_int;
    fn bpf_map_lookup_elem_flags(
        fd: c_int,
        key: *const c_void,
        value: *mut c_void,
        flags: u64,
    ) -> c_int;
    fn bpf_map_lookup_batch(
        fd: c_int,
        in_batch: *const c_void,
        out_batch: *mut c_void,
        keys: *mut c_void,
        values: *mut c_void,
        count: *mut u32,
        opts: *const BatchOpts,
    ) -> c_int;
    fn bpf_map_lookup_and_delete_elem_flags(
        fd: c_int,
        key: *const c_void,
        value: *mut c_void,
        flags: u64,
    ) -> c_int;
}

/// How a datagram arrives (a route's key) or leaves: addresses as IPv6
/// ones (IPv4 ones mapped, an unspecified one all zeros: a channel bound to
/// any address) and UDP ports, in network byte order (`struct
/// offload_flow`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Flow {
    saddr: [u8; 16],
    daddr: [u8; 16],
    sport: [u8; 2],
    dport: [u8; 2],
}

/// `ip` as the program keeps it.
fn address(ip: IpAddr) -> [u8; 16] {
    if ip.is_unspecified() {
        return [0; 16];
    }
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl Flow {
    /// A datagram from `from` to `to`, of one family.
    pub fn new(from: SocketAddr, to: SocketAddr) -> Flow {
        Flow {
            saddr: address(from.ip()),
            daddr: address(to.ip()),
            sport: from.port().to_be_bytes(),
            dport: to.port().to_be_bytes(),
        }
    }
}

/// `struct offload_link`: learnt by the program from a direction's frames.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    ifindex: u32,
    local_addr: [u8; 16],
    peer_mac: [u8; 6],
    local_mac: [u8; 6],
}

/// One direction of a relay (`struct offload_route`): what the worker
/// seeds, and what the program counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Route {
    lock: u32,
    /// The session's remote source; other SSRCs go to the socket.
    pub ssrc: u32,
    pub out: Flow,
    /// 0: no jitter is computed.
    pub clock_rate: u32,
    /// The other direction's key: its frames tell where this one's go.
    pub reverse: Flow,
    link: Link,
    /// RFC 3550 A.8's J × 16, and its highest.
    pub jitter16: u32,
    pub max_jitter16: u32,
    transit: u32,
    has_transit: u32,
    reserved: u32,
    /// Extended highest sequence number (A.1).
    pub highest: u64,
    /// Forwarded and counted.
    pub packets: u64,
    /// Their UDP payload bytes.
    pub octets: u64,
    /// Their RTP payload bytes.
    pub payload_octets: u64,
    /// When the last was forwarded: `CLOCK_MONOTONIC`, in ns.
    pub last_ns: u64,
}

impl Route {
    /// The route of a channel whose session's reception stands at `seed`,
    /// forwarding as `out`; `reverse` is the other direction's key.
    pub fn new(out: Flow, reverse: Flow, clock_rate: u32, seed: &Reception) -> Route {
        Route {
            ssrc: seed.ssrc,
            out,
            clock_rate,
            reverse,
            highest: seed.highest,
            jitter16: u32::try_from(seed.jitter16).unwrap_or(u32::MAX),
            max_jitter16: u32::try_from(seed.max_jitter16).unwrap_or(u32::MAX),
            ..Route::default()
        }
    }

    /// Where the program's counting stands: the converse of [`Route::new`].
    pub fn reception(&self) -> Reception {
        Reception {
            ssrc: self.ssrc,
            highest: self.highest,
            jitter16: u64::from(self.jitter16),
            max_jitter16: u64::from(self.max_jitter16),
        }
    }

    /// Keeps what the program learnt on `old`, the route this one replaces
    /// for the same datagrams: the other direction goes on being forwarded
    /// without waiting for this one's next frame.
    pub fn keep_learnt(&mut self, old: &Route) {
        self.link = old.link;
    }

    /// Whether the worker installed `self` and `other` alike (the counts
    /// and what the program learnt aside).
    pub fn same_as(&self, other: &Route) -> bool {
        (self.ssrc, self.out, self.clock_rate, self.reverse)
            == (other.ssrc, other.out, other.clock_rate, other.reverse)
    }
}

// The layouts bpf/relay_offload.h asserts too.
const _: () = assert!(size_of::<Route>() == 176);
const _: () = assert!(size_of::<Flow>() == 36);
const _: () = assert!(std::mem::offset_of!(Route, highest) == 136);

/// The loaded program, its routes map and its links.
pub struct Offload {
    object: *mut BpfObject,
    routes: c_int,
    links: Vec<OwnedFd>,
}

// The object is only closed on drop; the map descriptor is used with
// system calls that any thread may make at once.
unsafe impl Send for Offload {}
unsafe impl Sync for Offload {}

fn failed(what: &str, rc: c_int) -> String {
    format!("{what}: {}", io::Error::from_raw_os_error(-rc))
}

impl Offload {
    /// Loads the program and attaches it to every Ethernet and loopback
    /// interface there is now. The error says what failed and why (no
    /// privileges, a kernel without tcx links, built without clang).
    pub fn load() -> Result<Offload, String> {
        if OBJECT.is_empty() {
            return Err("built without clang: the BPF program is missing".into());
        }
        // libbpf prints its own diagnostics on stderr; the errors returned
        // here say what went wrong. Its printer is the process's: the
        // application's (or the default) comes back after the load.
        let previous = unsafe { libbpf_set_print(None) };
        let loaded = Self::open_and_load();
        unsafe { libbpf_set_print(previous) };
        loaded?.attach()
    }

    fn open_and_load() -> Result<Offload, String> {
        let object =
            unsafe { bpf_object__open_mem(OBJECT.as_ptr().cast(), OBJECT.len(), std::ptr::null()) };
        if object.is_null() {
            return Err(format!(
                "opening the BPF object: {}",
                io::Error::last_os_error()
            ));
        }
        // Closed by Drop from here on, whatever fails.
        let offload = Offload {
            object,
            routes: -1,
            links: Vec::new(),
        };
        let rc = unsafe { bpf_object__load(object) };
        if rc < 0 {
            return Err(failed(
                "loading the BPF program (CAP_BPF and CAP_NET_ADMIN, or root, needed)",
                rc,
            ));
        }
        Ok(offload)
    }

    /// Attaches the loaded program to the interfaces.
    fn attach(mut self) -> Result<Offload, String> {
        let prog =
            unsafe { bpf_object__find_program_by_name(self.object, c"relay_offload".as_ptr()) };
        self.routes = unsafe { bpf_object__find_map_fd_by_name(self.object, c"routes".as_ptr()) };
        if prog.is_null() || self.routes < 0 {
            return Err("the BPF object lacks its program or map".into());
        }
        let prog_fd = unsafe { bpf_program__fd(prog) };
        let mut last_error = String::from("no Ethernet or loopback interface");
        for ifindex in interfaces() {
            let fd = unsafe {
                bpf_link_create(prog_fd, ifindex as c_int, TCX_INGRESS, std::ptr::null())
            };
            if fd < 0 {
                last_error = failed(
                    &format!(
                        "attaching to interface {ifindex}'s ingress (tcx links, Linux 6.6 or later)"
                    ),
                    fd,
                );
                continue;
            }
            self.links.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        if self.links.is_empty() {
            return Err(last_error);
        }
        Ok(self)
    }

    /// Interfaces the program is attached to.
    pub fn interfaces(&self) -> usize {
        self.links.len()
    }

    /// Adds or replaces the route of datagrams arriving as `key`.
    pub fn install(&self, key: &Flow, route: &Route) -> io::Result<()> {
        let rc = unsafe {
            bpf_map_update_elem(
                self.routes,
                (key as *const Flow).cast(),
                (route as *const Route).cast(),
                0,
            )
        };
        check(rc)
    }

    /// The route of `key` as it stands, read under its lock.
    pub fn read(&self, key: &Flow) -> io::Result<Option<Route>> {
        self.look_up(key, bpf_map_lookup_elem_flags)
    }

    /// Every route (of every worker) with its key, each read under its
    /// lock, a few hundred per system call, into `keys` and `routes`
    /// (cleared first).
    pub fn read_all(&self, keys: &mut Vec<Flow>, routes: &mut Vec<Route>) -> io::Result<()> {
        keys.clear();
        routes.clear();
        let opts = BatchOpts {
            sz: size_of::<BatchOpts>(),
            elem_flags: BPF_F_LOCK,
            flags: 0,
        };
        // The hash map's cursor is a bucket number, kept by the kernel in
        // the key-sized buffer given back.
        let (mut cursor, mut next) = (Flow::default(), Flow::default());
        let mut first = true;
        loop {
            let at = keys.len();
            keys.resize(at + BATCH, Flow::default());
            routes.resize(at + BATCH, Route::default());
            let mut count = BATCH as u32;
            let rc = unsafe {
                bpf_map_lookup_batch(
                    self.routes,
                    if first {
                        std::ptr::null()
                    } else {
                        (&cursor as *const Flow).cast()
                    },
                    (&mut next as *mut Flow).cast(),
                    keys[at..].as_mut_ptr().cast(),
                    routes[at..].as_mut_ptr().cast(),
                    &mut count,
                    &opts,
                )
            };
            let read = (count as usize).min(BATCH);
            keys.truncate(at + read);
            routes.truncate(at + read);
            match check(rc) {
                Ok(()) => {}
                // The last batch (or an empty map).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            }
            cursor = next;
            first = false;
        }
    }

    /// Takes the route of `key` out, with its last counts: from here on its
    /// datagrams reach the socket.
    pub fn remove(&self, key: &Flow) -> io::Result<Option<Route>> {
        self.look_up(key, bpf_map_lookup_and_delete_elem_flags)
    }

    /// The value of `key` under its lock, by `call` (a lookup, or a lookup
    /// that also deletes): None when there is none.
    fn look_up(&self, key: &Flow, call: LookUp) -> io::Result<Option<Route>> {
        let mut route = Route::default();
        let rc = unsafe {
            call(
                self.routes,
                (key as *const Flow).cast(),
                (&mut route as *mut Route).cast(),
                BPF_F_LOCK,
            )
        };
        match check(rc) {
            Ok(()) => Ok(Some(route)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `struct bpf_map_batch_opts`.
#[repr(C)]
struct BatchOpts {
    sz: usize,
    elem_flags: u64,
    flags: u64,
}

/// Routes read per system call by [`Offload::read_all`].
const BATCH: usize = 256;

/// libbpf's two map lookups, which share this signature.
type LookUp = unsafe extern "C" fn(c_int, *const c_void, *mut c_void, u64) -> c_int;

impl Drop for Offload {
    fn drop(&mut self) {
        // The links first: the program stops seeing datagrams, then goes.
        self.links.clear();
        unsafe { bpf_object__close(self.object) };
    }
}

fn check(rc: c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::from_raw_os_error(-rc))
    } else {
        Ok(())
    }
}

/// The interfaces the program can read: Ethernet and loopback ones, by
/// index (`/sys/class/net/*/type`).
fn interfaces() -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return found;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let read = |name: &str| {
            std::fs::read_to_string(path.join(name))
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        };
        if let (Some(kind), Some(ifindex)) = (read("type"), read("ifindex"))
            && LINK_TYPES.contains(&kind)
        {
            found.push(ifindex);
        }
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4};

    /// What loading the offload gave, or None when a test may go on
    /// without it: only when `RTPSYNTH_REQUIRE_OFFLOAD` (set by `make test`
    /// as root) does not ask for it; then the test fails.
    pub(crate) fn available<T>(loaded: Result<T, String>) -> Option<T> {
        match loaded {
            Ok(o) => Some(o),
            Err(e) if std::env::var_os("RTPSYNTH_REQUIRE_OFFLOAD").is_none() => {
                eprintln!("relay offload not available here, test skipped: {e}");
                None
            }
            Err(e) => panic!("relay offload required but not available: {e}"),
        }
    }

    #[test]
    fn a_route_is_installed_read_and_taken_out_with_its_counts() {
        let Some(offload) = available(Offload::load()) else {
            return;
        };
        assert!(offload.interfaces() >= 1);
        let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000);
        let b = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40002);
        let key = Flow::new(a.into(), b.into());
        assert!(offload.read(&key).unwrap().is_none());
        let route = Route {
            ssrc: 7,
            out: Flow::new(b.into(), a.into()),
            clock_rate: 8000,
            highest: 65_541,
            jitter16: 32,
            ..Route::default()
        };
        offload.install(&key, &route).unwrap();
        let read = offload.read(&key).unwrap().unwrap();
        assert_eq!(
            (read.ssrc, read.out, read.highest, read.jitter16),
            (7, route.out, 65_541, 32)
        );
        let taken = offload.remove(&key).unwrap().unwrap();
        assert_eq!(taken.highest, 65_541);
        assert!(offload.read(&key).unwrap().is_none());
        assert!(offload.remove(&key).unwrap().is_none());
    }

    #[test]
    fn every_route_is_read_in_batches() {
        let Some(offload) = available(Offload::load()) else {
            return;
        };
        let (mut keys, mut routes) = (Vec::new(), Vec::new());
        offload.read_all(&mut keys, &mut routes).unwrap();
        assert!(keys.is_empty() && routes.is_empty());
        // More than one batch's worth.
        let n = BATCH as u16 * 2 + 7;
        let key = |i: u16| {
            Flow::new(
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10_000 + i).into(),
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9).into(),
            )
        };
        for i in 0..n {
            let route = Route {
                ssrc: u32::from(i),
                ..Route::default()
            };
            offload.install(&key(i), &route).unwrap();
        }
        offload.read_all(&mut keys, &mut routes).unwrap();
        assert_eq!(keys.len(), usize::from(n));
        let mut read: Vec<(u32, Flow)> = routes
            .iter()
            .map(|r| r.ssrc)
            .zip(keys.iter().copied())
            .collect();
        read.sort_by_key(|&(ssrc, _)| ssrc);
        let want: Vec<(u32, Flow)> = (0..n).map(|i| (u32::from(i), key(i))).collect();
        assert_eq!(read, want, "each route with its own key");
    }
}
