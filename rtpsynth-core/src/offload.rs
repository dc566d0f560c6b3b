//! Relay offload: the kernel forwards the RTP a channel relays, with no
//! socket, no system call and no worker in the path (the `relay-offload` of
//! `rtpmuxserver`). Two tc programs (bpf/relay_offload.bpf.c, compiled by
//! build.rs and embedded here) sit on every Ethernet and loopback interface
//! (netlink tells of those that come and go): on ingress the one that
//! forwards, on egress the one that learns the way to a peer from what
//! its channel's socket sends it. The worker gives them a route per
//! relaying channel (and one holding the link of each channel relayed to),
//! reads back what they counted and folds that into the channels'
//! statistics and sessions ([`crate::mux`]).
//!
//! The programs are attached through tcx links (Linux 6.6), which the kernel
//! removes when the last descriptor closes: dropping [`Offload`], or the
//! process ending however it ends, leaves nothing behind on an interface.
//! Loading needs `CAP_BPF` and `CAP_NET_ADMIN` (or root).

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::mux::lock;
use crate::session::Reception;

/// The program, or nothing when clang was missing at build time.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/relay_offload.bpf.o"));

/// `BPF_TCX_INGRESS` and `BPF_TCX_EGRESS` (Linux 6.6), which Debian 12's
/// headers predate.
const TCX_INGRESS: u32 = 46;
const TCX_EGRESS: u32 = 47;
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
    fn bpf_map_delete_elem(fd: c_int, key: *const c_void) -> c_int;
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
/// seeds, and the session state the program keeps (its counts are in the
/// channel's slot, [`Counts`]).
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
    /// [`LINK_ONLY`] or 0.
    flags: u32,
    /// Extended highest sequence number (A.1).
    pub highest: u64,
    /// Where the program counts what it forwards ([`Offload::take_slot`]).
    pub slot: u32,
    reserved: u32,
}

/// What the kernel forwarded on a channel's routes (`struct
/// offload_counts`), as [`Offload::counts`] reads it: it only grows while
/// the channel keeps its slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Forwarded (and counted).
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

    /// The route of a channel that forwards nothing and only holds the
    /// link the channels relaying to it forward with.
    pub fn link_only() -> Route {
        Route {
            flags: LINK_ONLY,
            ..Route::default()
        }
    }

    /// Whether it forwards nothing ([`Route::link_only`]).
    pub fn is_link_only(&self) -> bool {
        self.flags & LINK_ONLY != 0
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
        (
            self.ssrc,
            self.out,
            self.clock_rate,
            self.reverse,
            self.flags,
        ) == (
            other.ssrc,
            other.out,
            other.clock_rate,
            other.reverse,
            other.flags,
        )
    }
}

/// `OFFLOAD_LINK_ONLY`.
const LINK_ONLY: u32 = 1;

/// The mapped `counts` array's size.
const COUNTS_BYTES: usize = ROUTES as usize * size_of::<Counts>();

// The layouts bpf/relay_offload.h asserts too.
const _: () = assert!(size_of::<Route>() == 152);
const _: () = assert!(size_of::<Counts>() == 32);
const _: () = assert!(size_of::<Flow>() == 36);
const _: () = assert!(std::mem::offset_of!(Route, highest) == 136);

/// Routes, and count slots (`OFFLOAD_ROUTES`).
const ROUTES: u32 = 65_536;

/// How long a slot given back rests before it serves another channel: a
/// program that looked up a route just before it went may still add to
/// the slot it named (for a few microseconds at most), and that must not
/// land in another channel's counts.
const SLOT_REST: Duration = Duration::from_secs(1);

/// The loaded program, its routes map and its links.
pub struct Offload {
    object: *mut BpfObject,
    routes: c_int,
    /// The program's `counts` array, mapped: `ROUTES` times four u64s.
    counts: *mut u64,
    slots: Mutex<Slots>,
    /// The program's bitmap of the local ports routes are on.
    local_ports: c_int,
    ports: Mutex<Ports>,
    links: Mutex<Links>,
}

