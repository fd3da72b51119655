//! Shared fixtures: a fake root, a disk image prepared like `zipl --dumpto`
//! (by zfcpdump-disk's `prepare`), decorated so that every region the agent
//! must not touch holds non-zero bytes, and a vmcore from vmcore-fixture.
#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use vmcore_fixture::{Fixture, KernelImage, Spec};
use zfcpdump_disk::prepare::{PrepareOptions, prepare};
use zfcpdump_format::disk_layout::DumpLayout;
use zfcpdump_format::mbr::DosPartition;
use zfcpdump_format::superblock::csum_field_offset;

pub const MIB: u64 = 1 << 20;
/// Sizes of the dump tool image and initrd that real zipl was checked with.
pub const TOOL_IMAGE: u64 = 2_371_584;
pub const TOOL_INITRD: u64 = 64_396;
/// Size of the second partition placed after the dump partition.
pub const OTHER_PART: u64 = 4 * MIB;

/// The standard vmcore: 3 CPUs with vector registers, two identity ranges,
/// a kernel-image PT_LOAD overlapping the first one, VMCOREINFO. About 7 MiB.
pub fn spec() -> Spec {
    Spec::small()
        .cpus(3)
        .ranges(vec![(0, 4 * MIB), (8 * MIB, 2 * MIB)])
        .kernel_image_load(Some(KernelImage {
            paddr: MIB,
            vaddr: 0x0000_03ff_e000_0000,
            size: MIB + 3 * 4096,
        }))
        .seed(0x1234_5678)
}

/// A test world: a temp dir with a root tree, a disk image and a vmcore.
pub struct World {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub image: PathBuf,
    pub layout: DumpLayout,
    pub vmcore: PathBuf,
    pub spec: Spec,
}

