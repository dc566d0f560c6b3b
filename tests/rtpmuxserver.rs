//! rtpmuxserver in real pipelines over loopback UDP.

mod common;

use common::{Pipe, by_name, pipeline};

use std::net::{SocketAddr, UdpSocket};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_net::gio;
use rtpsynth_core::rtp::{Extras, Header, write_packet};
use rtpsynth_core::session::SessionStats;

const TIMEOUT: Duration = Duration::from_secs(5);
const GST_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(5);

/// The leak test counts the process's fds and threads, so it runs alone;
/// every other test shares this lock for reading.
static SERIAL: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    common::init();
    SERIAL.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    common::init();
    SERIAL.write().unwrap_or_else(|e| e.into_inner())
}

/// A 172-byte PCMU packet (12-byte header, 160 bytes of payload).
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut out = vec![0; 172];
    let header = Header {
        marker: seq == 0,
        payload_type: 0,
        seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
    };
    let payload: Vec<u8> = (0..160).map(|i| (i as u16 + seq) as u8).collect();
    let n = write_packet(&mut out, &header, &Extras::default(), &payload).unwrap();
    assert_eq!(n, 172);
    out
}

fn set_state(p: &gst::Pipeline, state: gst::State) {
    p.set_state(state).unwrap();
    // Live: sinks only complete PLAYING with their first buffer, so only
    // the lower states are waited for.
    if state != gst::State::Playing {
        let (res, _, _) = p.state(GST_TIMEOUT);
        res.unwrap();
    }
}

/// Sets `pad::property` through the element's GstChildProxy, as gst-launch does.
fn set_child<V: ToValue>(m: &gst::Element, name: &str, value: V) {
    m.dynamic_cast_ref::<gst::ChildProxy>()
        .unwrap()
        .set_child_property(name, value.to_value());
}

fn local_port(m: &gst::Element, pad: &str) -> u16 {
    let port: u32 = m.static_pad(pad).unwrap().property("local-port");
    assert_ne!(port, 0, "{pad} has no socket");
    port as u16
}

/// Where a peer on loopback reaches the channel of `pad`.
fn loopback_addr(m: &gst::Element, pad: &str) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), local_port(m, pad))
}

fn push(src: &gst_app::AppSrc, data: &[u8]) {
    src.push_buffer(gst::Buffer::from_slice(data.to_vec()))
        .unwrap();
}

fn pull(sink: &gst_app::AppSink) -> (Vec<u8>, SocketAddr, Option<gst::ClockTime>) {
    let sample = sink
        .try_pull_sample(GST_TIMEOUT)
        .expect("a packet arrives in time");
    let buffer = sample.buffer().unwrap();
    let meta = buffer
        .meta::<gst_net::NetAddressMeta>()
        .expect("received buffers carry the sender address");
    let from: SocketAddr = meta
        .addr()
        .downcast::<gio::InetSocketAddress>()
        .unwrap()
        .into();
    (buffer.map_readable().unwrap().to_vec(), from, buffer.pts())
}

fn stats(m: &gst::Element) -> gst::Structure {
    m.property::<gst::Structure>("stats")
}

fn field(s: &gst::Structure, name: &str) -> u64 {
    s.get::<u64>(name)
        .unwrap_or_else(|e| panic!("{name}: {e} in {s}"))
}

/// `names` with their values in `s`, in order.
fn fields(s: &gst::Structure, names: &[&'static str]) -> Vec<(&'static str, u64)> {
    names.iter().map(|&name| (name, field(s, name))).collect()
}

fn channel(m: &gst::Element, index: u32) -> gst::Structure {
    channel_in(&stats(m), index)
}

/// Channel `index`'s structure in an element's `stats`.
fn channel_in(s: &gst::Structure, index: u32) -> gst::Structure {
    s.get::<gst::Structure>(format!("channel-{index}").as_str())
        .unwrap()
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    assert!(came_in_time(f), "timed out waiting for {what}");
}

/// Whether `f` became true before [`TIMEOUT`].
fn came_in_time(mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + TIMEOUT;
    while !f() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn error_messages(p: &gst::Pipeline) -> Vec<String> {
    let bus = p.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Error]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        })
        .collect()
}

fn warning_messages(p: &gst::Pipeline) -> Vec<String> {
    let bus = p.bus().unwrap();
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning]))
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

fn localhost(v6: bool) -> &'static str {
    if v6 { "::1" } else { "127.0.0.1" }
}

/// Packets go out on `a`'s channel 0, arrive on `b`'s channel `bi`, which
/// echoes them back (it latched onto the sender) to `a`'s `src_0`.
fn echo(v6: bool, two_elements: bool) {
    let _g = shared();
    let (bname, bi) = if two_elements { ("b", 0) } else { ("a", 1) };
    let mut desc = String::from(
        "appsrc name=in is-live=true format=time caps=application/x-rtp ! a.sink_0 \
         rtpmuxserver name=a a.src_0 ! appsink name=out sync=false ",
    );
    if two_elements {
        desc.push_str("rtpmuxserver name=b ");
    }
    desc.push_str(&format!(
        "{bname}.src_{bi} ! queue leaky=downstream ! {bname}.sink_{bi}"
    ));
    let p = pipeline(&desc);
    let a: gst::Element = by_name(&p, "a");
    let b: gst::Element = by_name(&p, bname);
    let host = localhost(v6);
    set_child(&a, "sink_0::bind-address", host);
    set_child(&b, &format!("src_{bi}::bind-address"), host);
    set_state(&p, gst::State::Paused);
    let a_port = local_port(&a, "src_0");
    let b_port = local_port(&b, &format!("sink_{bi}"));
    // Both pads of a channel show the same channel.
    assert_eq!(a_port, local_port(&a, "sink_0"));
    set_child(&a, "sink_0::remote-address", host);
    set_child(&a, "src_0::remote-port", u32::from(b_port));
    set_state(&p, gst::State::Playing);

    let src: gst_app::AppSrc = by_name(&p, "in");
    let sink: gst_app::AppSink = by_name(&p, "out");
    let n = 50u16;
    for seq in 0..n {
        push(&src, &rtp(seq, 0xfeed));
    }
    let b_addr = SocketAddr::new(host.parse().unwrap(), b_port);
    let mut last_pts = None;
    for seq in 0..n {
        let (data, from, pts) = pull(&sink);
        assert_eq!(data, rtp(seq, 0xfeed), "packet {seq} intact and in order");
        assert_eq!(from, b_addr);
        assert!(
            pts.is_some() && pts >= last_pts,
            "PTS is the arrival running time"
        );
        last_pts = pts;
    }
    let caps = sink.sink_pads()[0].current_caps().unwrap();
    assert_eq!(caps.structure(0).unwrap().name(), "application/x-rtp");

    // A packet is counted once its syscall returns, which can be after the
    // peer (or appsink) already has it.
    wait_until("the counters", || {
        field(&channel(&a, 0), "packets-received") == u64::from(n)
            && field(&channel(&b, bi), "packets-sent") == u64::from(n)
    });
    let a0 = channel(&a, 0);
    let b1 = channel(&b, bi);
    let n = u64::from(n);
    for (s, name) in [
        (&a0, "packets-sent"),
        (&a0, "packets-received"),
        (&b1, "packets-sent"),
        (&b1, "packets-received"),
    ] {
        assert_eq!(field(s, name), n, "{name} in {s}");
    }
    assert_eq!(field(&a0, "octets-sent"), 172 * n);
    assert_eq!(field(&b1, "octets-received"), 172 * n);
    assert_eq!(field(&b1, "latched"), 1);
    assert_eq!(field(&a0, "latched"), 0);
    assert_eq!(field(&b1, "local-port"), u64::from(b_port));
    assert_eq!(field(&a0, "local-port"), u64::from(a_port));
    for name in [
        "dropped-queue-full",
        "dropped-foreign-source",
        "dropped-not-rtp",
        "dropped-kernel",
        "send-errors",
    ] {
        assert_eq!(field(&a0, name), 0, "{name}");
        assert_eq!(field(&b1, name), 0, "{name}");
    }
    // With one element, its totals count both channels. A push is counted
    // when it returns, which can be after the packet reached appsink.
    let channels = if two_elements { 1 } else { 2 };
    wait_until("every push counted", || {
        field(&stats(&b), "packets-pushed") == n * channels
    });
    let total = stats(&b);
    assert_eq!(field(&total, "channels"), channels);
    assert_eq!(field(&total, "packets-sent"), n * channels);
    assert_eq!(field(&total, "dropped-downstream"), 0);
    set_state(&p, gst::State::Null);
    assert!(error_messages(&p).is_empty());
}

#[test]
fn echo_two_channels_one_element_ipv4() {
    echo(false, false);
}

#[test]
fn echo_two_channels_one_element_ipv6() {
    echo(true, false);
}

#[test]
fn echo_between_two_elements_ipv4() {
    echo(false, true);
}

#[test]
fn echo_between_two_elements_ipv6() {
    echo(true, true);
}