/// The count slots: those never used yet start at `fresh`; those given
/// back wait in `resting`, oldest first, for [`SLOT_REST`].
#[derive(Default)]
struct Slots {
    fresh: u32,
    resting: VecDeque<(u32, Instant)>,
}

/// The routes installed (by every worker) and how many are on each local
/// port: a port's bit is set while one is.
#[derive(Default)]
struct Ports {
    keys: HashSet<Flow>,
    routes_on: HashMap<u16, u32>,
}

/// The programs' tcx links, two per interface they are attached to (the
/// forwarding one on ingress, the learning one on egress), and what tells
/// of interfaces coming and going.
struct Links {
    /// The programs' descriptors: ingress, egress.
    programs: [c_int; 2],
    /// The program's map of interfaces that are down, and those in it.
    down: c_int,
    down_now: HashSet<u32>,
    by_ifindex: HashMap<u32, [OwnedFd; 2]>,
    /// A netlink socket subscribed to link changes (`RTMGRP_LINK`), read
    /// without waiting; None when it could not be opened, and then the
    /// interfaces are those there were at load.
    changes: Option<OwnedFd>,
}

// The object is only closed on drop; the map descriptor is used with
// system calls that any thread may make at once.
unsafe impl Send for Offload {}
unsafe impl Sync for Offload {}

fn failed(what: &str, rc: c_int) -> String {
    format!("{what}: {}", io::Error::from_raw_os_error(-rc))
}

impl Offload {
    /// Loads the programs and attaches them to every Ethernet and loopback
    /// interface there is now (and, through [`Offload::follow_interfaces`],
    /// to those that come). The error says what failed and why (no
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
            counts: std::ptr::null_mut(),
            slots: Mutex::default(),
            local_ports: -1,
            ports: Mutex::default(),
            links: Mutex::new(Links {
                programs: [-1; 2],
                down: -1,
                down_now: HashSet::new(),
                by_ifindex: HashMap::new(),
                changes: None,
            }),
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

