//! Any byte string: the parser either refuses it with a fault or returns a
//! view whose every accessor stays inside the datagram, and which the writer
//! turns back into the same datagram (padding bytes other than the count
//! aside: the writer zeroes them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtpsynth_core::rtp::{Extras, Header, Packet, write_packet};

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Packet::parse(data) else {
        return;
    };
    let r = p.payload_range();
    assert!(r.start <= r.end && r.end <= data.len());
    assert_eq!(p.payload().len() + p.padding_len(), data.len() - r.start);
    assert_eq!(p.has_padding(), p.padding_len() > 0);
    assert!(p.padding_len() <= 255);
    assert!(p.csrcs().count() <= 15);
    if let Some(ext) = p.extension() {
        assert_eq!(ext.data.len() % 4, 0);
    }

    let mut csrcs = [0u32; 15];
    for (c, v) in csrcs.iter_mut().zip(p.csrcs()) {
        *c = v;
    }
    let header = Header {
        marker: p.marker(),
        payload_type: p.payload_type(),
        seq: p.seq(),
        timestamp: p.timestamp(),
        ssrc: p.ssrc(),
    };
    let extras = Extras {
        csrcs: &csrcs[..p.csrc_count()],
        extension: p.extension(),
        padding: p.padding_len() as u8,
    };
    let mut out = vec![0u8; data.len()];
    let len = write_packet(&mut out, &header, &extras, p.payload()).expect("a parsed packet fits");
    assert_eq!(len, data.len());
    let unpadded = r.end;
    assert_eq!(
        out[..unpadded],
        data[..unpadded],
        "header, CSRCs, extension, payload"
    );
    if p.has_padding() {
        assert_eq!(out[len - 1], data[len - 1], "pad count");
    }
});