/// A channel whose src_0 loops into its sink_0, bound to 127.0.0.1.
/// `props` are more properties of the element, `links` more branches.
fn reflector(props: &str, links: &str) -> (Pipe, gst::Element, SocketAddr) {
    let p = pipeline(&format!(
        "rtpmuxserver name=m src_0::bind-address=127.0.0.1 {props} \
         m.src_0 ! tee name=t ! queue leaky=downstream ! m.sink_0 \
         t. ! queue ! appsink name=out sync=false {links}"
    ));
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let addr = loopback_addr(&m, "src_0");
    (p, m, addr)
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// An appsrc into sink_0 of a playing element whose channel sends to a
/// new peer socket; `props` are more properties of the element.
fn sender(props: &str) -> (Pipe, gst::Element, gst_app::AppSrc, UdpSocket) {
    let sink_peer = peer();
    let port = sink_peer.local_addr().unwrap().port();
    let p = pipeline(&format!(
        "appsrc name=in format=time caps=application/x-rtp ! m.sink_0 \
         rtpmuxserver name=m {props} sink_0::remote-address=127.0.0.1 \
         sink_0::remote-port={port}"
    ));
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let src: gst_app::AppSrc = by_name(&p, "in");
    (p, m, src, sink_peer)
}

#[test]
fn latching_answers_the_first_sender() {
    let _g = shared();
    let (p, m, addr) = reflector("", "");
    let peer = peer();
    let mut buf = [0u8; 2048];
    for seq in 0..10 {
        peer.send_to(&rtp(seq, 7), addr).unwrap();
        let (n, from) = peer
            .recv_from(&mut buf)
            .expect("the latched channel answers");
        assert_eq!((&buf[..n], from), (&rtp(seq, 7)[..], addr));
    }
    wait_until("10 sent", || field(&channel(&m, 0), "packets-sent") == 10);
    assert_eq!(field(&channel(&m, 0), "latched"), 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn without_latch_nothing_is_sent_and_it_is_counted() {
    let _g = shared();
    let (p, m, addr) = reflector("sink_0::latch=false", "");
    let peer = peer();
    for seq in 0..10 {
        peer.send_to(&rtp(seq, 7), addr).unwrap();
    }
    wait_until("10 send errors", || {
        field(&channel(&m, 0), "send-errors") == 10
    });
    let mut buf = [0u8; 2048];
    assert!(peer.recv_from(&mut buf).is_err(), "no target, nothing sent");
    let c = channel(&m, 0);
    assert_eq!(field(&c, "latched"), 0);
    assert_eq!(field(&c, "packets-received"), 10);
    assert_eq!(field(&c, "packets-sent"), 0);
    set_state(&p, gst::State::Null);
}

#[test]
fn source_filter_drops_foreign_packets_and_not_rtp() {
    let _g = shared();
    let target = peer();
    let stranger = peer();
    let port = target.local_addr().unwrap().port();
    let (p, m, addr) = reflector(
        &format!(
            "src_0::source-filter=true src_0::remote-address=127.0.0.1 src_0::remote-port={port}"
        ),
        "",
    );
    let sink: gst_app::AppSink = by_name(&p, "out");
    stranger.send_to(&rtp(1, 1), addr).unwrap();
    target.send_to(&rtp(2, 2), addr).unwrap();
    stranger.send_to(&rtp(3, 1), addr).unwrap();
    target.send_to(b"not rtp", addr).unwrap();
    target.send_to(&rtp(4, 2), addr).unwrap();
    assert_eq!(pull(&sink).0, rtp(2, 2));
    assert_eq!(pull(&sink).0, rtp(4, 2));
    wait_until("5 packets counted", || {
        field(&channel(&m, 0), "packets-received") == 5
    });
    let c = channel(&m, 0);
    assert_eq!(field(&c, "dropped-foreign-source"), 2, "{c}");
    assert_eq!(field(&c, "dropped-not-rtp"), 1);
    assert_eq!(field(&c, "latched"), 0);
    // Counted once the push returns, which can be after appsink has it.
    wait_until("2 pushed", || field(&stats(&m), "packets-pushed") == 2);
    // The echoes went to the configured target only.
    let mut buf = [0u8; 2048];
    assert_eq!(target.recv_from(&mut buf).unwrap().0, 172);
    assert_eq!(target.recv_from(&mut buf).unwrap().0, 172);
    assert!(stranger.recv_from(&mut buf).is_err());
    set_state(&p, gst::State::Null);
}

#[test]
fn full_queue_drops_and_counts_without_blocking() {
    let _g = shared();
    let (p, m, src, _sink_peer) = sender("tick=50 sink_0::queue-size=4");
    let n = 2000u64;
    let started = Instant::now();
    let mut list = gst::BufferList::new();
    for seq in 0..n as u16 {
        if seq < 1000 {
            push(&src, &rtp(seq, 3));
        } else {
            list.make_mut().add(gst::Buffer::from_slice(rtp(seq, 3)));
        }
    }
    src.push_buffer_list(list).unwrap();
    src.end_of_stream().unwrap();
    wait_until("every packet accounted for", || {
        let c = channel(&m, 0);
        field(&c, "packets-sent") + field(&c, "dropped-queue-full") + field(&c, "send-errors") == n
    });
    // With a 50 ms tick, 2000 packets cannot all fit a 4-packet queue.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "nothing blocked"
    );
    let c = channel(&m, 0);
    assert!(field(&c, "dropped-queue-full") > 0, "{c}");
    assert!(field(&c, "packets-sent") >= 4, "{c}");
    set_state(&p, gst::State::Null);
}

/// A round's packets for one target go out as UDP GSO messages (`gso`,
/// the default), and the peer receives each datagram as it was queued,
/// as with `gso=false`. (RTCP off: a report would be one more datagram.)
#[test]
fn gso_joins_a_rounds_packets_and_the_peer_gets_each_datagram() {
    let _g = shared();
    // 20 of 172 bytes and a shorter last (one message), then 3 (another).
    let mut packets: Vec<Vec<u8>> = (0..20).map(|seq| rtp(seq, 5)).collect();
    packets.push(rtp(20, 5)[..100].to_vec());
    packets.extend((21..24).map(|seq| rtp(seq, 5)));
    for gso in [true, false] {
        let (p, m, src, sink_peer) = sender(&format!("tick=50 gso={gso} sink_0::rtcp=off"));
        // One list: queued before the worker's round, which sends them.
        let mut list = gst::BufferList::new();
        for packet in &packets {
            list.make_mut().add(gst::Buffer::from_slice(packet.clone()));
        }
        src.push_buffer_list(list).unwrap();
        let mut buf = [0u8; 2048];
        for packet in &packets {
            let n = sink_peer.recv(&mut buf).expect("each datagram arrives");
            assert_eq!(&buf[..n], &packet[..], "gso={gso}");
        }
        assert!(sink_peer.recv(&mut buf).is_err(), "one datagram too many");
        wait_until("24 sent", || field(&stats(&m), "packets-sent") == 24);
        let s = stats(&m);
        assert_eq!(
            fields(&s, &["packets-sent", "send-errors", "gso-messages"]),
            [
                ("packets-sent", 24),
                ("send-errors", 0),
                // Linux has split UDP GSO messages since 4.18.
                ("gso-messages", if gso { 2 } else { 0 })
            ],
            "gso={gso}"
        );
        assert_eq!(m.property::<bool>("gso"), gso);
        set_state(&p, gst::State::Null);
        // Kept past the stop, as the other counters.
        assert_eq!(field(&stats(&m), "gso-messages"), if gso { 2 } else { 0 });
    }
}

/// The worker maps each buffer when it sends it: a buffer of several
/// memories (a header and a payload, as RTP payloaders build them), and a
/// buffer that is a part of a larger memory, go out as their bytes, in the
/// order pushed, one after a plain buffer.
#[test]
fn buffers_of_several_memories_or_a_part_of_one_go_out_as_their_bytes() {
    let _g = shared();
    let (p, m, src, sink_peer) = sender("sink_0::rtcp=off");
    let packets: Vec<Vec<u8>> = (0..3).map(|seq| rtp(seq, 9)).collect();
    src.push_buffer(gst::Buffer::from_slice(packets[0].clone()))
        .unwrap();
    let mut two = gst::Buffer::new();
    {
        let two = two.get_mut().unwrap();
        two.append_memory(gst::Memory::from_slice(packets[1][..12].to_vec()));
        two.append_memory(gst::Memory::from_slice(packets[1][12..].to_vec()));
    }
    assert_eq!(two.n_memory(), 2);
    src.push_buffer(two).unwrap();
    let mut larger = vec![0xee; 7];
    larger.extend_from_slice(&packets[2]);
    larger.extend_from_slice(&[0xee; 5]);
    let part = gst::Buffer::from_slice(larger)
        .copy_region(gst::BufferCopyFlags::MEMORY, 7..7 + packets[2].len())
        .unwrap();
    src.push_buffer(part).unwrap();
    let mut buf = [0u8; 2048];
    for packet in &packets {
        let n = sink_peer.recv(&mut buf).expect("each datagram arrives");
        assert_eq!(&buf[..n], &packet[..]);
    }
    wait_until("3 sent", || field(&stats(&m), "packets-sent") == 3);
    assert_eq!(field(&stats(&m), "send-errors"), 0);
    set_state(&p, gst::State::Null);
}

/// A buffer the worker cannot map is counted in `send-errors`, and the
/// packets around it go out. (Its memory is mapped for writing here, so a
/// map for reading fails, as it does for memory that cannot be mapped.)
#[test]
fn a_buffer_that_cannot_be_mapped_is_a_send_error_and_the_rest_go_out() {
    let _g = shared();
    let (p, m, src, sink_peer) = sender("sink_0::rtcp=off");
    let memory = gst::Memory::from_mut_slice(rtp(1, 9));
    let mut info = std::mem::MaybeUninit::<gst::ffi::GstMapInfo>::zeroed();
    // SAFETY: the memory is valid and ours; the map is undone below with
    // the same info, before the memory is dropped.
    let mapped = unsafe {
        gst::ffi::gst_memory_map(
            memory.as_mut_ptr(),
            info.as_mut_ptr(),
            gst::ffi::GST_MAP_WRITE,
        )
    };
    assert_ne!(mapped, 0, "a new memory maps for writing");
    let mut buffer = gst::Buffer::new();
    buffer.get_mut().unwrap().append_memory(memory.clone());
    push(&src, &rtp(0, 9));
    src.push_buffer(buffer).unwrap();
    push(&src, &rtp(2, 9));
    let mut buf = [0u8; 2048];
    for seq in [0, 2] {
        let n = sink_peer.recv(&mut buf).expect("the mappable ones arrive");
        assert_eq!(&buf[..n], &rtp(seq, 9)[..]);
    }
    wait_until("2 sent, 1 error", || {
        fields(&stats(&m), &["packets-sent", "send-errors"])
            == [("packets-sent", 2), ("send-errors", 1)]
    });
    assert!(sink_peer.recv(&mut buf).is_err(), "nothing more");
    set_state(&p, gst::State::Null);
    // SAFETY: mapped above with this info.
    unsafe { gst::ffi::gst_memory_unmap(memory.as_mut_ptr(), info.as_mut_ptr()) };
}

/// `sink_N` sends on the channel's socket as it is now: requested after
/// `src_N` while the channel already plays, then across a reopen of the
/// socket (a new `bind-port`), and nothing in between is counted as sent
/// without a socket.
#[test]
fn a_sink_pad_requested_while_playing_sends_and_follows_a_reopened_socket() {
    let _g = shared();
    let sink_peer = peer();
    let p = pipeline(
        "rtpmuxserver name=m src_0::bind-address=127.0.0.1 src_0::rtcp=off \
         m.src_0 ! fakesink async=false",
    );
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let first_port = local_port(&m, "src_0");
    assert_ne!(first_port, 0);
    let sink = channel_pad(
        &m,
        0,
        &[
            ("remote-address", "127.0.0.1".into()),
            (
                "remote-port",
                sink_peer.local_addr().unwrap().port().to_string(),
            ),
        ],
    );
    let src: gst_app::AppSrc = gst::ElementFactory::make("appsrc")
        .property("format", gst::Format::Time)
        .property("caps", gst::Caps::new_empty_simple("application/x-rtp"))
        .build()
        .unwrap()
        .downcast()
        .unwrap();
    p.add(&src).unwrap();
    src.static_pad("src").unwrap().link(&sink).unwrap();
    src.sync_state_with_parent().unwrap();
    let mut buf = [0u8; 2048];
    push(&src, &rtp(0, 9));
    let (n, from) = sink_peer.recv_from(&mut buf).expect("sent once requested");
    assert_eq!((&buf[..n], from.port()), (&rtp(0, 9)[..], first_port));
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second_port = taken.local_addr().unwrap().port();
    drop(taken);
    sink.set_property("bind-port", u32::from(second_port));
    wait_until("reopened", || {
        m.static_pad("src_0").unwrap().property::<u32>("local-port") == u32::from(second_port)
    });
    push(&src, &rtp(1, 9));
    let (n, from) = sink_peer
        .recv_from(&mut buf)
        .expect("sent after the reopen");
    assert_eq!((&buf[..n], from.port()), (&rtp(1, 9)[..], second_port));
    // Published after the send returns.
    wait_until("2 sent", || field(&stats(&m), "packets-sent") == 2);
    assert_eq!(field(&stats(&m), "dropped-no-socket"), 0);
    set_state(&p, gst::State::Null);
}

#[test]
fn bad_queue_size_is_refused() {
    let _g = shared();
    let m = gst::ElementFactory::make("rtpmuxserver").build().unwrap();
    let pad = m.request_pad_simple("sink_%u").unwrap();
    assert_eq!(pad.name(), "sink_0");
    pad.set_property("queue-size", 100u32);
    assert_eq!(
        pad.property::<u32>("queue-size"),
        64,
        "100 is not a power of two"
    );
    pad.set_property("queue-size", 256u32);
    assert_eq!(pad.property::<u32>("queue-size"), 256);
    // The other pad of the pair shows the channel's settings.
    let src = m.request_pad_simple("src_%u").unwrap();
    assert_eq!(src.name(), "src_0");
    assert_eq!(src.property::<u32>("queue-size"), 256);
    let columns = m.property::<Vec<String>>("stats-columns");
    assert_eq!(columns[0], "channel");
    assert_eq!(columns.len(), 1 + 14 + SessionStats::NCOLUMNS);
    assert_eq!(columns[8], "dropped-kernel");
    assert_eq!(columns[11], "local-port");
    assert_eq!(
        &columns[12..15],
        ["relayed", "not-relayed", "relayed-offloaded"]
    );
    assert_eq!(&columns[15..], SessionStats::NAMES);
}

/// A channel that cannot be set up at start-up (its port in use, its
/// bind-address not an address) fails the state change with one ERROR
/// naming each such channel and its address, as `udpsrc` fails on a port in
/// use: the pipeline does not go on to PLAYING after it.
#[test]
fn a_channel_that_cannot_start_fails_the_state_change_with_one_error() {
    let _g = shared();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    for (props, needles) in [
        (
            format!("src_1::bind-address=127.0.0.1 src_1::bind-port={port}"),
            vec!["channel 1".to_string(), format!("127.0.0.1:{port}")],
        ),
        (
            "src_2::bind-address=no.such.address".to_string(),
            vec!["channel 2".to_string(), "no.such.address".to_string()],
        ),
        (
            format!(
                "src_1::bind-address=127.0.0.1 src_1::bind-port={port} \
                 src_2::bind-address=no.such.address"
            ),
            vec!["channel 1".to_string(), "channel 2".to_string()],
        ),
    ] {
        let p = pipeline(&format!(
            "rtpmuxserver name=m src_0::bind-address=127.0.0.1 {props} \
             m.src_0 ! fakesink m.src_1 ! fakesink m.src_2 ! fakesink"
        ));
        assert!(
            p.set_state(gst::State::Playing).is_err(),
            "{props}: the state change fails"
        );
        let (_, current, _) = p.state(gst::ClockTime::ZERO);
        assert!(current < gst::State::Paused, "{props}: {current:?}");
        let errors = error_messages(&p);
        assert_eq!(errors.len(), 1, "{props}: {errors:?}");
        for needle in &needles {
            assert!(errors[0].contains(needle.as_str()), "{props}: {errors:?}");
        }
        let warnings = {
            let bus = p.bus().unwrap();
            std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Warning])).count()
        };
        assert_eq!(warnings, 0, "{props}");
        let _ = p.set_state(gst::State::Null);
    }
}

