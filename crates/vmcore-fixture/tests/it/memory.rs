//! Memory content: recomputable, deterministic, zero pages as requested.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::common::*;
use vmcore_fixture::{
    Fixture, PageKind, Spec, expected_memory, file_size, fill_memory, page_kind, write_vmcore,
};

fn page_is_zero(p: &[u8]) -> bool {
    p.iter().all(|&b| b == 0)
}

/// Zero pages / all pages over the identity PT_LOADs, read from the file.
fn measured_zero_fraction(data: &[u8], spec: &Spec) -> (usize, usize) {
    let mut zero = 0;
    let mut total = 0;
    for p in loads(data) {
        if !spec.ranges.contains(&(p.paddr, p.filesz)) {
            continue; // the kernel image duplicates identity memory
        }
        let bytes = &data[p.offset as usize..(p.offset + p.filesz) as usize];
        for page in bytes.chunks(PAGE as usize) {
            total += 1;
            zero += usize::from(page_is_zero(page));
        }
    }
    (zero, total)
}

#[test]
fn loads_hold_expected_memory() {
    for spec in [
        Spec::small(),
        Spec::overlapping_kernel(),
        Spec::with_hsa_range(),
    ] {
        let data = generate(&spec);
        for p in loads(&data) {
            let file = &data[p.offset as usize..(p.offset + p.filesz) as usize];
            let want = expected_memory(&spec, p.paddr, p.filesz as usize);
            assert!(file == want.as_slice(), "PT_LOAD at paddr {:#x}", p.paddr);
        }
    }
}

#[test]
fn kernel_image_duplicates_identity_memory() {
    let spec = Spec::overlapping_kernel();
    let data = generate(&spec);
    let l = loads(&data);
    let (img, ident) = (&l[0], &l[1]);
    assert!(img.paddr >= ident.paddr && img.paddr + img.filesz <= ident.paddr + ident.filesz);
    let img_bytes = &data[img.offset as usize..(img.offset + img.filesz) as usize];
    let at = (ident.offset + (img.paddr - ident.paddr)) as usize;
    assert!(img_bytes == &data[at..at + img.filesz as usize]);
    assert!(!page_is_zero(&img_bytes[..4096]) || !page_is_zero(&img_bytes[4096..8192]));
}

#[test]
fn lowcore_and_prefix_pages_are_not_zero() {
    for spec in [
        Spec::small().zero_fraction(1.0),
        Spec::small().zero_fraction(0.99).cpus(8),
    ] {
        let data = generate(&spec);
        let l0 = &loads(&data)[0];
        assert_eq!(l0.paddr, 0);
        let o = l0.offset as usize;
        assert!(!page_is_zero(&data[o..o + 4096]), "page 0 (lowcore)");
        assert!(!page_is_zero(&data[o + 4096..o + 8192]), "page 1 (lowcore)");
        for n in notes(&data).iter().filter(|n| n.n_type == 0x305) {
            let prefix = be_u32(&n.desc, 0) as usize;
            assert!(
                !page_is_zero(&data[o + prefix..o + prefix + 8192]),
                "prefix {prefix:#x}"
            );
        }
    }
}

#[test]
fn zero_fraction_within_tolerance() {
    for f in [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0] {
        let spec = Spec::sized(24 << 20, f).cpus(4);
        let data = generate(&spec);
        let (zero, total) = measured_zero_fraction(&data, &spec);
        let got = zero as f64 / total as f64;
        // Exact per whole block of 64 pages; the protected lowcore/prefix
        // pages and partial blocks at range edges make up the rest.
        assert!(
            (got - f).abs() < 0.01,
            "zero fraction {f}: got {got} ({zero}/{total})"
        );
        let fixture = Fixture::new(&spec).unwrap();
        assert_eq!(
            fixture.zero_pages(),
            zero as u64,
            "zero_pages() agrees with the file"
        );
        if f == 0.0 {
            assert_eq!(zero, 0);
        }
        if f == 1.0 {
            // Only pages 0, 1 and 4 CPUs x 2 prefix pages stay non-zero.
            assert_eq!(total - zero, 2 + 4 * 2);
        }
    }
}

#[test]
fn zero_pages_come_in_runs() {
    let spec = Spec::sized(8 << 20, 0.4);
    let data = generate(&spec);
    let l = &loads(&data)[0];
    let pages: Vec<bool> = data[l.offset as usize..(l.offset + l.filesz) as usize]
        .chunks(4096)
        .map(page_is_zero)
        .collect();
    let runs = pages.windows(2).filter(|w| !w[0] && w[1]).count();
    let zero = pages.iter().filter(|&&z| z).count();
    assert!(runs > 0);
    assert!(
        zero / runs >= 16,
        "runs are long: {zero} zero pages in {runs} runs"
    );
    let mut starts: Vec<_> = (1..pages.len())
        .filter(|&i| !pages[i - 1] && pages[i])
        .map(|i| i % 64)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    assert!(starts.len() > 3, "runs start at varying offsets");
}