    /// Attaches the loaded programs to the interfaces there are, and
    /// subscribes to their changes first, so that none comes unseen
    /// between the two.
    fn attach(mut self) -> Result<Offload, String> {
        let program = |name: &std::ffi::CStr| {
            let prog = unsafe { bpf_object__find_program_by_name(self.object, name.as_ptr()) };
            (!prog.is_null()).then(|| unsafe { bpf_program__fd(prog) })
        };
        let programs = [program(c"relay_offload"), program(c"relay_offload_learn")];
        let map = |name: &std::ffi::CStr| unsafe {
            bpf_object__find_map_fd_by_name(self.object, name.as_ptr())
        };
        (self.routes, self.local_ports) = (map(c"routes"), map(c"local_ports"));
        let (counts, down) = (map(c"counts"), map(c"down"));
        let ([Some(ingress), Some(egress)], true) = (
            programs,
            self.routes >= 0 && self.local_ports >= 0 && counts >= 0 && down >= 0,
        ) else {
            return Err("the BPF object lacks its programs or maps".into());
        };
        let mapped = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                COUNTS_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                counts,
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(format!(
                "mapping the offload's counts: {}",
                io::Error::last_os_error()
            ));
        }
        self.counts = mapped.cast();
        let links = self.links.get_mut().unwrap_or_else(PoisonError::into_inner);
        (links.programs, links.down) = ([ingress, egress], down);
        links.changes = netlink_socket(libc::RTMGRP_LINK as u32).ok();
        let mut last_error = String::from("no Ethernet or loopback interface");
        let listed = interfaces().map_err(|e| format!("listing the interfaces: {e}"))?;
        for change in listed {
            if let Err(e) = links.apply(change) {
                last_error = e;
            }
        }
        if links.by_ifindex.is_empty() {
            return Err(last_error);
        }
        Ok(self)
    }

    /// Attaches the programs to the Ethernet and loopback interfaces that
    /// appeared since the last call (a container's veth, a VPN's tap, a
    /// card brought in), and lets go of those that went. Cheap when
    /// nothing changed (one system call); a worker calls it every
    /// offload round, and when another is at it, it returns at once. An
    /// interface they cannot be attached to (the process gave up
    /// `CAP_NET_ADMIN` since it loaded) has its relayed packets taken by
    /// the workers, as without offload.
    pub fn follow_interfaces(&self) {
        if let Ok(mut links) = self.links.try_lock() {
            links.follow();
        }
    }

    /// Adds or replaces the route of datagrams arriving as `key`.
    pub fn install(&self, key: &Flow, route: &Route) -> io::Result<()> {
        let mut ports = lock(&self.ports);
        // The port first: the program looks for routes on it from then on.
        let port = u16::from_be_bytes(key.dport);
        let new = !ports.keys.contains(key);
        if new {
            let count = ports.routes_on.entry(port).or_default();
            *count += 1;
            if *count == 1
                && let Err(e) = self.mark_port(port, true)
            {
                ports.routes_on.remove(&port);
                return Err(e);
            }
        }
        let rc = unsafe {
            bpf_map_update_elem(
                self.routes,
                (key as *const Flow).cast(),
                (route as *const Route).cast(),
                0,
            )
        };
        if let Err(e) = check(rc) {
            if new {
                self.port_unused(&mut ports, port);
            }
            return Err(e);
        }
        ports.keys.insert(*key);
        Ok(())
    }

    /// A count slot for a channel's routes, all zero; None when every one
    /// is in use or resting (the channel's relay stays with the worker).
    pub fn take_slot(&self) -> Option<u32> {
        let mut slots = lock(&self.slots);
        let slot = match slots.resting.front() {
            Some(&(slot, since)) if since.elapsed() >= SLOT_REST => {
                slots.resting.pop_front();
                slot
            }
            _ if slots.fresh < ROUTES => {
                slots.fresh += 1;
                slots.fresh - 1
            }
            _ => return None,
        };
        for field in self.count_fields(slot) {
            field.store(0, Ordering::Relaxed);
        }
        Some(slot)
    }

    /// Gives back a slot whose channel has no route any more.
    pub fn give_back(&self, slot: u32) {
        lock(&self.slots).resting.push_back((slot, Instant::now()));
    }

    /// What the kernel counted in `slot` so far.
    pub fn counts(&self, slot: u32) -> Counts {
        let [packets, octets, payload_octets, last_ns] =
            self.count_fields(slot).map(|f| f.load(Ordering::Relaxed));
        Counts {
            packets,
            octets,
            payload_octets,
            last_ns,
        }
    }

    /// The four u64s of `slot` in the mapped array, which the program adds
    /// to atomically.
    fn count_fields(&self, slot: u32) -> [&AtomicU64; 4] {
        assert!(slot < ROUTES, "slot {slot} of {ROUTES}");
        let at = slot as usize * 4;
        // SAFETY: the mapping holds ROUTES slots of four aligned u64s and
        // lives as long as `self`; the kernel and user space only ever
        // access them atomically (or with aligned 8-byte stores).
        std::array::from_fn(|i| unsafe { AtomicU64::from_ptr(self.counts.add(at + i)) })
    }

    /// One route fewer on `port`: its bit goes with the last.
    fn port_unused(&self, ports: &mut Ports, port: u16) {
        if let Some(count) = ports.routes_on.get_mut(&port) {
            *count -= 1;
            if *count == 0 {
                ports.routes_on.remove(&port);
                // Were it left set, datagrams to the port would only be
                // looked up in vain.
                let _ = self.mark_port(port, false);
            }
        }
    }

    /// Sets or clears `port`'s bit in the program's bitmap (the caller
    /// holds `ports`, so no other thread changes the word meanwhile).
    fn mark_port(&self, port: u16, on: bool) -> io::Result<()> {
        let word = u32::from(port / 64);
        let mut bits = 0u64;
        let key = (&word as *const u32).cast();
        check(unsafe {
            bpf_map_lookup_elem_flags(self.local_ports, key, (&mut bits as *mut u64).cast(), 0)
        })?;
        let bit = 1u64 << (port % 64);
        bits = if on { bits | bit } else { bits & !bit };
        check(unsafe {
            bpf_map_update_elem(self.local_ports, key, (&bits as *const u64).cast(), 0)
        })
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
        let mut ports = lock(&self.ports);
        let taken = self.look_up(key, bpf_map_lookup_and_delete_elem_flags)?;
        if ports.keys.remove(key) {
            self.port_unused(&mut ports, u16::from_be_bytes(key.dport));
        }
        Ok(taken)
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
        lock(&self.links).by_ifindex.clear();
        if !self.counts.is_null() {
            unsafe { libc::munmap(self.counts.cast(), COUNTS_BYTES) };
        }
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

impl Links {
    /// Attaches both programs to interface `ifindex`, or neither.
    fn attach(&mut self, ifindex: u32) -> Result<(), String> {
        if self.by_ifindex.contains_key(&ifindex) {
            return Ok(());
        }
        let link = |program: c_int, hook: u32| {
            let fd = unsafe { bpf_link_create(program, ifindex as c_int, hook, std::ptr::null()) };
            if fd < 0 {
                return Err(failed(
                    &format!("attaching to interface {ifindex} (tcx links, Linux 6.6 or later)"),
                    fd,
                ));
            }
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let ingress = link(self.programs[0], TCX_INGRESS)?;
        let egress = link(self.programs[1], TCX_EGRESS)?;
        self.by_ifindex.insert(ifindex, [ingress, egress]);
        Ok(())
    }

    /// Reads what the kernel told of interfaces since the last call, and
    /// attaches or lets go accordingly; when it had more to tell than the
    /// socket held, looks at every interface again.
    fn follow(&mut self) {
        let Some(socket) = self.changes.take() else {
            return;
        };
        let mut buf = NetlinkBuffer([0; 8192]);
        let mut rescan = false;
        loop {
            match receive(&socket, &mut buf, libc::MSG_DONTWAIT) {
                Ok(n) => {
                    for change in link_changes(&buf.0[..n]) {
                        // Not attached now: its datagrams go to the
                        // sockets, as without offload.
                        let _ = self.apply(change);
                    }
                }
                // Some changes were lost: what there is now says all.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => rescan = true,
                Err(_) => break,
            }
        }
        self.changes = Some(socket);
        if rescan && let Ok(now) = interfaces() {
            let there = |ifindex: &u32| {
                now.iter()
                    .any(|c| matches!(c, LinkChange::New { ifindex: i, .. } if i == ifindex))
            };
            let gone: Vec<u32> = (self.by_ifindex.keys().chain(&self.down_now))
                .copied()
                .filter(|i| !there(i))
                .collect();
            for ifindex in gone {
                let _ = self.apply(LinkChange::Gone { ifindex });
            }
            for change in now {
                let _ = self.apply(change);
            }
        }
    }

    /// Attaches to an interface of a type the programs read, and tells
    /// them whether it is up; lets go of one that went.
    fn apply(&mut self, change: LinkChange) -> Result<(), String> {
        match change {
            LinkChange::New { ifindex, kind, up } if LINK_TYPES.contains(&kind) => {
                self.mark_down(ifindex, !up);
                self.attach(ifindex)
            }
            LinkChange::Gone { ifindex } => {
                self.by_ifindex.remove(&ifindex);
                self.mark_down(ifindex, false);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Puts interface `ifindex` in the programs' `down` map, or takes it
    /// out. A failed update leaves it as it was: at worst a frame
    /// redirected to an interface that is down, as before this map.
    fn mark_down(&mut self, ifindex: u32, down: bool) {
        if down == self.down_now.contains(&ifindex) {
            return;
        }
        let key = (&ifindex as *const u32).cast();
        let rc = if down {
            unsafe { bpf_map_update_elem(self.down, key, (&1u8 as *const u8).cast(), 0) }
        } else {
            unsafe { bpf_map_delete_elem(self.down, key) }
        };
        if rc == 0 {
            if down {
                self.down_now.insert(ifindex);
            } else {
                self.down_now.remove(&ifindex);
            }
        }
    }
}

/// Netlink messages are aligned to 4 bytes.
#[repr(align(4))]
struct NetlinkBuffer([u8; 8192]);

/// A netlink route socket of this thread's network namespace, subscribed
/// to `groups` (`RTMGRP_LINK`: every interface added, changed or
/// removed).
fn netlink_socket(groups: u32) -> io::Result<OwnedFd> {
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// One datagram of netlink messages from `socket` into `buf`, its length;
/// `flags` as `recv`'s.
fn receive(socket: &OwnedFd, buf: &mut NetlinkBuffer, flags: c_int) -> io::Result<usize> {
    loop {
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.0.as_mut_ptr().cast(),
                buf.0.len(),
                flags,
            )
        };
        match usize::try_from(n) {
            // The kernel sends no empty datagram: were one read, the
            // reader would wait for what never comes.
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n.min(buf.0.len())),
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EINTR) {
                    return Err(e);
                }
            }
        }
    }
}

/// What one netlink message says of an interface.
#[derive(Debug, PartialEq, Eq)]
enum LinkChange {
    /// Added or changed; `kind` is its `ARPHRD_*` type, `up` whether it
    /// is up with a carrier (`IFF_UP` and `IFF_RUNNING`).
    New {
        ifindex: u32,
        kind: u32,
        up: bool,
    },
    Gone {
        ifindex: u32,
    },
    /// The end of a dump (`NLMSG_DONE`, `error` 0), or its failure
    /// (`NLMSG_ERROR`, a negative errno).
    End {
        error: i32,
    },
}

/// The interface changes in `bytes`, a datagram of netlink messages
/// (`nlmsghdr`, then for `RTM_NEWLINK` and `RTM_DELLINK` an
/// `ifinfomsg`, and the end of a dump); other messages and a truncated
/// tail are passed over.
fn link_changes(bytes: &[u8]) -> Vec<LinkChange> {
    const HEADER: usize = 16;
    let u16_at = |b: &[u8], at: usize| u16::from_ne_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut changes = Vec::new();
    let mut rest = bytes;
    while rest.len() >= HEADER {
        let len = u32_at(rest, 0) as usize;
        if len < HEADER || len > rest.len() {
            break;
        }
        let (message, body) = (&rest[..len], &rest[HEADER..len]);
        // ifi_family, pad, ifi_type (u16), ifi_index (i32), ...
        let ifindex = (body.len() >= 8).then(|| u32_at(body, 4));
        match (i32::from(u16_at(message, 4)), ifindex) {
            (libc::NLMSG_DONE | libc::NLMSG_ERROR, _) => changes.push(LinkChange::End {
                error: if body.len() >= 4 {
                    u32_at(body, 0) as i32
                } else {
                    0
                },
            }),
            (kind, Some(ifindex)) if kind == i32::from(libc::RTM_NEWLINK) && body.len() >= 12 => {
                let up = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
                changes.push(LinkChange::New {
                    ifindex,
                    kind: u32::from(u16_at(body, 2)),
                    up: u32_at(body, 8) & up == up,
                })
            }
            (kind, Some(ifindex)) if kind == i32::from(libc::RTM_DELLINK) => {
                changes.push(LinkChange::Gone { ifindex })
            }
            _ => {}
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    changes
}

/// The interfaces the program can read (Ethernet and loopback ones), as
/// netlink lists them for this thread's network namespace
/// (`/sys/class/net` may be another namespace's).
fn interfaces() -> io::Result<Vec<LinkChange>> {
    let socket = netlink_socket(0)?;
    // An `nlmsghdr` asking for every link, and an empty `ifinfomsg`.
    let mut request = [0u8; 32];
    request[0..4].copy_from_slice(&32u32.to_ne_bytes());
    request[4..6].copy_from_slice(&libc::RTM_GETLINK.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    request[6..8].copy_from_slice(&flags.to_ne_bytes());
    let sent = unsafe { libc::send(socket.as_raw_fd(), request.as_ptr().cast(), 32, 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = Vec::new();
    let mut buf = NetlinkBuffer([0; 8192]);
    loop {
        let n = receive(&socket, &mut buf, 0)?;
        for change in link_changes(&buf.0[..n]) {
            match change {
                LinkChange::New { kind, .. } if LINK_TYPES.contains(&kind) => found.push(change),
                LinkChange::End { error: 0 } => return Ok(found),
                LinkChange::End { error } => return Err(io::Error::from_raw_os_error(-error)),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::time::Duration;

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

    /// Runs `test` on a thread in a network namespace of its own, with
    /// only its loopback up: the interfaces and addresses a test makes
    /// there (and the threads it starts, which inherit it) leave the
    /// machine's own untouched, and go with it. Needs root, as the
    /// offload does: skipped without, unless the offload is required
    /// ([`available`]).
    pub(crate) fn isolated(test: impl FnOnce() + Send + 'static) {
        let outcome = std::thread::spawn(move || {
            // SAFETY: a plain system call; it moves only this thread.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            let made = if rc == 0 {
                ip(&["link", "set", "lo", "up"])
            } else {
                Err(format!(
                    "a network namespace: {}",
                    io::Error::last_os_error()
                ))
            };
            if available(made).is_some() {
                test();
            }
        })
        .join();
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// An endpoint in a network namespace of its own, behind a veth pair
    /// whose other end is in the caller's (an [`isolated`] one), at
    /// 10.213.`subnet`.2 (the caller's end .1): its datagrams cross a real
    /// interface with MACs, not loopback. Made with `ip` (iproute2).
    /// Removed on drop.
    pub(crate) struct Behind {
        netns: String,
        host_if: String,
        subnet: u8,
    }

    fn ip(args: &[&str]) -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("ip {args:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    impl Behind {
        /// `tag` tells this test's apart from others' (one letter).
        pub(crate) fn new(tag: &str, subnet: u8) -> Result<Behind, String> {
            let id = std::process::id() % 100_000;
            let behind = Behind {
                netns: format!("rtps{id}{tag}"),
                host_if: format!("rtps{id}{tag}"),
                subnet,
            };
            ip(&["netns", "add", &behind.netns])?;
            behind.plug()?;
            let ns = |args: &[&str]| ip(&[&["-n", &behind.netns], args].concat());
            ns(&["link", "set", "lo", "up"])?;
            ns(&["route", "add", "default", "via", &behind.host().to_string()])?;
            Ok(behind)
        }

        /// The veth pair, up, with the addresses.
        fn plug(&self) -> Result<(), String> {
            let (host_if, netns) = (&self.host_if, &self.netns);
            ip(&[
                "link", "add", host_if, "type", "veth", "peer", "name", "e0", "netns", netns,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", self.host()),
                "dev",
                host_if,
            ])?;
            ip(&["link", "set", host_if, "up"])?;
            let ns = |args: &[&str]| ip(&[&["-n", netns], args].concat());
            ns(&["addr", "add", &format!("{}/24", self.peer()), "dev", "e0"])?;
            ns(&["link", "set", "e0", "up"])
        }

        /// Takes the veth pair away and makes it again, with the same
        /// addresses but another index and other MACs, as a container's
        /// or a VPN's interface comes back.
        pub(crate) fn replug(&self) {
            ip(&["link", "del", &self.host_if]).unwrap();
            self.plug().unwrap();
        }

        /// Takes our end down, or brings it up again.
        pub(crate) fn set_up(&self, up: bool) {
            let state = if up { "up" } else { "down" };
            ip(&["link", "set", &self.host_if, state]).unwrap();
        }

        /// Sets both ends' MTU.
        pub(crate) fn set_mtu(&self, mtu: u32) {
            let mtu = mtu.to_string();
            ip(&["link", "set", &self.host_if, "mtu", &mtu]).unwrap();
            ip(&["-n", &self.netns, "link", "set", "e0", "mtu", &mtu]).unwrap();
        }

        /// Our end's address.
        pub(crate) fn host(&self) -> Ipv4Addr {
            Ipv4Addr::new(10, 213, self.subnet, 1)
        }

        fn peer(&self) -> Ipv4Addr {
            Ipv4Addr::new(10, 213, self.subnet, 2)
        }

        /// Our end's interface index.
        pub(crate) fn ifindex(&self) -> u32 {
            let name = std::ffi::CString::new(self.host_if.as_str()).unwrap();
            // SAFETY: a NUL-terminated name, read only.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            assert_ne!(ifindex, 0, "{}", io::Error::last_os_error());
            ifindex
        }

        /// A socket of the endpoint, in its namespace (a socket stays in
        /// the one it was made in; the thread that makes it moves there).
        pub(crate) fn socket(&self) -> UdpSocket {
            let (netns, peer) = (self.netns.clone(), self.peer());
            std::thread::spawn(move || {
                let ns = std::fs::File::open(format!("/var/run/netns/{netns}")).unwrap();
                // SAFETY: a plain system call on a descriptor we hold.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
                UdpSocket::bind((peer, 0)).unwrap()
            })
            .join()
            .unwrap()
        }
    }

    impl Drop for Behind {
        fn drop(&mut self) {
            let _ = ip(&["link", "del", &self.host_if]);
            let _ = ip(&["netns", "del", &self.netns]);
        }
    }

    #[test]
    fn link_changes_are_read_from_netlink_messages() {
        let message = |kind: u16, ifi_type: u16, ifindex: u32, len: u32| {
            let mut m = Vec::new();
            m.extend_from_slice(&len.to_ne_bytes());
            m.extend_from_slice(&kind.to_ne_bytes());
            m.extend_from_slice(&[0; 10]);
            m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
            m.extend_from_slice(&ifi_type.to_ne_bytes());
            m.extend_from_slice(&ifindex.to_ne_bytes());
            m.extend_from_slice(&[0; 8]);
            m.resize(len as usize, 0);
            m
        };
        let bytes = [
            {
                // Up, with a carrier (ifi_flags).
                let mut up = message(libc::RTM_NEWLINK, 1, 17, 32);
                let flags = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
                up[24..28].copy_from_slice(&flags.to_ne_bytes());
                up
            },
            // An address: not an interface.
            message(libc::RTM_NEWADDR, 1, 17, 32),
            // Attributes after the header, and a length not a multiple
            // of four: the next message starts at the next multiple.
            message(libc::RTM_NEWLINK, 65534, 18, 42),
            vec![0; 2],
            message(libc::RTM_DELLINK, 1, 17, 32),
            // A dump's end, and a failure: an error code after the header.
            message(libc::NLMSG_DONE as u16, 0, 0, 20),
            [
                &message(libc::NLMSG_ERROR as u16, 0, 0, 20)[..16],
                &(-libc::EPERM).to_ne_bytes(),
            ]
            .concat(),
            // Cut short: passed over.
            message(libc::RTM_DELLINK, 1, 19, 32)[..20].to_vec(),
        ]
        .concat();
        assert_eq!(
            link_changes(&bytes),
            [
                LinkChange::New {
                    ifindex: 17,
                    kind: 1,
                    up: true
                },
                LinkChange::New {
                    ifindex: 18,
                    kind: 65534,
                    up: false
                },
                LinkChange::Gone { ifindex: 17 },
                LinkChange::End { error: 0 },
                LinkChange::End {
                    error: -libc::EPERM
                },
            ]
        );
        assert!(link_changes(&message(libc::RTM_NEWLINK, 1, 1, 8)).is_empty());
    }

    /// Interfaces made after the program loaded get it too, and those
    /// removed are let go.
    #[test]
    fn the_program_follows_interfaces_that_come_and_go() {
        isolated(follows_interfaces);
    }

    fn follows_interfaces() {
        let Some(offload) = available(Offload::load()) else {
            return;
        };
        assert_eq!(offload.interfaces().len(), 1, "the namespace's loopback");
        let behind = Behind::new("f", 9).unwrap();
        let ifindex = behind.ifindex();
        let follows = |attached: bool| {
            (0..500).any(|_| {
                offload.follow_interfaces();
                std::thread::sleep(Duration::from_millis(10));
                offload.interfaces().contains(&ifindex) == attached
            })
        };
        assert!(follows(true), "{ifindex} in {:?}", offload.interfaces());
        drop(behind);
        assert!(follows(false), "{ifindex} in {:?}", offload.interfaces());
        assert_eq!(offload.interfaces().len(), 1, "the loopback stays");
    }

    #[test]
    fn a_route_is_installed_read_and_taken_out_with_its_counts() {
        let Some(offload) = available(Offload::load()) else {
            return;
        };
        assert!(!offload.interfaces().is_empty());
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

    impl Offload {
        /// Interfaces the programs are attached to, by index.
        fn interfaces(&self) -> Vec<u32> {
            let mut found: Vec<u32> = lock(&self.links).by_ifindex.keys().copied().collect();
            found.sort_unstable();
            found
        }

        /// Whether the program looks for routes on `port`.
        fn port_marked(&self, port: u16) -> bool {
            let (word, mut bits) = (u32::from(port / 64), 0u64);
            let rc = unsafe {
                bpf_map_lookup_elem_flags(
                    self.local_ports,
                    (&word as *const u32).cast(),
                    (&mut bits as *mut u64).cast(),
                    0,
                )
            };
            check(rc).unwrap();
            bits >> (port % 64) & 1 == 1
        }
    }

    /// A slot given back serves no other channel before it rested (a
    /// program may still add to it), and comes back zeroed.
    #[test]
    fn count_slots_rest_before_they_serve_again() {
        let Some(offload) = available(Offload::load()) else {
            return;
        };
        let taken: Vec<u32> = std::iter::from_fn(|| offload.take_slot()).collect();
        assert_eq!(taken, (0..ROUTES).collect::<Vec<_>>());
        offload.count_fields(7)[0].store(5, Ordering::Relaxed);
        assert_eq!(offload.counts(7).packets, 5);
        offload.give_back(7);
        assert_eq!(offload.take_slot(), None, "resting");
        std::thread::sleep(SLOT_REST);
        assert_eq!(offload.take_slot(), Some(7));
        assert_eq!(offload.counts(7), Counts::default());
    }

    /// The program looks up routes only for datagrams to a port some
    /// route is on: marked with the first, cleared with the last.
    #[test]
    fn a_port_is_marked_while_routes_are_on_it() {
        let Some(offload) = available(Offload::load()) else {
            return;
        };
        let key = |from: u16, to: u16| {
            Flow::new(
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, from).into(),
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, to).into(),
            )
        };
        let (a, b, c) = (key(5000, 40_000), key(5002, 40_000), key(5000, 40_001));
        for k in [a, b, c] {
            offload.install(&k, &Route::default()).unwrap();
        }
        // Installed again (a route seeded anew): still one of two.
        offload.install(&a, &Route::default()).unwrap();
        assert!(offload.port_marked(40_000) && offload.port_marked(40_001));
        assert!(!offload.port_marked(40_002) && !offload.port_marked(39_999));
        offload.remove(&a).unwrap().unwrap();
        assert!(offload.port_marked(40_000), "b is on it");
        offload.remove(&b).unwrap().unwrap();
        assert!(!offload.port_marked(40_000));
        assert!(offload.remove(&b).unwrap().is_none());
        assert!(
            offload.port_marked(40_001),
            "the same word's other bit, kept"
        );
        offload.remove(&c).unwrap().unwrap();
        assert!(!offload.port_marked(40_001));
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