/// A channel added while PLAYING that cannot be set up posts a WARNING
/// naming it, says why in its pads' `error` property, and leaves the other
/// channels and the pipeline running; a later successful open clears it.
#[test]
fn a_channel_added_while_playing_that_fails_is_a_warning_and_the_rest_runs() {
    let _g = shared();
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (p, m, addr) = reflector("", "");
    let pad = m.request_pad_simple("src_7").expect("src_7");
    pad.set_property("bind-address", "127.0.0.1");
    pad.set_property("bind-port", u32::from(port));
    let bus = p.bus().unwrap();
    let warning = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(2),
            &[gst::MessageType::Warning],
        )
        .expect("a warning");
    let gst::MessageView::Warning(w) = warning.view() else {
        unreachable!()
    };
    let text = w.error().to_string();
    assert!(
        text.contains("channel 7") && text.contains(&format!("127.0.0.1:{port}")),
        "{text}"
    );
    assert!(error_messages(&p).is_empty());
    let why = pad
        .property::<Option<String>>("error")
        .expect("the pad says why");
    assert!(why.contains("channel 7"), "{why}");
    assert_eq!(pad.property::<u32>("local-port"), 0);
    // Channel 0 keeps working, and the pipeline plays on.
    let peer = peer();
    peer.send_to(&rtp(0, 9), addr).unwrap();
    let mut buf = [0u8; 2048];
    assert_eq!(peer.recv_from(&mut buf).unwrap().0, 172);
    let (_, state, _) = p.state(gst::ClockTime::from_seconds(2));
    assert_eq!(state, gst::State::Playing);
    // Freed, the port opens on the next try, and the error is gone.
    drop(taken);
    pad.set_property("bind-port", 0u32);
    wait_until("channel 7 open", || pad.property::<u32>("local-port") != 0);
    assert_eq!(pad.property::<Option<String>>("error"), None);
    m.release_request_pad(&pad);
    set_state(&p, gst::State::Null);
}

#[test]
fn packed_stats_match_the_structure() {
    let _g = shared();
    // No report interval closes during the test, so two reads agree.
    let (p, m, addr) = reflector(
        "src_0::rtcp-interval=3600000 src_5::rtcp-interval=3600000",
        "m.src_5 ! fakesink",
    );
    let peer = peer();
    for seq in 0..3 {
        peer.send_to(&rtp(seq, 1), addr).unwrap();
    }
    // The session counts a packet sent once the send call returns.
    wait_until("3 packets sent back", || {
        field(&channel(&m, 0), "rtp-packets-sent") == 3
    });
    let columns = m.property::<Vec<String>>("stats-columns");
    let bytes = m.property::<glib::Bytes>("stats-packed");
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let ncols = columns.len();
    assert_eq!(
        &words[..3],
        &[5, ncols as u64, 2],
        "header: version, columns, rows"
    );
    assert_eq!(words.len(), 3 * ncols);
    let s = stats(&m);
    for row in words[ncols..].chunks_exact(ncols) {
        let c = s
            .get::<gst::Structure>(format!("channel-{}", row[0]).as_str())
            .unwrap();
        for (name, v) in columns[1..].iter().zip(&row[1..]) {
            // Signed columns are i64 in the structure, two's complement
            // in the packed row.
            let in_structure = match c.get::<i64>(name) {
                Ok(signed) => signed as u64,
                Err(_) => field(&c, name),
            };
            assert_eq!(in_structure, *v, "{name} of channel {}", row[0]);
        }
        assert_eq!(
            c.n_fields(),
            ncols,
            "every column but channel, and remote-cname"
        );
    }
    assert_eq!(words[ncols], 0);
    assert_eq!(words[2 * ncols], 5);
    set_state(&p, gst::State::Null);
}

#[test]
fn channels_come_and_go_under_traffic_without_loss_on_the_others() {
    let _g = shared();
    let out_peer = peer();
    let out_port = out_peer.local_addr().unwrap().port();
    let p = pipeline(&format!(
        "appsrc name=in is-live=true format=time caps=application/x-rtp ! m.sink_0 \
         rtpmuxserver name=m sink_0::bind-address=127.0.0.1 sink_0::queue-size=1024 \
         sink_0::remote-address=127.0.0.1 sink_0::remote-port={out_port} \
         m.src_0 ! queue ! appsink name=out sync=false"
    ));
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let addr = loopback_addr(&m, "src_0");
    let src: gst_app::AppSrc = by_name(&p, "in");
    let sink: gst_app::AppSink = by_name(&p, "out");
    let n = 400u16;
    let in_peer = peer();
    let traffic = std::thread::spawn(move || {
        for seq in 0..n {
            in_peer.send_to(&rtp(seq, 5), addr).unwrap();
            push(&src, &rtp(seq, 6));
            std::thread::sleep(Duration::from_micros(500));
        }
    });
    // Read while the traffic runs: 400 unread datagrams overflow a default
    // socket buffer.
    let collector = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        (0..n)
            .map(|_| {
                let len = out_peer.recv(&mut buf).expect("stayer sent everything");
                buf[..len].to_vec()
            })
            .collect::<Vec<_>>()
    });
    let templ_src = m.pad_template("src_%u").unwrap();
    let templ_sink = m.pad_template("sink_%u").unwrap();
    for i in 0..200u32 {
        let index = 100 + i;
        let templ = if i % 2 == 0 { &templ_src } else { &templ_sink };
        let name = format!("{}_{index}", if i % 2 == 0 { "src" } else { "sink" });
        let pad = m.request_pad(templ, Some(&name), None).unwrap();
        assert_ne!(pad.property::<u32>("local-port"), 0, "{name} opened");
        m.release_request_pad(&pad);
    }
    traffic.join().unwrap();
    for seq in 0..n {
        assert_eq!(pull(&sink).0, rtp(seq, 5), "stayer received {seq}");
    }
    let sent = collector.join().unwrap();
    for (seq, data) in sent.iter().enumerate() {
        assert_eq!(data, &rtp(seq as u16, 6), "stayer sent {seq}");
    }
    wait_until("the stayer's counters", || {
        field(&channel(&m, 0), "packets-sent") == u64::from(n)
    });
    let c = channel(&m, 0);
    assert_eq!(field(&c, "packets-received"), u64::from(n));
    assert_eq!(field(&c, "packets-sent"), u64::from(n));
    let s = stats(&m);
    assert_eq!(field(&s, "channels"), 1, "the 200 channels are closed");
    set_state(&p, gst::State::Null);
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == "rtpmuxserver")
        .count()
}

