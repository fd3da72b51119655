//! `bench-classifier FIXTURE GIB`: the page classifier's speed and the
//! minimum excluded run's effect, on a memory map of GIB GiB tiled from the
//! 2048 real struct pages of a crash-lab fixture (the busiest stretch of the
//! guest's memory: page cache, user and free pages interleaved, so more
//! fragmented than a real machine's). Run by `cargo xtask bench`; prints a
//! table.

use std::io;
use std::time::Instant;

use zfcpdump_format::PAGE_SIZE;
use zfcpdump_format::elf::{PHDR_SIZE, Vmcore};
use zfcpdump_format::filter::classify::{PageFilter, leaves_out};
use zfcpdump_format::filter::kernel_layout::KernelInfo;
use zfcpdump_format::filter::memmap::{MemMap, Run};
use zfcpdump_format::filter::{self, DumpLevel, PhysRead, VmcorePhys};

/// Where the synthetic struct pages "are".
const BASE: u64 = 1 << 50;
/// Pages per copy chunk, as the agent feeds them.
const CHUNK: u64 = 254;

/// Struct page of pfn p is the tile's entry p % tile length.
struct Tiled {
    tile: Vec<u8>,
}

impl PhysRead for Tiled {
    fn read_phys(&mut self, paddr: u64, buf: &mut [u8]) -> io::Result<()> {
        // Whole slices of the tile, so the map's own cost stays out of the
        // classifier's time.
        let len = self.tile.len();
        let mut at = ((paddr - BASE) % len as u64) as usize;
        let mut done = 0;
        while done < buf.len() {
            let n = (len - at).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.tile[at..at + n]);
            done += n;
            at = 0;
        }
        Ok(())
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (Some(path), Some(gib)) = (a.get(1), a.get(2).and_then(|s| s.parse::<u64>().ok())) else {
        eprintln!("usage: bench-classifier FIXTURE GIB");
        std::process::exit(2);
    };
    let elf = std::fs::read(path).unwrap();
    let vm = Vmcore::read(&mut &elf[..], elf.len() as u64).unwrap();
    let info = KernelInfo::parse(vm.vmcoreinfo().unwrap().unwrap()).unwrap();
    let mut src = &elf[..];
    let mut mem = VmcorePhys::new(&vm, &mut src);
    let pf = filter::prepare(&vm, &mut mem, DumpLevel::new(31).unwrap(), 1).unwrap();
    // The sample: the pfns from the first to the end of the last memory
    // without file bytes (pages the classifier reads may lie between).
    let zero = || vm.loads().filter(|p| p.p_filesz == 0);
    let first = zero().map(|p| p.p_paddr).min().unwrap() / PAGE_SIZE;
    let n = zero().map(|p| p.p_paddr + p.p_memsz).max().unwrap() / PAGE_SIZE - first;
    let size = info.page.size;
    let mut tile = vec![0u8; (n * size) as usize];
    let mut at = 0usize;
    for r in pf.map().pieces(first..first + n) {
        let len = ((r.end_pfn - r.first_pfn) * size) as usize;
        mem.read_phys(r.paddr, &mut tile[at..at + len]).unwrap();
        at += len;
    }
    assert_eq!(at, tile.len(), "the fixture holds every sample struct page");
    // Tiles start at pfn 0 with the sample's first pfn's struct page.
    tile.rotate_left(((first % n) * size) as usize);
    let pfns = (gib << 30) / PAGE_SIZE;
    let map = MemMap {
        page_size: size,
        runs: vec![Run {
            first_pfn: 0,
            end_pfn: pfns,
            paddr: BASE,
        }],
    };
    println!(
        "{} (kernel {}), {gib} GiB map ({pfns} pfns) tiled from {n} real struct pages",
        path.rsplit('/').next().unwrap(),
        info.release
    );
    println!(
        "level  min_run  excluded pages  runs (headers)  written bytes   classify time  GiB/s"
    );
    for level in [31u32, 17] {
        for min_run in [1usize, 2, 4, 8, 16, 64, 256] {
            let mut tiled = Tiled { tile: tile.clone() };
            let level = DumpLevel::new(level).unwrap();
            let mut f = PageFilter::new(info.page.clone(), level, map.clone(), min_run);
            let mut classes = vec![0u8; CHUNK as usize];
            let (mut excluded, mut runs, mut prev) = (0u64, 0u64, false);
            let t = Instant::now();
            let mut pfn = 0;
            while pfn < pfns {
                let k = CHUNK.min(pfns - pfn) as usize;
                f.fill(&mut tiled, pfn, &mut classes[..k]);
                for &c in &classes[..k] {
                    let out = leaves_out(c);
                    excluded += out as u64;
                    runs += (out && !prev) as u64;
                    prev = out;
                }
                pfn += k as u64;
            }
            let secs = t.elapsed().as_secs_f64();
            let written = (pfns - excluded) * PAGE_SIZE + (runs + 1) * PHDR_SIZE as u64;
            println!(
                "{:>5}  {min_run:>7}  {excluded:>14}  {:>14}  {written:>13}  {:>10.1} ms  {:>5.1}",
                level.bits(),
                runs + 1,
                secs * 1e3,
                gib as f64 / secs
            );
        }
    }
}
