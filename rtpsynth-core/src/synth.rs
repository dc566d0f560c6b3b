//! RTP stream synthesis core, free of GStreamer.
//!
//! [`Synth`] produces the packets of one continuous RTP stream: sequence
//! numbers +1 per packet, timestamps + clock-rate × ptime / 1000 per packet,
//! the marker bit on the first packet and on the first after a resync.

use crate::rtp::{HEADER_LEN, Header, MAX_UDP_PAYLOAD};
use std::fmt;

/// A payload type's registered name and clock rate (RFC 3551 table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaticPayload {
    pub encoding_name: &'static str,
    pub clock_rate: u32,
}

/// Static payload types of RFC 3551 (audio), by number.
pub fn static_payload(pt: u8) -> Option<StaticPayload> {
    let (encoding_name, clock_rate) = match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        5 => ("DVI4", 8000),
        6 => ("DVI4", 16000),
        7 => ("LPC", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        10 | 11 => ("L16", 44100),
        12 => ("QCELP", 8000),
        13 => ("CN", 8000),
        14 => ("MPA", 90000),
        15 => ("G728", 8000),
        16 => ("DVI4", 11025),
        17 => ("DVI4", 22050),
        18 => ("G729", 8000),
        _ => return None,
    };
    Some(StaticPayload {
        encoding_name,
        clock_rate,
    })
}

/// The byte that decodes to silence for an encoding name: 0xFF for PCMU,
/// 0xD5 for PCMA, 0 otherwise.
pub fn silence_byte(encoding_name: &str) -> u8 {
    if encoding_name.eq_ignore_ascii_case("PCMU") {
        0xff
    } else if encoding_name.eq_ignore_ascii_case("PCMA") {
        0xd5
    } else {
        0
    }
}

/// What a stream is made of. Sizes are in bytes, times in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub payload_type: u8,
    pub clock_rate: u32,
    pub ptime_ms: u32,
    pub payload_size: usize,
    pub ssrc: u32,
    pub first_seq: u16,
    pub first_timestamp: u32,
}

/// A setting that cannot make a stream; the text names the property and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    PayloadSizeZero,
    PacketTooLarge { payload_size: usize },
    PtimeNotWholeSamples { ptime_ms: u32, clock_rate: u32 },
    PtimeZero,
    ClockRateZero,
    PayloadTypeTooLarge { payload_type: u8 },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::PayloadSizeZero => {
                f.write_str("payload-size 0: a packet needs at least one payload byte")
            }
            ConfigError::PacketTooLarge { payload_size } => write!(
                f,
                "payload-size {payload_size}: the packet ({} bytes with its header) is over the {MAX_UDP_PAYLOAD}-byte UDP limit",
                payload_size + HEADER_LEN
            ),
            ConfigError::PtimeNotWholeSamples {
                ptime_ms,
                clock_rate,
            } => write!(
                f,
                "ptime {ptime_ms} ms at clock-rate {clock_rate} Hz gives {} samples, not a whole number",
                f64::from(clock_rate) * f64::from(ptime_ms) / 1000.0
            ),
            ConfigError::PtimeZero => f.write_str("ptime 0: packets need a duration"),
            ConfigError::ClockRateZero => {
                f.write_str("clock-rate 0: the clock rate must be at least 1 Hz")
            }
            ConfigError::PayloadTypeTooLarge { payload_type } => {
                write!(
                    f,
                    "payload-type {payload_type}: RTP payload types are 0 to 127"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// RTP timestamp units per packet, if ptime gives a whole number.
    pub fn samples_per_packet(&self) -> Result<u32, ConfigError> {
        if self.clock_rate == 0 {
            return Err(ConfigError::ClockRateZero);
        }
        if self.ptime_ms == 0 {
            return Err(ConfigError::PtimeZero);
        }
        let units = u64::from(self.clock_rate) * u64::from(self.ptime_ms);
        if units % 1000 != 0 || units / 1000 > u64::from(u32::MAX) {
            return Err(ConfigError::PtimeNotWholeSamples {
                ptime_ms: self.ptime_ms,
                clock_rate: self.clock_rate,
            });
        }
        Ok((units / 1000) as u32)
    }

    /// Checks every setting; the stream can be made exactly when this is Ok.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.payload_type > 127 {
            return Err(ConfigError::PayloadTypeTooLarge {
                payload_type: self.payload_type,
            });
        }
        self.samples_per_packet()?;
        if self.payload_size == 0 {
            return Err(ConfigError::PayloadSizeZero);
        }
        if self.payload_size > MAX_UDP_PAYLOAD - HEADER_LEN {
            return Err(ConfigError::PacketTooLarge {
                payload_size: self.payload_size,
            });
        }
        Ok(())
    }
}

/// Produces the packets of one stream. Never allocates after construction.
#[derive(Debug, Clone)]
pub struct Synth {
    next: Header,
    ts_step: u32,
    payload_size: usize,
    packets: u64,
    resyncs: u64,
}