#[test]
fn null_playing_null_100_times_leaks_no_socket_or_thread() {
    let _g = exclusive();
    let p = pipeline(
        "rtpmuxserver name=m m.src_0 ! fakesink m.src_1 ! fakesink m.src_2 ! fakesink \
         m.src_3 ! fakesink appsrc is-live=true caps=application/x-rtp ! m.sink_0",
    );
    // One round first, so GStreamer's own lazily made threads and fds exist.
    set_state(&p, gst::State::Playing);
    // The thread names itself once it runs.
    wait_until("the worker", || worker_threads() == 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(worker_threads(), 1, "one worker for all channels");
    set_state(&p, gst::State::Null);
    let fds = count("/proc/self/fd");
    let threads = count("/proc/self/task");
    for _ in 0..100 {
        set_state(&p, gst::State::Playing);
        set_state(&p, gst::State::Null);
    }
    assert_eq!(worker_threads(), 0);
    assert_eq!(count("/proc/self/fd"), fds, "no socket leaked");
    wait_until("thread count back", || count("/proc/self/task") <= threads);
}

/// `channels` channels that each send back what they receive (`src_N !
/// identity ! sink_N`), served by `workers` workers: every counter after 20
/// packets and one non-RTP datagram to each, echoed to one peer.
fn echo_totals(workers: u32, channels: u32) -> Vec<(&'static str, u64)> {
    let p = gst::Pipeline::new();
    let m = gst::ElementFactory::make("rtpmuxserver")
        .property("workers", workers)
        .build()
        .unwrap();
    p.add(&m).unwrap();
    for i in 0..channels {
        let src = m.request_pad_simple(&format!("src_{i}")).unwrap();
        let sink = m.request_pad_simple(&format!("sink_{i}")).unwrap();
        src.set_property("bind-address", "127.0.0.1");
        let echo = gst::ElementFactory::make("identity").build().unwrap();
        p.add(&echo).unwrap();
        src.link(&echo.static_pad("sink").unwrap()).unwrap();
        echo.static_pad("src").unwrap().link(&sink).unwrap();
    }
    let p = Pipe(p);
    set_state(&p, gst::State::Playing);
    wait_until("one thread per worker", || {
        worker_threads() == workers as usize
    });
    let peer = peer();
    let mut buf = [0u8; 2048];
    let mut echoed = 0;
    for i in 0..channels {
        let addr = SocketAddr::new(
            "127.0.0.1".parse().unwrap(),
            local_port(&m, &format!("src_{i}")),
        );
        peer.send_to(&[1, 2, 3], addr).unwrap();
        for seq in 0..20 {
            peer.send_to(&rtp(seq, 100 + i), addr).unwrap();
            let (n, from) = peer.recv_from(&mut buf).expect("the echo");
            assert_eq!((&buf[..n], from), (&rtp(seq, 100 + i)[..], addr));
            echoed += 1;
        }
    }
    assert_eq!(echoed, 20 * channels);
    wait_until("every echo counted", || {
        field(&stats(&m), "packets-sent") == u64::from(20 * channels)
    });
    let s = stats(&m);
    set_state(&p, gst::State::Null);
    fields(
        &s,
        &[
            "packets-received",
            "octets-received",
            "packets-sent",
            "octets-sent",
            "dropped-not-rtp",
            "dropped-foreign-source",
            "latched",
            "packets-pushed",
            "dropped-downstream",
            "rtp-packets-received",
        ],
    )
}

#[test]
fn two_workers_count_exactly_as_one() {
    // Exclusive: it counts the process's worker threads.
    let _g = exclusive();
    let n = 16u32;
    let one = echo_totals(1, n);
    let expected: Vec<(&str, u64)> = vec![
        ("packets-received", u64::from(21 * n)),
        ("octets-received", u64::from(n * (20 * 172 + 3))),
        ("packets-sent", u64::from(20 * n)),
        ("octets-sent", u64::from(n * 20 * 172)),
        ("dropped-not-rtp", u64::from(n)),
        ("dropped-foreign-source", 0),
        ("latched", u64::from(n)),
        ("packets-pushed", u64::from(20 * n)),
        ("dropped-downstream", 0),
        // RFC 3550 A.1: the first packet of a new source is on probation.
        ("rtp-packets-received", u64::from(19 * n)),
    ];
    assert_eq!(one, expected);
    assert_eq!(echo_totals(2, n), expected);
}

#[test]
fn interop_with_stock_udpsink_and_udpsrc() {
    let _g = shared();
    // Stock udpsink -> a channel.
    let p = pipeline(
        "rtpmuxserver name=m src_0::bind-address=127.0.0.1 m.src_0 ! appsink name=out sync=false",
    );
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let port = local_port(&m, "src_0");
    let tx = pipeline(&format!(
        "appsrc name=in format=time caps=application/x-rtp ! udpsink host=127.0.0.1 port={port} sync=false"
    ));
    set_state(&tx, gst::State::Playing);
    let src: gst_app::AppSrc = by_name(&tx, "in");
    let sink: gst_app::AppSink = by_name(&p, "out");
    for seq in 0..100 {
        push(&src, &rtp(seq, 11));
        assert_eq!(pull(&sink).0, rtp(seq, 11));
    }
    set_state(&tx, gst::State::Null);
    set_state(&p, gst::State::Null);

    // A channel -> stock udpsrc.
    let free = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let rx = pipeline(&format!(
        "udpsrc address=127.0.0.1 port={port} caps=application/x-rtp ! appsink name=out sync=false"
    ));
    set_state(&rx, gst::State::Playing);
    let p = pipeline(&format!(
        "appsrc name=in format=time caps=application/x-rtp ! m.sink_0 rtpmuxserver name=m \
         sink_0::queue-size=128 sink_0::remote-address=127.0.0.1 sink_0::remote-port={port}"
    ));
    set_state(&p, gst::State::Playing);
    let src: gst_app::AppSrc = by_name(&p, "in");
    let sink: gst_app::AppSink = by_name(&rx, "out");
    for seq in 0..100 {
        push(&src, &rtp(seq, 12));
    }
    for seq in 0..100 {
        let sample = sink.try_pull_sample(GST_TIMEOUT).expect("udpsrc receives");
        let data = sample.buffer().unwrap().map_readable().unwrap().to_vec();
        assert_eq!(data, rtp(seq, 12));
    }
    set_state(&p, gst::State::Null);
    set_state(&rx, gst::State::Null);
}

#[test]
fn target_changes_while_playing() {
    let _g = shared();
    let first = peer();
    let second = peer();
    let p = pipeline(&format!(
        "appsrc name=in format=time caps=application/x-rtp ! m.sink_0 \
         rtpmuxserver name=m sink_0::remote-address=127.0.0.1 sink_0::remote-port={}",
        first.local_addr().unwrap().port()
    ));
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let src: gst_app::AppSrc = by_name(&p, "in");
    let mut buf = [0u8; 2048];
    push(&src, &rtp(1, 4));
    assert_eq!(first.recv(&mut buf).unwrap(), 172);
    set_child(
        &m,
        "sink_0::remote-port",
        u32::from(second.local_addr().unwrap().port()),
    );
    push(&src, &rtp(2, 4));
    let n = second.recv(&mut buf).expect("the new target receives");
    assert_eq!(&buf[..n], &rtp(2, 4)[..]);
    assert!(
        first.recv(&mut buf).is_err(),
        "the old target gets nothing more"
    );
    // A target the socket cannot reach (IPv6 from an IPv4 socket) is
    // reported with the channel and the address, as a warning (the element
    // runs on); no DNS is involved.
    set_child(&m, "sink_0::remote-address", "::1");
    let warnings = warning_messages(&p);
    assert!(
        warnings
            .iter()
            .any(|e| e.contains("channel 0") && e.contains("'::1'")),
        "{warnings:?}"
    );
    assert!(error_messages(&p).is_empty());
    let why = m
        .static_pad("sink_0")
        .unwrap()
        .property::<Option<String>>("error");
    assert!(why.is_some_and(|w| w.contains("'::1'")));
    set_state(&p, gst::State::Null);
}

#[test]
fn caps_property_reaches_downstream() {
    let _g = shared();
    let (p, m, addr) = reflector(
        "src_0::rtp-caps=\"application/x-rtp,media=audio,clock-rate=(int)8000,encoding-name=PCMU\"",
        "",
    );
    let sink: gst_app::AppSink = by_name(&p, "out");
    let peer = peer();
    peer.send_to(&rtp(0, 1), addr).unwrap();
    assert_eq!(pull(&sink).0, rtp(0, 1));
    let caps = sink.sink_pads()[0].current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("clock-rate").unwrap(), 8000);
    // Caps that are not RTP are refused and the old ones kept.
    let pad = m.static_pad("src_0").unwrap();
    pad.set_property("rtp-caps", gst::Caps::new_empty_simple("audio/x-raw"));
    let kept = pad.property::<gst::Caps>("rtp-caps");
    assert_eq!(kept.structure(0).unwrap().name(), "application/x-rtp");
    assert_eq!(
        m.static_pad("sink_0")
            .unwrap()
            .property::<gst::Caps>("rtp-caps"),
        kept,
        "both pads show the channel's caps"
    );
    set_state(&p, gst::State::Null);
}

#[test]
fn paced_element_answers() {
    let _g = shared();
    let (p, m, addr) = reflector("tick=1", "");
    let peer = peer();
    let mut buf = [0u8; 2048];
    for seq in 0..10 {
        peer.send_to(&rtp(seq, 7), addr).unwrap();
        let (n, from) = peer.recv_from(&mut buf).expect("the paced channel answers");
        assert_eq!((&buf[..n], from), (&rtp(seq, 7)[..], addr));
    }
    assert_eq!(m.property::<u32>("tick"), 1);
    set_state(&p, gst::State::Null);
}

// ---------------------------------------------------------------------------
// RTP sessions and RTCP

mod udp_relay;

use rtpsynth_core::session::{UNKNOWN, UNKNOWN_SIGNED};
use udp_relay::{Relay, Route, bind_pair, loopback};

/// Session statistic `name` of a channel structure; signed ones come back
/// as their value, read as i64.
fn signed(s: &gst::Structure, name: &str) -> i64 {
    s.get::<i64>(name)
        .unwrap_or_else(|e| panic!("{name}: {e} in {s}"))
}

fn wait_long(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every datagram the element read is an RTP packet pushed or dropped
/// downstream, RTCP (good or malformed), or a counted drop.
fn assert_received_adds_up(total: &gst::Structure) {
    assert_eq!(
        field(total, "packets-received"),
        field(total, "packets-pushed")
            + field(total, "dropped-downstream")
            + field(total, "rtcp-received")
            + field(total, "dropped-foreign-source")
            + field(total, "dropped-not-rtp"),
        "{total}"
    );
}

/// The next `rtpmuxserver-bye` element message on `p`'s bus: (channel, ssrc).
fn bye_message(p: &gst::Pipeline) -> (u32, u32) {
    let bus = p.bus().unwrap();
    let end = Instant::now() + TIMEOUT;
    while Instant::now() < end {
        let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Element],
        ) else {
            continue;
        };
        if let Some(s) = msg.structure()
            && s.name() == "rtpmuxserver-bye"
        {
            return (s.get("channel").unwrap(), s.get("ssrc").unwrap());
        }
    }
    panic!("no rtpmuxserver-bye message");
}

