//! Any byte string: the parser either refuses it with a fault or returns a
//! view whose every accessor stays inside the datagram.
#![no_main]

use rtpsynth_core::rtp::Packet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::parse(data) {
        let r = p.payload_range();
        assert!(r.start <= r.end && r.end <= data.len());
        assert_eq!(p.payload().len() + p.padding_len(), data.len() - r.start);
        assert!(p.csrcs().count() <= 15);
        if let Some(ext) = p.extension() {
            assert_eq!(ext.data.len() % 4, 0);
        }
        let _ = (p.marker(), p.payload_type(), p.seq(), p.timestamp(), p.ssrc());
    }
});