#[test]
fn nearly_zero_pages_end_in_non_zero_bytes() {
    let spec = Spec::small();
    let fx = Fixture::new(&spec).unwrap();
    let mut found = 0;
    for &(start, size) in &spec.ranges {
        for paddr in (start..start + size).step_by(4096) {
            if fx.page_kind(paddr) == PageKind::NearlyZero {
                let page = expected_memory(&spec, paddr, 4096);
                assert!(page_is_zero(&page[..4088]));
                assert!(!page_is_zero(&page[4088..]));
                found += 1;
            }
        }
    }
    assert!(found > 0, "small() has nearly-zero pages");
}

#[test]
fn memory_is_recomputable_at_any_alignment() {
    let spec = Spec::small();
    let whole = expected_memory(&spec, 0, 64 << 10);
    for (start, len) in [
        (0, 1),
        (3, 5),
        (7, 9),
        (4095, 2),
        (4093, 4100),
        (12345, 30000),
    ] {
        let part = expected_memory(&spec, start as u64, len);
        assert_eq!(part, whole[start..start + len], "{start}+{len}");
        let mut buf = vec![0xaa; len];
        fill_memory(&spec, start as u64, &mut buf);
        assert_eq!(buf, part);
    }
    assert_eq!(page_kind(&spec, 0), PageKind::Random);
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = generate(&Spec::small());
    let b = generate(&Spec::small());
    assert!(a == b, "deterministic");

    let c = generate(&Spec::small().seed(1));
    assert_eq!(a.len(), c.len());
    assert!(a != c);
    // Memory differs ...
    let l = &loads(&a)[0];
    let o = l.offset as usize;
    assert_ne!(a[o..o + 4096], c[o..o + 4096]);
    // ... and so do the register notes.
    let (na, nc) = (notes(&a), notes(&c));
    assert_eq!(na.len(), nc.len());
    assert_ne!(na[1].desc, nc[1].desc, "NT_PRSTATUS depends on the seed");
    // The same seed with another zero fraction keeps the non-zero pages.
    let d = generate(&Spec::small().zero_fraction(0.0));
    assert_eq!(a[o..o + 8192], d[o..o + 8192]);
}

#[test]
fn read_at_and_reader_match_the_stream() {
    let spec = Spec::overlapping_kernel().cpus(3);
    let data = generate(&spec);
    let fx = Fixture::new(&spec).unwrap();
    assert_eq!(fx.file_size(), data.len() as u64);
    assert_eq!(fx.head(), &data[..fx.head().len()]);
    let mut x = 0x1234_5678_u64;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = x % data.len() as u64;
        let len = (x >> 40) as usize % 20000;
        let mut buf = vec![0; len];
        let n = fx.read_at(off, &mut buf);
        let end = (off as usize + len).min(data.len());
        assert_eq!(n, end - off as usize);
        assert!(buf[..n] == data[off as usize..end], "read_at({off}, {len})");
    }
    let mut buf = [0u8; 8];
    assert_eq!(fx.read_at(data.len() as u64, &mut buf), 0, "EOF");

    let mut r = fx.reader();
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert!(all == data);
    r.seek(SeekFrom::End(-100)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, data[data.len() - 100..]);
    r.seek(SeekFrom::Start(4096)).unwrap();
    r.seek(SeekFrom::Current(-96)).unwrap();
    let mut b = [0u8; 200];
    r.read_exact(&mut b).unwrap();
    assert_eq!(b, data[4000..4200]);
    assert!(r.seek(SeekFrom::Current(-100_000)).is_err());
}

/// Counts bytes and the largest single write: the writer must stream in
/// bounded chunks rather than build the file in memory.
#[derive(Default)]
struct Counter {
    bytes: u64,
    max_write: usize,
    zero_pages: u64,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len() as u64;
        self.max_write = self.max_write.max(buf.len());
        self.zero_pages += buf.chunks(4096).filter(|p| page_is_zero(p)).count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn large_fixture_streams_in_bounded_chunks() {
    let spec = Spec::sized(96 << 20, 0.5);
    let mut c = Counter::default();
    let n = write_vmcore(&spec, &mut c).unwrap();
    assert_eq!(n, file_size(&spec));
    assert_eq!(c.bytes, n);
    assert!(c.max_write <= 1 << 20, "max write {}", c.max_write);
    // Every chunk starts page aligned, so pages are counted whole; the
    // header page and the notes page are not zero.
    let fx = Fixture::new(&spec).unwrap();
    assert_eq!(c.zero_pages, fx.zero_pages());
}