/// Two channels of one element send each other 20 ms PCMU packets for two
/// seconds, each stream with a few sequence numbers left out, through a
/// relay that holds RTCP back 50 ms each way. Channel 0 learns its clock
/// rate from the caps on sink_0, channel 1 from its clock-rate property.
fn reports_both_ways(mode: &str) {
    let _g = shared();
    let p = pipeline(
        "appsrc name=in0 is-live=true format=time \
           caps=\"application/x-rtp,media=audio,clock-rate=8000,encoding-name=PCMU,payload=0\" ! m.sink_0 \
         appsrc name=in1 is-live=true format=time caps=application/x-rtp ! m.sink_1 \
         rtpmuxserver name=m src_1::clock-rate=8000 \
         m.src_0 ! fakesink sync=false async=false m.src_1 ! fakesink sync=false async=false",
    );
    let m: gst::Element = by_name(&p, "m");
    if mode == "mux" {
        // A CNAME of our own; port+1 keeps the random default.
        m.set_property("cname", "mux-test@example.org");
    }
    for i in 0..2 {
        set_child(&m, &format!("sink_{i}::bind-address"), "127.0.0.1");
        set_child(&m, &format!("sink_{i}::rtcp-interval"), 200u32);
        m.static_pad(&format!("sink_{i}"))
            .unwrap()
            .set_property_from_str("rtcp", mode);
    }
    set_state(&p, gst::State::Paused);
    let ports = [local_port(&m, "sink_0"), local_port(&m, "sink_1")];
    let port_plus_one = mode == "port+1";
    let delay = Duration::from_millis(50);
    // RTP and (with port+1) RTCP from each channel go through a relay
    // socket facing it, out of a relay socket facing the other channel.
    let relay = if port_plus_one {
        for port in ports {
            assert_eq!(port % 2, 0, "RTP on an even port");
        }
        let (a, a_rtcp) = bind_pair();
        let (b, b_rtcp) = bind_pair();
        let route = |input, output, port| Route {
            input,
            output,
            target: loopback(port),
            rtcp_delay: delay,
            drop_seqs: vec![],
        };
        Relay::start(
            vec![a, a_rtcp, b, b_rtcp],
            vec![
                route(0, 2, ports[1]),
                route(1, 3, ports[1] + 1),
                route(2, 0, ports[0]),
                route(3, 1, ports[0] + 1),
            ],
        )
    } else {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let route = |input, output, port| Route {
            input,
            output,
            target: loopback(port),
            rtcp_delay: delay,
            drop_seqs: vec![],
        };
        Relay::start(
            vec![a, b],
            vec![route(0, 1, ports[1]), route(1, 0, ports[0])],
        )
    };
    let faces = if port_plus_one { [0, 2] } else { [0, 1] };
    for (i, face) in faces.into_iter().enumerate() {
        set_child(&m, &format!("sink_{i}::remote-address"), "127.0.0.1");
        set_child(
            &m,
            &format!("sink_{i}::remote-port"),
            u32::from(relay.addr(face).port()),
        );
    }
    set_state(&p, gst::State::Playing);

    let skipped: [&[u16]; 2] = [&[10, 25, 40], &[30, 31]];
    let ssrcs = [0xa0a0_a0a0u32, 0xb1b1_b1b1];
    let inputs: [gst_app::AppSrc; 2] = [by_name(&p, "in0"), by_name(&p, "in1")];
    let n = 100u16;
    for seq in 0..n {
        for i in 0..2 {
            if !skipped[i].contains(&seq) {
                push(&inputs[i], &rtp(seq, ssrcs[i]));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ch = |i| channel(&m, i);
    // Reports after the last packet carry the final counts; two reports
    // after it each side sends RRs.
    wait_long("reports with the whole loss, both ways", || {
        (0..2).all(|i| {
            let c = ch(i);
            let other = skipped[1 - i as usize].len() as i64;
            field(&c, "rr-received") > 0
                && signed(&c, "remote-packets-lost") == skipped[i as usize].len() as i64
                && signed(&c, "packets-lost") == other
                && field(&c, "rtt-us") != UNKNOWN
        })
    });
    let cname = m.property::<String>("cname");
    if mode == "mux" {
        assert_eq!(cname, "mux-test@example.org");
    } else {
        assert!(
            cname.starts_with("rtpsynth-") && cname.contains('@'),
            "{cname}"
        );
    }
    for i in 0..2u32 {
        let c = ch(i);
        let me = i as usize;
        assert!(field(&c, "sr-received") > 0, "{c}");
        assert!(field(&c, "rr-received") > 0, "{c}");
        assert_eq!(field(&c, "local-ssrc"), u64::from(ssrcs[me]));
        assert_eq!(field(&c, "remote-ssrc"), u64::from(ssrcs[1 - me]));
        // Counted from the packet after the first (probation).
        assert_eq!(field(&c, "packets-expected"), u64::from(n) - 1, "{c}");
        assert_eq!(
            signed(&c, "packets-lost"),
            skipped[1 - me].len() as i64,
            "{c}"
        );
        assert_eq!(
            signed(&c, "remote-packets-lost"),
            skipped[me].len() as i64,
            "the peer's report of our loss: {c}"
        );
        let rtt = field(&c, "rtt-us");
        assert!(
            (90_000..250_000).contains(&rtt),
            "RTT {rtt} µs through a relay holding RTCP 50 ms each way: {c}"
        );
        for name in ["jitter-us", "max-jitter-us", "remote-jitter-us"] {
            let j = field(&c, name);
            assert!(j < 20_000, "{name} {j}: {c}");
        }
        assert_ne!(field(&c, "jitter"), UNKNOWN, "{c}");
        let mos = field(&c, "mos");
        assert!((100..=450).contains(&mos), "{c}");
        assert_eq!(c.get::<String>("remote-cname").unwrap(), cname);
        assert_eq!(field(&c, "rtcp-dropped"), 0);
        assert_eq!(field(&c, "bye-received"), 0);
        assert_eq!(
            field(&c, "rtp-packets-sent"),
            u64::from(n) - skipped[me].len() as u64
        );
    }
    // Every datagram counted once, sent or received.
    wait_until("every push counted", || {
        let t = stats(&m);
        field(&t, "packets-pushed") + field(&t, "dropped-downstream") + field(&t, "rtcp-received")
            == field(&t, "packets-received")
    });
    let total = stats(&m);
    assert_received_adds_up(&total);
    let rtp_sent = 2 * u64::from(n) - 5;
    assert_eq!(
        field(&total, "packets-sent")
            + field(&total, "dropped-queue-full")
            + field(&total, "send-errors"),
        rtp_sent + field(&total, "rtcp-sent"),
        "{total}"
    );
    assert_eq!(field(&total, "rtp-packets-sent"), rtp_sent);
    assert_eq!(signed(&total, "packets-lost"), 5, "summed over channels");
    assert!(total.get::<u64>("rtt-us").is_err(), "no total of RTTs");

    // Releasing channel 0 says BYE; channel 1 counts it and the bus hears.
    for pad in ["sink_0", "src_0"] {
        m.release_request_pad(&m.static_pad(pad).unwrap());
    }
    assert_eq!(bye_message(&p), (1, ssrcs[0]));
    wait_until("BYE counted", || field(&ch(1), "bye-received") == 1);
    set_state(&p, gst::State::Null);
    assert!(error_messages(&p).is_empty());
}

#[test]
fn rtcp_mux_reports_both_ways_with_loss_and_rtt() {
    reports_both_ways("mux");
}

#[test]
fn rtcp_on_port_plus_one_reports_both_ways_with_loss_and_rtt() {
    reports_both_ways("port+1");
}

#[test]
fn rtcp_turned_on_while_playing_reopens_on_an_even_port_and_reports_to_the_latched_peer() {
    let _g = shared();
    let (p, m, _) = reflector("src_0::rtcp-interval=100", "");
    m.static_pad("src_0")
        .unwrap()
        .set_property_from_str("rtcp", "port+1");
    let port = local_port(&m, "src_0");
    assert_eq!(port % 2, 0, "{port}");
    let (peer_rtp, peer_rtcp) = bind_pair();
    peer_rtcp
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // Latched on the peer's RTP port, no RTCP from it yet: reports go to
    // its port + 1, from ours.
    for seq in 0..5 {
        peer_rtp.send_to(&rtp(seq, 3), loopback(port)).unwrap();
    }
    let mut buf = [0u8; 2048];
    let (n, from) = peer_rtcp.recv_from(&mut buf).expect("a report");
    assert_eq!(from, loopback(port + 1));
    assert!(rtpsynth_core::rtp::is_rtcp(&buf[..n]));
    // Counted once the send call returned, which can be after the peer has it.
    wait_until("the report counted", || {
        field(&channel(&m, 0), "rtcp-sent") >= 1
    });
    set_state(&p, gst::State::Null);
}

#[test]
fn cname_is_random_per_element_and_a_too_long_one_is_refused() {
    let _g = shared();
    let a = gst::ElementFactory::make("rtpmuxserver").build().unwrap();
    let b = gst::ElementFactory::make("rtpmuxserver").build().unwrap();
    let (ca, cb) = (a.property::<String>("cname"), b.property::<String>("cname"));
    assert_ne!(ca, cb, "two elements, two CNAMEs");
    assert_eq!(
        a.property::<String>("cname"),
        ca,
        "stable for the element's life"
    );
    a.set_property("cname", "x".repeat(256));
    assert_eq!(
        a.property::<String>("cname"),
        ca,
        "256 bytes do not fit an SDES item"
    );
    a.set_property("cname", "x".repeat(255));
    assert_eq!(a.property::<String>("cname").len(), 255);
}

fn rr(ssrc: u32) -> Vec<u8> {
    let mut out = vec![0; 64];
    let n = rtpsynth_core::rtcp::write_rr(&mut out, ssrc, &[]).unwrap();
    out.truncate(n);
    out
}

#[test]
fn malformed_rtcp_is_counted_by_fault_and_never_pushed() {
    let _g = shared();
    let p = pipeline(
        "rtpmuxserver name=m src_0::bind-address=127.0.0.1 src_0::rtcp=port+1 \
         m.src_0 ! appsink name=out sync=false",
    );
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let rtp_port = local_port(&m, "src_0");
    let (to_rtp, to_rtcp) = (loopback(rtp_port), loopback(rtp_port + 1));
    let sink: gst_app::AppSink = by_name(&p, "out");
    let peer = peer();
    let good = rr(0x77);
    // Muxed on the RTP port, RFC 5761's rule picks RTCP out: it needs
    // version 2 in the first packet, so a bad version is in the second.
    let short = vec![0x80, 201];
    let mut bad_version = good.clone();
    bad_version.extend_from_slice(&[0x40, 202, 0, 0]);
    let mut length_overrun = good.clone();
    length_overrun[3] = 9;
    let mut report_overrun = good.clone();
    report_overrun[0] |= 1;
    peer.send_to(&rtp(0, 5), to_rtp).unwrap();
    for bad in [&short, &bad_version, &length_overrun, &report_overrun] {
        peer.send_to(bad, to_rtp).unwrap();
    }
    peer.send_to(&rtp(1, 5), to_rtp).unwrap();
    // On the RTCP port everything is RTCP: a first packet of version 1,
    // and 3 bytes.
    peer.send_to(&[0x40, 201, 0, 1, 0, 0, 0, 7], to_rtcp)
        .unwrap();
    peer.send_to(&[0x80, 201, 0], to_rtcp).unwrap();
    peer.send_to(&good, to_rtcp).unwrap();
    peer.send_to(&rtp(2, 5), to_rtp).unwrap();
    for seq in 0..3 {
        assert_eq!(pull(&sink).0, rtp(seq, 5), "only RTP is pushed");
    }
    wait_until("10 datagrams", || {
        field(&channel(&m, 0), "packets-received") == 10
    });
    let c = channel(&m, 0);
    assert_eq!(field(&c, "rtcp-received"), 7, "{c}");
    assert_eq!(field(&c, "rtcp-dropped"), 6, "{c}");
    for (fault, count) in [
        ("too-short", 2),
        ("bad-version", 2),
        ("length-overrun", 1),
        ("report-overrun", 1),
        ("bad-padding", 0),
    ] {
        assert_eq!(
            field(&c, &format!("rtcp-dropped-{fault}")),
            count,
            "{fault}: {c}"
        );
    }
    assert_eq!(field(&c, "rr-received"), 1, "the good one is taken");
    assert_eq!(field(&c, "dropped-not-rtp"), 0);
    // It goes on serving.
    peer.send_to(&rtp(3, 5), to_rtp).unwrap();
    assert_eq!(pull(&sink).0, rtp(3, 5));
    assert!(
        sink.try_pull_sample(gst::ClockTime::from_mseconds(100))
            .is_none()
    );
    wait_until("every push counted", || {
        field(&stats(&m), "packets-pushed") == 4
    });
    assert_received_adds_up(&stats(&m));
    set_state(&p, gst::State::Null);
}

#[test]
fn rtcp_off_sends_none_but_counts_and_scores_what_it_receives() {
    let _g = shared();
    let (p, m, addr) = reflector("src_0::rtcp-interval=100 src_0::clock-rate=8000", "");
    let peer = peer();
    let mut buf = [0u8; 2048];
    for seq in (0..20).filter(|s| *s != 7) {
        peer.send_to(&rtp(seq, 9), addr).unwrap();
        // The echo comes back; nothing else may.
        let (n, _) = peer.recv_from(&mut buf).expect("the echo");
        assert!(!rtpsynth_core::rtp::is_rtcp(&buf[..n]));
    }
    peer.send_to(&rr(0x42), addr).unwrap();
    wait_until("the RR and a closed interval", || {
        let c = channel(&m, 0);
        field(&c, "rr-received") == 1 && field(&c, "mos") != UNKNOWN
    });
    let c = channel(&m, 0);
    assert_eq!(signed(&c, "packets-lost"), 1);
    assert_eq!(field(&c, "rtcp-sent"), 0, "rtcp=off by default");
    assert_eq!(signed(&c, "remote-packets-lost"), UNKNOWN_SIGNED);
    assert!(peer.recv_from(&mut buf).is_err(), "no RTCP sent");
    set_state(&p, gst::State::Null);
}

/// A peer and an attacker on loopback: the attacker on another address
/// (127.0.0.2), sending its own SSRC before and during the call.
struct Hijack {
    peer: UdpSocket,
    attacker: UdpSocket,
}

const PEER_SSRC: u32 = 7;
const ATTACKER_SSRC: u32 = 666;

impl Hijack {
    fn new() -> Hijack {
        let attacker = UdpSocket::bind("127.0.0.2:0").expect("127.0.0.2 is loopback");
        attacker
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Hijack {
            peer: peer(),
            attacker,
        }
    }

    /// The attacker sends `n` packets to `addr`.
    fn attack(&self, addr: SocketAddr, n: u16) {
        for seq in 0..n {
            self.attacker
                .send_to(&rtp(seq, ATTACKER_SSRC), addr)
                .unwrap();
        }
    }

    /// The peer sends one packet to `addr` and gets its echo back.
    fn talk(&self, addr: SocketAddr, seq: u16) {
        self.peer.send_to(&rtp(seq, PEER_SSRC), addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = self
            .peer
            .recv_from(&mut buf)
            .expect("the peer gets the media");
        assert_eq!(&buf[..n], &rtp(seq, PEER_SSRC)[..]);
    }

    /// The media never went to the attacker, and nothing of it reached
    /// `out`: every packet pulled there is the peer's.
    fn assert_held(&self, p: &gst::Pipeline, m: &gst::Element, attacks: u64) {
        let mut buf = [0u8; 2048];
        assert!(
            self.attacker.recv_from(&mut buf).is_err(),
            "the attacker received media"
        );
        let out: gst_app::AppSink = by_name(p, "out");
        while let Some(s) = out.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            let b = s.buffer().unwrap().map_readable().unwrap();
            let ssrc = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
            assert_eq!(ssrc, PEER_SSRC, "an attacker packet was pushed");
        }
        wait_until("the attack counted", || {
            field(&channel(m, 0), "dropped-foreign-source") == attacks
        });
    }
}

/// `remote-address` without `remote-port`: only a source of the peer's IP
/// address is latched (its port learnt), so an attacker on another host
/// gets nothing, whether it sends before the peer or during the call.
#[test]
fn latching_limited_to_the_peers_address_cannot_be_hijacked() {
    let _g = shared();
    let (p, m, addr) = reflector("sink_0::remote-address=127.0.0.1", "");
    let h = Hijack::new();
    h.attack(addr, 5);
    for seq in 0..5 {
        h.talk(addr, seq);
    }
    h.attack(addr, 5);
    h.talk(addr, 5);
    h.assert_held(&p, &m, 10);
    assert_eq!(field(&channel(&m, 0), "latched"), 1);
    set_state(&p, gst::State::Null);
}

/// `latch-window`: latching only in the first ms after the channel opens.
/// A peer that spoke in time keeps the call; a channel nobody latched in
/// time takes no one after, so a late sender gets nothing either way.
#[test]
fn a_latch_window_stops_late_hijacks() {
    let _g = shared();
    let (p, m, addr) = reflector("sink_0::latch-window=1000", "");
    let h = Hijack::new();
    h.talk(addr, 0);
    std::thread::sleep(Duration::from_millis(1100));
    h.attack(addr, 5);
    h.talk(addr, 1);
    h.assert_held(&p, &m, 5);
    set_state(&p, gst::State::Null);

    let (p, m, addr) = reflector("sink_0::latch-window=200", "");
    std::thread::sleep(Duration::from_millis(300));
    h.attack(addr, 5);
    h.assert_held(&p, &m, 5);
    assert_eq!(field(&channel(&m, 0), "latched"), 0);
    set_state(&p, gst::State::Null);
}

/// `relatch-after`: a peer whose port changes (a NAT rebinding) is followed
/// once it has been silent that long and keeps its SSRC; an attacker with
/// another SSRC is never latched, during the call or in the silence.
#[test]
fn relatching_follows_the_peer_and_not_an_attacker() {
    let _g = shared();
    let (p, m, addr) = reflector("sink_0::relatch-after=300", "");
    let h = Hijack::new();
    h.talk(addr, 0);
    h.attack(addr, 3);
    std::thread::sleep(Duration::from_millis(400));
    h.attack(addr, 3);
    // The peer comes back from a new port, same SSRC: followed.
    let moved = Hijack {
        peer: peer(),
        attacker: h.attacker.try_clone().unwrap(),
    };
    moved.talk(addr, 1);
    moved.talk(addr, 2);
    let mut buf = [0u8; 2048];
    assert!(
        h.peer.recv_from(&mut buf).is_err(),
        "the old port gets nothing more"
    );
    moved.assert_held(&p, &m, 6);
    set_state(&p, gst::State::Null);
}

/// A UDP socket on `host` with a read timeout.
fn peer_on(host: &str) -> UdpSocket {
    let s = UdpSocket::bind((host, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Requests channel `index` (its sink pad only) with `props` set, each
/// from its string form as `gst-launch-1.0` takes it.
fn channel_pad(m: &gst::Element, index: u32, props: &[(&str, String)]) -> gst::Pad {
    let pad = m.request_pad_simple(&format!("sink_{index}")).unwrap();
    for (name, value) in props {
        pad.set_property_from_str(name, value);
    }
    pad
}

fn recv_on(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("a datagram");
    (buf[..n].to_vec(), from)
}

#[test]
fn relay_to_relays_both_ways_with_latching_loss_reorder_and_rtcp() {
    let _g = shared();
    let p = Pipe(gst::Pipeline::new());
    let m = gst::ElementFactory::make("rtpmuxserver").build().unwrap();
    p.add(&m).unwrap();
    for (index, to) in [(0, 1), (1, 0)] {
        channel_pad(
            &m,
            index,
            &[
                ("bind-address", "127.0.0.1".into()),
                ("relay-to", to.to_string()),
                ("rtcp", "mux".into()),
                // No reports of its own during the test.
                ("rtcp-interval", "3600000".into()),
            ],
        );
    }
    // Channel 0 also hands what it receives to src_0.
    let src0 = m.request_pad_simple("src_0").unwrap();
    let sink = gst_app::AppSink::builder().sync(false).build();
    p.add(&sink).unwrap();
    src0.link(&sink.static_pad("sink").unwrap()).unwrap();
    set_state(&p, gst::State::Playing);
    let port = |i: u32| loopback_addr(&m, &format!("sink_{i}"));
    let (a, b) = (peer(), peer());
    // b speaks first: channel 1 latches it; channel 0 has no target yet.
    b.send_to(&rtp(0, 0xb), port(1)).unwrap();
    wait_until("the first relay counted", || {
        field(&channel(&m, 0), "send-errors") == 1
    });
    // a latches channel 0; what it sends, with a gap and out of order,
    // reaches b from channel 1's port as it was.
    let order = [1u16, 2, 4, 3, 6, 7];
    for seq in order {
        a.send_to(&rtp(seq, 0xa), port(0)).unwrap();
    }
    for seq in order {
        assert_eq!(recv_on(&b), (rtp(seq, 0xa), port(1)));
    }
    // And back.
    b.send_to(&rtp(1, 0xb), port(1)).unwrap();
    assert_eq!(recv_on(&a), (rtp(1, 0xb), port(0)));
    // RTCP is relayed too: both channels carry it.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 0xa];
    a.send_to(&rr, port(0)).unwrap();
    assert_eq!(recv_on(&b), (rr.to_vec(), port(1)));
    // src_0 got channel 0's RTP; channel 1 has no src pad and drops
    // nothing for it.
    for seq in order {
        let s = sink.pull_sample().unwrap();
        let map = s.buffer().unwrap().map_readable().unwrap();
        assert_eq!(map.as_slice(), &rtp(seq, 0xa)[..]);
    }
    wait_until("everything counted", || {
        field(&channel(&m, 1), "packets-sent") == 7 && field(&stats(&m), "packets-pushed") >= 6
    });
    let (c0, c1) = (channel(&m, 0), channel(&m, 1));
    assert_eq!(field(&c0, "relayed"), 7, "6 RTP and 1 RTCP");
    assert_eq!(field(&c1, "relayed"), 2);
    assert_eq!(field(&c0, "packets-sent"), 1);
    assert_eq!(field(&c0, "send-errors"), 1, "before it latched");
    assert_eq!(field(&c1, "send-errors"), 0);
    // The relayed RTP is a's, not channel 1's own: its session sent none.
    assert_eq!(field(&c1, "rtp-packets-sent"), 0);
    let s = stats(&m);
    assert_eq!(field(&s, "packets-pushed"), 6);
    assert_eq!(field(&s, "dropped-downstream"), 0);
    assert_eq!(field(&s, "not-relayed"), 0);
    // Unlinked, src_0 takes nothing more, and nothing is dropped for it.
    src0.unlink(&sink.static_pad("sink").unwrap()).unwrap();
    for seq in [8u16, 9] {
        a.send_to(&rtp(seq, 0xa), port(0)).unwrap();
        assert_eq!(recv_on(&b), (rtp(seq, 0xa), port(1)));
    }
    wait_until("the relays after the unlink counted", || {
        field(&channel(&m, 0), "relayed") == 9
    });
    let s = stats(&m);
    assert_eq!(field(&s, "packets-pushed"), 6);
    assert_eq!(field(&s, "dropped-downstream"), 0);
    set_state(&p, gst::State::Null);
}

#[test]
fn linking_a_src_pad_to_a_sink_pad_of_the_same_element_is_refused_pointing_to_relay_to() {
    let _g = shared();
    let p = Pipe(gst::Pipeline::new());
    let m = gst::ElementFactory::make("rtpmuxserver").build().unwrap();
    p.add(&m).unwrap();
    // A bus in NULL drops what is posted.
    set_state(&p, gst::State::Ready);
    let src = m.request_pad_simple("src_0").unwrap();
    let sink = m.request_pad_simple("sink_1").unwrap();
    // GStreamer refuses it itself; forced past its checks, so does the
    // element, saying what to do instead.
    assert_eq!(src.link(&sink), Err(gst::PadLinkError::WrongHierarchy));
    assert_eq!(
        src.link_full(&sink, gst::PadLinkCheck::empty()),
        Err(gst::PadLinkError::WrongHierarchy)
    );
    assert!(!src.is_linked());
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(GST_TIMEOUT, &[gst::MessageType::Warning])
        .expect("a warning says why");
    let gst::MessageView::Warning(w) = msg.view() else {
        unreachable!()
    };
    assert!(w.error().to_string().contains("relay-to"), "{}", w.error());
    // Through another element it links.
    let q = gst::ElementFactory::make("queue").build().unwrap();
    p.add(&q).unwrap();
    src.link(&q.static_pad("sink").unwrap()).unwrap();
    q.static_pad("src").unwrap().link(&sink).unwrap();
}

/// 200 peers, each on its own socket, send 10 packets each to one shared
/// port of 200 channels (told apart by SSRC); each channel relays to a
/// channel on a second shared port, which sends to a third, whose 200
/// channels (told apart by SSRC too) receive. One channel pair is released
/// half-way. Returns the element's totals.
fn shared_ports(workers: u32) -> Vec<(&'static str, u64)> {
    const N: u32 = 200;
    const ROUNDS: u16 = 10;
    let p = Pipe(gst::Pipeline::new());
    let m = gst::ElementFactory::make("rtpmuxserver")
        .property("workers", workers)
        .build()
        .unwrap();
    p.add(&m).unwrap();
    let ssrc = |i: u32| 0x1000 + i;
    let shared = |port: u32| {
        vec![
            ("bind-address", "127.0.0.1".to_string()),
            ("shared-socket", "true".to_string()),
            ("bind-port", port.to_string()),
        ]
    };
    // Ports the system picks, read back from the first channel of each.
    let mut ports = [0u32; 3];
    set_state(&p, gst::State::Paused);
    for (group, port) in ports.iter_mut().enumerate() {
        for i in 0..N {
            let index = group as u32 * N + i;
            let mut props = shared(*port);
            props.push(("remote-ssrc", ssrc(i).to_string()));
            if group == 0 {
                props.push(("relay-to", (index + N).to_string()));
            }
            channel_pad(&m, index, &props);
            if i == 0 {
                *port = u32::from(local_port(&m, &format!("sink_{index}")));
            }
        }
    }
    // The second group sends to the third group's port.
    for i in 0..N {
        let pad = m.static_pad(&format!("sink_{}", N + i)).unwrap();
        pad.set_property("remote-address", "127.0.0.1");
        pad.set_property("remote-port", ports[2]);
    }
    set_state(&p, gst::State::Playing);
    for (group, port) in ports.iter().enumerate() {
        for i in 0..N {
            assert_eq!(
                u32::from(local_port(&m, &format!("sink_{}", group as u32 * N + i))),
                *port,
                "one port per group"
            );
        }
    }
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), ports[0] as u16);
    let peers: Vec<UdpSocket> = (0..N).map(|_| peer()).collect();
    for round in 0..ROUNDS {
        if round == ROUNDS / 2 {
            // Channel 7 and its relay go while the rest stream, once its
            // first half is through (what arrives after is nobody's).
            wait_until("channel 7's first half", || {
                field(&channel(&m, 2 * N + 7), "packets-received") == u64::from(ROUNDS / 2)
            });
            for index in [7, N + 7] {
                let pad = m.static_pad(&format!("sink_{index}")).unwrap();
                m.release_request_pad(&pad);
            }
        }
        for (i, peer) in peers.iter().enumerate() {
            peer.send_to(&rtp(round, ssrc(i as u32)), target).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // A stranger sending an SSRC nobody expects, and one sending a
    // latched channel's SSRC.
    let stranger = peer();
    stranger.send_to(&rtp(0, 0xdead), target).unwrap();
    stranger.send_to(&rtp(0, ssrc(3)), target).unwrap();
    // Each count is published by the worker that makes it, which may be
    // after the last receiver's: the totals are read once all of them
    // came, or at the timeout (the caller then sees what is missing).
    let through = u64::from(N * u32::from(ROUNDS) - u32::from(ROUNDS / 2));
    came_in_time(|| {
        let s = stats(&m);
        field(&s, "packets-received") == 2 * through + 1
            && field(&s, "packets-sent") == through
            && field(&s, "relayed") == through
            && field(&s, "dropped-unknown-source") == u64::from(ROUNDS / 2) + 1
            && field(&channel_in(&s, 3), "dropped-foreign-source") == 1
    });
    let s = stats(&m);
    for i in (0..N).filter(|&i| i != 7) {
        let a = channel_in(&s, i);
        assert_eq!(field(&a, "relayed"), u64::from(ROUNDS), "channel {i}");
        let c = channel_in(&s, 2 * N + i);
        // Each receiving channel got its own stream and no other.
        assert_eq!(
            field(&c, "remote-ssrc"),
            u64::from(ssrc(i)),
            "channel {}",
            2 * N + i
        );
        assert_eq!(field(&c, "dropped-foreign-source"), 0);
    }
    assert_eq!(field(&channel_in(&s, 3), "dropped-foreign-source"), 1);
    // The second half of peer 7's packets had no channel: unknown.
    set_state(&p, gst::State::Null);
    fields(
        &s,
        &[
            "packets-received",
            "packets-sent",
            "relayed",
            "not-relayed",
            "dropped-unknown-source",
            "dropped-foreign-source",
            "dropped-queue-full",
            "send-errors",
            "dropped-kernel",
        ],
    )
}

#[test]
fn shared_ports_deliver_every_packet_to_its_own_channel_with_one_or_two_workers() {
    let _g = shared();
    let one = shared_ports(1);
    // 200 × 10 in, relayed, sent and received again, less channel 7's
    // second half; a stranger's two; nothing lost or misplaced.
    let (n, rounds, half) = (200u64, 10u64, 5u64);
    let through = n * rounds - half;
    let expected = vec![
        ("packets-received", 2 * through + 1),
        ("packets-sent", through),
        ("relayed", through),
        ("not-relayed", 0),
        ("dropped-unknown-source", half + 1),
        ("dropped-foreign-source", 1),
        ("dropped-queue-full", 0),
        ("send-errors", 0),
        ("dropped-kernel", 0),
    ];
    assert_eq!(one, expected);
    assert_eq!(shared_ports(2), expected);
}

#[test]
fn a_shared_socket_serves_ipv6_too() {
    let _g = shared();
    let p = Pipe(gst::Pipeline::new());
    let m = gst::ElementFactory::make("rtpmuxserver").build().unwrap();
    p.add(&m).unwrap();
    set_state(&p, gst::State::Paused);
    let mut port = 0u32;
    for i in 0..2u32 {
        channel_pad(
            &m,
            i,
            &[
                ("bind-address", "::1".into()),
                ("shared-socket", "true".into()),
                ("bind-port", port.to_string()),
                ("remote-ssrc", (0x60 + i).to_string()),
                // An echo: each channel sends back what it receives.
                ("relay-to", i.to_string()),
            ],
        );
        port = u32::from(local_port(&m, &format!("sink_{i}")));
    }
    set_state(&p, gst::State::Playing);
    let target: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let peers = [peer_on("::1"), peer_on("::1")];
    for (i, peer) in peers.iter().enumerate() {
        peer.send_to(&rtp(1, 0x60 + i as u32), target).unwrap();
    }
    for (i, peer) in peers.iter().enumerate() {
        assert_eq!(recv_on(peer), (rtp(1, 0x60 + i as u32), target));
    }
    set_state(&p, gst::State::Null);
}

/// From gst-launch syntax alone, with no pad linked: `sink_N::` properties
/// request the channel, so a relay (here an echo) needs no links.
#[test]
fn a_relay_needs_no_links_from_launch_syntax() {
    let _g = shared();
    let p = pipeline(
        "rtpmuxserver name=m sink_0::bind-address=127.0.0.1 sink_0::relay-to=0 \
         fakesrc num-buffers=0 ! fakesink",
    );
    let m: gst::Element = by_name(&p, "m");
    set_state(&p, gst::State::Playing);
    let addr = loopback_addr(&m, "sink_0");
    let peer = peer();
    peer.send_to(&rtp(1, 9), addr).unwrap();
    assert_eq!(recv_on(&peer), (rtp(1, 9), addr));
    set_state(&p, gst::State::Null);
}

/// `relay-offload`: a two-way relay from launch syntax whose RTP the
/// kernel forwards once both channels have their peer, counted as the
/// worker counts it and told apart in `relayed-offloaded`; RTCP still goes
/// through the worker (and everything where the offload cannot load,
/// [`play_with_offload`]).
#[test]
fn relay_offload_forwards_in_the_kernel_and_counts_what_it_forwarded() {
    let _g = shared();
    let p = pipeline(
        "rtpmuxserver name=m relay-offload=true \
         sink_0::bind-address=127.0.0.1 sink_0::relay-to=1 sink_0::rtcp=mux \
         sink_0::rtcp-interval=3600000 sink_0::clock-rate=8000 \
         sink_1::bind-address=127.0.0.1 sink_1::relay-to=0 sink_1::rtcp=mux \
         sink_1::rtcp-interval=3600000 sink_1::clock-rate=8000 \
         fakesrc num-buffers=0 ! fakesink",
    );
    let m: gst::Element = by_name(&p, "m");
    let offloaded = play_with_offload(&p, &m);
    let port = |i: u32| loopback_addr(&m, &format!("sink_{i}"));
    let (a, b) = (peer(), peer());
    // b first: channel 1 latches it; then each way, so both sessions
    // confirm their source and the routes go in.
    b.send_to(&rtp(0, 0xb), port(1)).unwrap();
    wait_until("channel 1 latched", || {
        field(&channel(&m, 1), "latched") == 1
    });
    let mut sent = (0u64, 1u64);
    let mut both_ways = |seq: u16| {
        a.send_to(&rtp(seq, 0xa), port(0)).unwrap();
        assert_eq!(recv_on(&b), (rtp(seq, 0xa), port(1)), "seq {seq}");
        b.send_to(&rtp(seq, 0xb), port(1)).unwrap();
        assert_eq!(recv_on(&a), (rtp(seq, 0xb), port(0)), "seq {seq}");
        sent = (sent.0 + 1, sent.1 + 1);
    };
    for seq in 1..4 {
        both_ways(seq);
    }
    std::thread::sleep(Duration::from_millis(300));
    for seq in 4..204 {
        both_ways(seq);
    }
    // RTCP keeps to the worker, which relays it.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 0xa];
    a.send_to(&rr, port(0)).unwrap();
    assert_eq!(recv_on(&b), (rr.to_vec(), port(1)));
    let (sent_a, sent_b) = (sent.0 + 1, sent.1);
    wait_until("every packet counted", || {
        field(&channel(&m, 0), "packets-received") == sent_a
            && field(&channel(&m, 1), "packets-received") == sent_b
    });
    let (c0, c1) = (channel(&m, 0), channel(&m, 1));
    assert_eq!(field(&c0, "relayed"), sent_a);
    assert_eq!(field(&c1, "relayed"), sent_b);
    assert_eq!(field(&c1, "packets-sent"), sent_a);
    // b's first reached channel 0 before it had a target.
    assert_eq!(field(&c0, "packets-sent"), sent_b - 1);
    assert_eq!(field(&c0, "send-errors"), 1);
    assert_eq!(field(&c0, "rtcp-received"), 1);
    // Sessions count every RTP packet but each source's first (probation).
    assert_eq!(field(&c0, "rtp-packets-received"), sent_a - 2);
    assert_eq!(field(&c1, "rtp-packets-received"), sent_b - 1);
    assert_eq!(c0.get::<i64>("packets-lost").unwrap(), 0);
    let (o0, o1) = (
        field(&c0, "relayed-offloaded"),
        field(&c1, "relayed-offloaded"),
    );
    if offloaded {
        // All of the 200 after the pause but a few on the way in.
        assert!(o0 >= 195 && o1 >= 195, "{o0} {o1}");
        assert_eq!(field(&stats(&m), "relayed-offloaded"), o0 + o1);
    } else {
        assert_eq!((o0, o1), (0, 0));
    }
    set_state(&p, gst::State::Null);
}

/// Sets `p` playing with `m`'s `relay-offload` on; returns whether the
/// offload loaded: where it cannot (not root, an old kernel) a WARNING says
/// why and the workers relay, which fails the test when `make test` set
/// RTPSYNTH_REQUIRE_OFFLOAD.
fn play_with_offload(p: &gst::Pipeline, m: &gst::Element) -> bool {
    assert!(m.property::<bool>("relay-offload"));
    set_state(p, gst::State::Playing);
    let warning = p.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_mseconds(200),
        &[gst::MessageType::Warning],
    );
    match warning.as_ref().map(|w| w.view()) {
        Some(gst::MessageView::Warning(w)) => {
            let text = w.error().to_string();
            assert!(text.contains("relay-offload not available"), "{text}");
            assert!(
                std::env::var_os("RTPSYNTH_REQUIRE_OFFLOAD").is_none(),
                "relay offload required: {text}"
            );
            false
        }
        _ => true,
    }
}

/// `relay-offload` on a one-way relay from launch syntax: channel 1's
/// target (a recorder, set by `remote-address`/`remote-port`) never sends,
/// and the kernel still forwards what channel 0 relays to it, having
/// learnt the way from the worker's first sends; counted as the worker
/// counts it.
#[test]
fn relay_offload_forwards_a_one_way_relay_to_a_peer_that_never_sends() {
    let _g = shared();
    let recorder = peer();
    let p = pipeline(&format!(
        "rtpmuxserver name=m relay-offload=true \
         sink_0::bind-address=127.0.0.1 sink_0::relay-to=1 \
         sink_1::bind-address=127.0.0.1 sink_1::remote-address=127.0.0.1 \
         sink_1::remote-port={} \
         fakesrc num-buffers=0 ! fakesink",
        recorder.local_addr().unwrap().port()
    ));
    let m: gst::Element = by_name(&p, "m");
    let offloaded = play_with_offload(&p, &m);
    let port = |i: u32| loopback_addr(&m, &format!("sink_{i}"));
    let a = peer();
    let send = |seq: u16| {
        a.send_to(&rtp(seq, 0xa), port(0)).unwrap();
        assert_eq!(recv_on(&recorder), (rtp(seq, 0xa), port(1)), "seq {seq}");
    };
    for seq in 0..3 {
        send(seq);
    }
    std::thread::sleep(Duration::from_millis(300));
    for seq in 3..203 {
        send(seq);
    }
    wait_until("every packet counted", || {
        field(&channel(&m, 0), "relayed") == 203 && field(&channel(&m, 1), "packets-sent") == 203
    });
    let c0 = channel(&m, 0);
    assert_eq!(field(&c0, "packets-received"), 203);
    assert_eq!(field(&c0, "rtp-packets-received"), 202, "but the first");
    assert_eq!(c0.get::<i64>("packets-lost").unwrap(), 0);
    let o0 = field(&c0, "relayed-offloaded");
    if offloaded {
        assert!(o0 >= 195, "{o0}");
    } else {
        assert_eq!(o0, 0);
    }
    set_state(&p, gst::State::Null);
}

/// Every datagram of the `src_all` buffers `sink` holds now or within
/// `TIMEOUT`, until `want` have come, with the number of buffers.
fn pull_batches(sink: &gst_app::AppSink, want: usize) -> (Vec<(u32, SocketAddr, Vec<u8>)>, usize) {
    let mut got = Vec::new();
    let mut buffers = 0;
    while got.len() < want {
        let sample = sink
            .try_pull_sample(GST_TIMEOUT)
            .unwrap_or_else(|| panic!("{} of {want} datagrams came", got.len()));
        let caps = sample.caps().unwrap().structure(0).unwrap().to_owned();
        assert_eq!(caps.name(), "application/x-rtpmuxserver-batch");
        assert_eq!(caps.get::<i32>("layout").unwrap(), 1);
        let buffer = sample.buffer().unwrap();
        assert!(buffer.pts().is_some(), "a batch has its arrival time");
        let map = buffer.map_readable().unwrap();
        let batch = rtpsynth_core::batch::read(&map).unwrap();
        assert!(!batch.is_empty(), "no empty batch is pushed");
        got.extend(
            batch
                .iter()
                .map(|r| (r.channel, r.from, r.datagram.to_vec())),
        );
        buffers += 1;
    }
    (got, buffers)
}

/// `src_all` takes what channels without their own `src_N` receive, from
/// shared and own sockets, IPv4 and IPv6, relaying or not, from two workers,
/// in batches; a channel with `src_N` keeps its packets; unlinked, `src_all`
/// counts what it would have pushed.
#[test]
fn src_all_carries_in_batches_what_channels_without_src_n_receive() {
    let _g = shared();
    const N: u32 = 40;
    const ROUNDS: u16 = 6;
    let p = Pipe(gst::Pipeline::new());
    let m = gst::ElementFactory::make("rtpmuxserver")
        .property("workers", 2u32)
        .property("tick", 5u32)
        .build()
        .unwrap();
    let all_sink = gst_app::AppSink::builder().sync(false).build();
    let own_sink = gst_app::AppSink::builder().sync(false).build();
    p.add_many([&m, all_sink.upcast_ref(), own_sink.upcast_ref()])
        .unwrap();
    let all = m.request_pad_simple("src_all").unwrap();
    assert_eq!(all.name(), "src_all");
    all.link(&all_sink.static_pad("sink").unwrap()).unwrap();
    set_state(&p, gst::State::Paused);
    let ssrc = |i: u32| 0x7000 + i;
    let mut port = 0u32;
    for i in 0..N {
        channel_pad(
            &m,
            i,
            &[
                ("bind-address", "127.0.0.1".into()),
                ("shared-socket", "true".into()),
                ("bind-port", port.to_string()),
                ("remote-ssrc", ssrc(i).to_string()),
            ],
        );
        port = u32::from(local_port(&m, &format!("sink_{i}")));
    }
    // N: its own src_N; N + 1: IPv6; N + 2: an echo, relaying to itself.
    channel_pad(&m, N, &[("bind-address", "127.0.0.1".into())]);
    m.request_pad_simple(&format!("src_{N}"))
        .unwrap()
        .link(&own_sink.static_pad("sink").unwrap())
        .unwrap();
    channel_pad(&m, N + 1, &[("bind-address", "::1".into())]);
    channel_pad(
        &m,
        N + 2,
        &[
            ("bind-address", "127.0.0.1".into()),
            ("relay-to", (N + 2).to_string()),
        ],
    );
    set_state(&p, gst::State::Playing);
    let v4 = |port: u16| SocketAddr::new("127.0.0.1".parse().unwrap(), port);
    let mut targets: Vec<SocketAddr> = (0..N).map(|_| v4(port as u16)).collect();
    targets.push(v4(local_port(&m, &format!("sink_{N}"))));
    targets.push(
        format!("[::1]:{}", local_port(&m, &format!("sink_{}", N + 1)))
            .parse()
            .unwrap(),
    );
    targets.push(v4(local_port(&m, &format!("sink_{}", N + 2))));
    let peers: Vec<UdpSocket> = targets
        .iter()
        .map(|t| peer_on(localhost(t.is_ipv6())))
        .collect();
    let send_round = |round: u16| {
        for (i, (peer, target)) in peers.iter().zip(&targets).enumerate() {
            peer.send_to(&rtp(round, ssrc(i as u32)), target).unwrap();
        }
    };
    for round in 0..ROUNDS {
        send_round(round);
        std::thread::sleep(Duration::from_millis(2));
    }
    let want = (N as usize + 2) * usize::from(ROUNDS);
    let (got, buffers) = pull_batches(&all_sink, want);
    assert_eq!(got.len(), want, "no more than sent");
    assert!(buffers < want / 4, "{buffers} buffers for {want} datagrams");
    for (i, peer) in peers.iter().enumerate().filter(|&(i, _)| i != N as usize) {
        let from = peer.local_addr().unwrap();
        let mine: Vec<&Vec<u8>> = got
            .iter()
            .filter(|(_, f, _)| *f == from)
            .map(|(channel, _, d)| {
                assert_eq!(*channel, i as u32, "from {from}");
                d
            })
            .collect();
        let sent: Vec<Vec<u8>> = (0..ROUNDS).map(|r| rtp(r, ssrc(i as u32))).collect();
        assert_eq!(
            mine,
            sent.iter().collect::<Vec<_>>(),
            "channel {i}, in order"
        );
    }
    assert!(got.iter().all(|(channel, _, _)| *channel != N));
    for round in 0..ROUNDS {
        let (data, from, _) = pull(&own_sink);
        assert_eq!(
            (data, from),
            (rtp(round, ssrc(N)), peers[N as usize].local_addr().unwrap())
        );
    }
    for round in 0..ROUNDS {
        let echo = &peers[N as usize + 2];
        assert_eq!(
            recv_on(echo),
            (rtp(round, ssrc(N + 2)), targets[N as usize + 2])
        );
    }
    // A push is counted when it returns, which can be after the sink has
    // handed its buffer to this thread.
    let pushed = (want + usize::from(ROUNDS)) as u64;
    wait_until("every push counted", || {
        field(&stats(&m), "packets-pushed") >= pushed
    });
    let s = stats(&m);
    assert_eq!(field(&s, "packets-pushed"), pushed);
    assert_eq!(field(&s, "dropped-downstream"), 0);

    // Unlinked, src_all costs nothing and what it would have carried is
    // counted, but for the echo's packets, which went on.
    all.unlink(&all_sink.static_pad("sink").unwrap()).unwrap();
    send_round(ROUNDS);
    // What src_all would have carried is counted after the packets are.
    wait_until("the round after the unlink", || {
        let s = stats(&m);
        field(&s, "packets-received") == (peers.len() * (usize::from(ROUNDS) + 1)) as u64
            && field(&s, "dropped-downstream") > u64::from(N)
    });
    let s = stats(&m);
    assert_eq!(field(&s, "dropped-downstream"), u64::from(N) + 1);
    m.release_request_pad(&all);
    assert!(m.static_pad("src_all").is_none());
    assert!(m.request_pad_simple("src_all").is_some(), "requested again");
    set_state(&p, gst::State::Null);
}