impl World {
    /// Sector size 512 or 4096; dump partition at 1 MiB, `dump_mib` of dump area
    /// (about: zipl's reserve comes on top), followed by a second partition.
    pub fn new(sector_size: u32, spec: Spec) -> World {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["proc", "sys", "dev", "etc"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let image = dir.path().join("disk.img");
        let layout = prepare_image(&image, sector_size);
        let vmcore = root.join("proc/vmcore");
        write_vmcore(&spec, &vmcore);
        World {
            dir,
            root,
            image,
            layout,
            vmcore,
            spec,
        }
    }

    /// An `Env` for tool mode on this world, logging into memory.
    pub fn env(&self) -> zfcpdump_agent::Env {
        let mut env = zfcpdump_agent::Env::new(&self.root);
        env.disk = Some(self.image.clone());
        env.log = zfcpdump_agent::log::Log::capture();
        env
    }

    pub fn vmcore_len(&self) -> u64 {
        std::fs::metadata(&self.vmcore).unwrap().len()
    }

    /// The bytes the agent may change in a successful dump: the vmcore's
    /// length at the start of the dump area, and the csum field.
    pub fn allowed_after_dump(&self) -> Vec<Range<u64>> {
        let start = self.layout.dump_area().start;
        let field = csum_field_offset(self.layout.sb_offset);
        vec![start..start + self.vmcore_len(), field..field + 8]
    }

    /// A sparse copy of the image, to compare against later.
    pub fn snapshot(&self) -> PathBuf {
        let to = self
            .dir
            .path()
            .join(format!("before-{}.img", rand_suffix()));
        sparse_copy(&self.image, &to);
        to
    }

    pub fn read_image(&self, range: Range<u64>) -> Vec<u8> {
        let f = File::open(&self.image).unwrap();
        let mut b = vec![0u8; (range.end - range.start) as usize];
        f.read_exact_at(&mut b, range.start).unwrap();
        b
    }

    pub fn write_image(&self, at: u64, bytes: &[u8]) {
        let f = File::options().write(true).open(&self.image).unwrap();
        f.write_all_at(bytes, at).unwrap();
    }

    pub fn write_root(&self, rel: &str, content: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn write_vmcore(spec: &Spec, path: &Path) {
    let f = File::create(path).unwrap();
    vmcore_fixture::write_vmcore(spec, std::io::BufWriter::new(f)).unwrap();
}

/// Prepares the image with zfcpdump-disk, adds a second partition after the
/// dump partition, and fills every region the agent must not write with
/// patterns: between sector 0 and the partition, the tail of the dump area,
/// zipl's reserve around the superblock, the second partition, the disk end.
pub fn prepare_image(path: &Path, sector_size: u32) -> DumpLayout {
    let bs = sector_size as u64;
    // zipl reserves 0x10000 blocks plus the tool: leave ~14 MiB of dump area.
    let part_size = 0x10000 * bs + 16 * MIB;
    let part_start = MIB;
    let disk_size = part_start + part_size + OTHER_PART + MIB;
    let layout = prepare(&PrepareOptions {
        path: path.to_path_buf(),
        disk_size,
        sector_size,
        part_start,
        part_size: Some(part_size),
        image_size: TOOL_IMAGE,
        image_signature: 0,
        initrd_size: Some(TOOL_INITRD),
    })
    .unwrap();
    let f = File::options().read(true).write(true).open(path).unwrap();
    // Second partition in slot 2 of the DOS table.
    let mut s0 = [0u8; 512];
    f.read_exact_at(&mut s0, 0).unwrap();
    let p2_start = part_start + part_size;
    DosPartition {
        bootable: false,
        part_type: 0x83,
        start_lba: (p2_start / bs) as u32,
        num_blocks: (OTHER_PART / bs) as u32,
    }
    .write_into(&mut s0, 1);
    f.write_all_at(&s0, 0).unwrap();
    let dump = layout.dump_area();
    let sb = layout.sb_offset;
    let fill = |r: Range<u64>, seed: u8| {
        // Never over zipl's metadata or the checksummed block: the disk must stay valid.
        for keep in [0..512, sb..sb + 72, dump.start..dump.start + 64 * 1024] {
            assert!(
                r.end <= keep.start || keep.end <= r.start,
                "fill {r:x?} overlaps {keep:x?}"
            );
        }
        let v: Vec<u8> = (0..r.end - r.start)
            .map(|i| seed ^ (i as u8).wrapping_mul(31) ^ (i >> 9) as u8 | 1)
            .collect();
        f.write_all_at(&v, r.start).unwrap();
    };
    fill(512..part_start, 0x11);
    fill(dump.end - MIB..dump.end, 0x22);
    fill(dump.end..dump.end + MIB, 0x33);
    fill(sb - 64 * 1024..sb, 0x44);
    fill(sb + 72..sb + 72 + 64 * 1024, 0x55);
    fill(p2_start..p2_start + OTHER_PART, 0x66);
    fill(disk_size - MIB..disk_size, 0x77);
    layout
}

/// Copies `from` to `to`, leaving all-zero chunks as holes.
pub fn sparse_copy(from: &Path, to: &Path) {
    let mut src = File::open(from).unwrap();
    let dst = File::create(to).unwrap();
    let len = src.metadata().unwrap().len();
    dst.set_len(len).unwrap();
    let mut buf = vec![0u8; MIB as usize];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(MIB) as usize;
        src.read_exact(&mut buf[..n]).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            dst.write_all_at(&buf[..n], off).unwrap();
        }
        off += n as u64;
    }
    (&dst).flush().unwrap();
}

/// Asserts that `a` and `b` are equal outside `allowed`; returns the number
/// of differing bytes inside `allowed`.
pub fn assert_same_except(a: &Path, b: &Path, allowed: &[Range<u64>]) -> u64 {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let len = fa.metadata().unwrap().len();
    assert_eq!(len, fb.metadata().unwrap().len(), "image size changed");
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut off = 0u64;
    let mut inside = 0;
    while off < len {
        let n = (len - off).min(MIB) as usize;
        fa.read_exact_at(&mut ba[..n], off).unwrap();
        fb.read_exact_at(&mut bb[..n], off).unwrap();
        if ba[..n] != bb[..n] {
            for i in 0..n {
                if ba[i] != bb[i] {
                    let at = off + i as u64;
                    assert!(
                        allowed.iter().any(|r| r.contains(&at)),
                        "byte {at:#x} changed ({:#04x} -> {:#04x}) outside the allowed ranges {allowed:x?}",
                        ba[i],
                        bb[i]
                    );
                    inside += 1;
                }
            }
        }
        off += n as u64;
    }
    inside
}

/// Asserts that the dump area holds the vmcore byte for byte.
pub fn assert_dump_is_vmcore(w: &World) {
    let fx = Fixture::new(&w.spec).unwrap();
    let len = w.vmcore_len();
    assert_eq!(fx.file_size(), len);
    let start = w.layout.dump_area().start;
    let f = File::open(&w.image).unwrap();
    let (mut got, mut want) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut off = 0;
    while off < len {
        let n = (len - off).min(MIB) as usize;
        f.read_exact_at(&mut got[..n], start + off).unwrap();
        assert_eq!(fx.read_at(off, &mut want[..n]), n);
        assert!(
            got[..n] == want[..n],
            "dump differs from the vmcore in chunk at {off:#x}"
        );
        off += n as u64;
    }
}

/// The positions of `needles` in `log`, asserting each occurs and that they
/// appear in the given order.
pub fn assert_in_order(log: &str, needles: &[&str]) {
    let mut last = 0usize;
    for n in needles {
        let pos = log[last..]
            .find(n)
            .unwrap_or_else(|| panic!("'{n}' missing after byte {last} of log:\n{log}"));
        last += pos + n.len();
    }
}