impl Synth {
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Synth {
            next: Header {
                marker: true,
                payload_type: config.payload_type,
                seq: config.first_seq,
                timestamp: config.first_timestamp,
                ssrc: config.ssrc,
            },
            ts_step: config.samples_per_packet()?,
            payload_size: config.payload_size,
            packets: 0,
            resyncs: 0,
        })
    }

    /// Bytes in each packet: header and payload.
    #[inline]
    pub fn packet_len(&self) -> usize {
        HEADER_LEN + self.payload_size
    }

    /// RTP timestamp units between consecutive packets.
    #[inline]
    pub fn ts_step(&self) -> u32 {
        self.ts_step
    }

    /// Packets produced so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Resyncs so far (each marks the packet after it).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Returns the next packet's header and steps to the one after it.
    #[inline]
    pub fn next_header(&mut self) -> Header {
        let h = self.next;
        self.next.marker = false;
        self.next.seq = h.seq.wrapping_add(1);
        self.next.timestamp = h.timestamp.wrapping_add(self.ts_step);
        self.packets += 1;
        h
    }

    /// Writes the next packet (header, then `payload_size` bytes of `fill`)
    /// at the start of `out` and returns its length, or None if `out` is too
    /// small (then nothing is consumed).
    #[inline]
    pub fn write_next(&mut self, out: &mut [u8], fill: u8) -> Option<usize> {
        let len = self.packet_len();
        let packet = out.get_mut(..len)?;
        packet[..HEADER_LEN].copy_from_slice(&self.next_header().to_bytes());
        packet[HEADER_LEN..].fill(fill);
        Some(len)
    }

    /// Like [`Synth::write_next`] but only the 12 header bytes: for buffers
    /// whose payload already holds the fill.
    #[inline]
    pub fn write_next_header(&mut self, out: &mut [u8; HEADER_LEN]) {
        *out = self.next_header().to_bytes();
    }

    /// Starts a new talk spurt after `gap_packets` packet times without
    /// packets: the timestamp moves on by that many packets (so the receiver's
    /// timeline stays continuous), the sequence number does not (no packets
    /// were lost), and the next packet carries the marker bit.
    pub fn resync(&mut self, gap_packets: u64) {
        let advance = (gap_packets as u32).wrapping_mul(self.ts_step);
        self.next.timestamp = self.next.timestamp.wrapping_add(advance);
        self.next.marker = true;
        self.resyncs += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::Packet;

    fn pcmu() -> Config {
        Config {
            payload_type: 0,
            clock_rate: 8000,
            ptime_ms: 20,
            payload_size: 160,
            ssrc: 0x1234_5678,
            first_seq: 65000,
            first_timestamp: u32::MAX - 1000,
        }
    }

    #[test]
    fn steps_follow_clock_rate_and_ptime() {
        assert_eq!(pcmu().samples_per_packet(), Ok(160));
        let wide = Config {
            clock_rate: 48000,
            ..pcmu()
        };
        assert_eq!(wide.samples_per_packet(), Ok(960));
        let odd = Config {
            clock_rate: 11025,
            ..pcmu()
        };
        assert!(matches!(
            odd.samples_per_packet(),
            Err(ConfigError::PtimeNotWholeSamples { .. })
        ));
        assert!(odd.validate().unwrap_err().to_string().contains("ptime 20"));
    }

    #[test]
    fn bad_settings_name_property_and_value() {
        let e = Config {
            payload_size: 0,
            ..pcmu()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().starts_with("payload-size 0"), "{e}");
        let e = Config {
            payload_size: 65_496,
            ..pcmu()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("payload-size 65496"), "{e}");
        assert!(
            Config {
                payload_size: 65_495,
                ..pcmu()
            }
            .validate()
            .is_ok(),
            "65,507-byte packet fits"
        );
        assert!(
            Config {
                ptime_ms: 0,
                ..pcmu()
            }
            .validate()
            .is_err()
        );
        assert!(
            Config {
                clock_rate: 0,
                ..pcmu()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn exact_headers_with_marker_resync_and_wraps() {
        let mut s = Synth::new(&pcmu()).unwrap();
        let mut buf = [0u8; 172];
        let mut prev: Option<(u16, u32)> = None;
        for i in 0..1000u32 {
            if i == 600 {
                s.resync(25);
            }
            let len = s.write_next(&mut buf, 0xff).unwrap();
            let p = Packet::parse(&buf[..len]).unwrap();
            assert_eq!(p.marker(), i == 0 || i == 600, "marker at {i}");
            assert_eq!(p.ssrc(), 0x1234_5678);
            assert_eq!(p.payload(), &[0xff; 160][..]);
            let expect_seq = 65000u16.wrapping_add(i as u16);
            let expect_ts = (u32::MAX - 1000)
                .wrapping_add(160 * i)
                .wrapping_add(if i >= 600 { 25 * 160 } else { 0 });
            assert_eq!(
                (p.seq(), p.timestamp()),
                (expect_seq, expect_ts),
                "packet {i}"
            );
            if let Some((ps, _)) = prev {
                assert_eq!(p.seq(), ps.wrapping_add(1));
            }
            prev = Some((p.seq(), p.timestamp()));
        }
        assert_eq!((s.packets(), s.resyncs()), (1000, 1));
    }

    #[test]
    fn header_only_write_matches_full_write() {
        let mut a = Synth::new(&pcmu()).unwrap();
        let mut b = a.clone();
        let mut full = [0u8; 172];
        a.write_next(&mut full, 0xff).unwrap();
        let mut hdr = [0u8; HEADER_LEN];
        b.write_next_header(&mut hdr);
        assert_eq!(&full[..HEADER_LEN], &hdr);
        assert!(
            a.write_next(&mut [0u8; 100], 0).is_none(),
            "short buffer refused"
        );
    }

    #[test]
    fn static_table_and_silence() {
        assert_eq!(static_payload(0).map(|p| p.encoding_name), Some("PCMU"));
        assert_eq!(static_payload(8).map(|p| p.clock_rate), Some(8000));
        assert_eq!(static_payload(96), None);
        assert_eq!(silence_byte("pcmu"), 0xff);
        assert_eq!(silence_byte("OPUS"), 0);
    }
}
