//! The order in which writes reach the device, not only the order in which
//! they are issued: a target that records every write and every flush, and
//! the rule that makes a power cut harmless. The busy marker is on the
//! device before the checksum that covers it; all dump data is on the device
//! before the ELF header block, which makes the dump look complete; the
//! header is on the device before the checksum that covers it.

use crate::common::*;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use zfcpdump_agent::disk::DumpTarget;
use zfcpdump_agent::run_with;
use zfcpdump_format::busy::BUSY_MARKER;
use zfcpdump_format::elf::ELF_MAGIC;
use zfcpdump_format::superblock::csum_field_offset;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Write { at: u64, len: u64, head: Vec<u8> },
    Sync,
    Writeback,
}

/// The real image file, with every operation on it recorded.
struct Recorder<'a> {
    file: File,
    events: &'a mut Vec<Event>,
}

impl Recorder<'_> {
    fn wrote(&mut self, buf: &[u8], at: u64) {
        self.events.push(Event::Write {
            at,
            len: buf.len() as u64,
            head: buf[..buf.len().min(16)].to_vec(),
        });
    }
}

impl DumpTarget for Recorder<'_> {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.wrote(buf, offset);
        self.file.write_all_at(buf, offset)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.events.push(Event::Sync);
        self.file.sync_all()
    }
    fn start_writeback(&mut self) -> io::Result<()> {
        self.events.push(Event::Writeback);
        Ok(())
    }
}

/// Where each kind of write went, as indices into the event list.
struct Order {
    events: Vec<Event>,
    marker: usize,
    header: usize,
    csums: Vec<usize>,
    data: Vec<usize>,
}

fn record(w: &World, config: Option<&str>) -> Order {
    let mut env = w.env();
    if let Some(text) = config {
        let p = w.dir.path().join("zfcpdump.conf");
        std::fs::write(&p, text).unwrap();
        env.config = Some(p);
    }
    let mut events = Vec::new();
    run_with(&env, |file| Recorder {
        file,
        events: &mut events,
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    let area = w.layout.dump_area();
    let field = csum_field_offset(w.layout.sb_offset);
    let first_block: Range<u64> = area.start..area.start + 4096;
    let (mut marker, mut header, mut csums, mut data) = (None, None, Vec::new(), Vec::new());
    for (i, e) in events.iter().enumerate() {
        let Event::Write { at, len, head } = e else {
            continue;
        };
        if *at == field {
            csums.push(i);
        } else if *at == area.start && head[..] == BUSY_MARKER[..] {
            assert!(marker.replace(i).is_none(), "two busy markers: {events:?}");
        } else if *at == area.start && head.starts_with(&ELF_MAGIC) {
            assert!(header.replace(i).is_none(), "two ELF headers");
        } else {
            assert!(
                *at >= area.start && at + len <= area.end,
                "write {at:#x}+{len} outside the dump area {area:?}"
            );
            assert!(
                !first_block.contains(at),
                "a write into the first block other than marker and header: {at:#x}+{len}"
            );
            data.push(i);
        }
    }
    Order {
        marker: marker.expect("no busy marker written"),
        header: header.expect("no ELF header written"),
        csums,
        data,
        events,
    }
}

impl Order {
    /// Whether a flush comes after event `a` and before event `b`.
    fn flushed_between(&self, a: usize, b: usize) -> bool {
        self.events[a + 1..b].contains(&Event::Sync)
    }

    fn check(&self) {
        let [csum1, csum2] = self.csums[..] else {
            panic!("expected two checksum updates, got {:?}", self.csums);
        };
        assert!(self.marker < csum1 && csum1 < self.header && self.header < csum2);
        assert!(
            self.flushed_between(self.marker, csum1),
            "the busy marker is not flushed before the checksum covers it"
        );
        assert!(
            self.flushed_between(csum1, self.data[0]),
            "the checksum over the busy marker is not flushed before the data"
        );
        let last = *self.data.last().unwrap();
        assert!(last < self.header, "data written after the ELF header");
        assert!(
            self.flushed_between(last, self.header),
            "data written at event {last} is not flushed before the ELF header (event {}): {:?}",
            self.header,
            &self.events[last..=self.header]
        );
        assert!(
            self.flushed_between(self.header, csum2),
            "the ELF header is not flushed before the checksum covers it"
        );
        assert_eq!(
            self.events.last(),
            Some(&Event::Sync),
            "the last checksum is not flushed"
        );
    }
}

/// About 12 MiB: past one writeback interval, within the ~14 MiB dump area.
fn big() -> vmcore_fixture::Spec {
    spec().ranges(vec![(0, 8 * MIB), (9 * MIB, 3 * MIB)])
}

#[test]
fn byte_exact_dump_flushes_data_before_the_header() {
    let w = World::new(512, big());
    let o = record(&w, None);
    o.check();
    // A copy past 8 MiB starts writeback on the way (which reports errors).
    assert!(o.events.contains(&Event::Writeback));
    assert_dump_is_vmcore(&w);
}

#[test]
fn filtered_dump_flushes_data_before_the_header() {
    let w = World::new(4096, big().zero_fraction(0.5));
    let o = record(&w, Some("dump_level = 1\n"));
    o.check();
    // The filtered writer writes its later program header pages before the barrier.
    assert!(o.data.len() > 2);
}

/// The rule itself can fail: the same check on a recording without the
/// flush before the header.
#[test]
fn the_order_check_catches_a_missing_flush() {
    let w = World::new(512, spec());
    let mut o = record(&w, None);
    let last = *o.data.last().unwrap();
    let syncs: Vec<usize> = (last + 1..o.header)
        .filter(|&i| o.events[i] == Event::Sync)
        .collect();
    assert!(!syncs.is_empty());
    for i in syncs.into_iter().rev() {
        o.events[i] = Event::Writeback;
    }
    let caught = std::panic::catch_unwind(|| o.check()).is_err();
    assert!(caught, "a dump without the barrier passed the check");
}
