//! End-to-end tests of the `zfcpdump-disk` binary on real image files.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use zfcpdump_format::busy::BUSY_MARKER;
use zfcpdump_format::csum::dump_csum;
use zfcpdump_format::elf::{
    ElfHeader, NT_PRPSINFO, NT_PRSTATUS, NT_VMCOREINFO, PT_LOAD, PT_NOTE, ProgramHeader, push_note,
};
use zfcpdump_format::mbr::ZiplMbr;
use zfcpdump_format::plan::{CopyStep, copy_plan};
use zfcpdump_format::superblock::{DumpSuperblock, csum_field_bytes, csum_field_offset};

const TOOL_IMAGE: u64 = 2_371_584;
const TOOL_INITRD: u64 = 64_396;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let d =
            std::env::temp_dir().join(format!("zfcpdump-disk-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
    /// Dump tool image and initrd of the sizes used with real zipl.
    fn tool_files(&self) -> (PathBuf, PathBuf) {
        let (img, rd) = (self.path("zfcpdump.image"), self.path("zfcpdump.rd"));
        File::create(&img).unwrap().set_len(TOOL_IMAGE).unwrap();
        File::create(&rd).unwrap().set_len(TOOL_INITRD).unwrap();
        (img, rd)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zfcpdump-disk"))
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn prepare(dir: &Dir, name: &str, extra: &[&str]) -> PathBuf {
    let (img, rd) = dir.tool_files();
    let disk = dir.path(name);
    let mut args = vec!["prepare", s(&disk), "--image", s(&img), "--initrd", s(&rd)];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert_eq!(code(&o), 0, "prepare failed: {}", stderr(&o));
    disk
}

/// A small vmcore-shaped ELF: 2 CPUs, VMCOREINFO, three memory ranges (one of
/// them the overlapping kernel-image PT_LOAD) with non-zero data.
fn fake_vmcore() -> Vec<u8> {
    let mut notes = Vec::new();
    push_note(&mut notes, NT_PRPSINFO, b"CORE", &[0; 136]);
    for cpu in 0..2u32 {
        let mut st = [0u8; 336];
        st[32..36].copy_from_slice(&(cpu + 1).to_be_bytes());
        push_note(&mut notes, NT_PRSTATUS, b"CORE", &st);
        push_note(&mut notes, 0x305, b"LINUX", &[0, 0, 0x10, 0]);
    }
    push_note(
        &mut notes,
        NT_VMCOREINFO,
        b"VMCOREINFO",
        b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n",
    );
    let loads = [(0u64, 0x40000u64), (0x100000, 0x20000), (0x8000, 0x4000)];
    let mut phdrs = vec![ProgramHeader {
        p_type: PT_NOTE,
        p_offset: 4096,
        p_filesz: notes.len() as u64,
        ..Default::default()
    }];
    let mut off = 8192u64;
    for (paddr, size) in loads {
        phdrs.push(ProgramHeader {
            p_type: PT_LOAD,
            p_flags: 7,
            p_offset: off,
            p_vaddr: paddr,
            p_paddr: paddr,
            p_filesz: size,
            p_memsz: size,
            p_align: 4096,
        });
        off += size;
    }
    let mut f = vec![0u8; off as usize];
    f[..64].copy_from_slice(&ElfHeader::s390_core(phdrs.len() as u16).to_bytes());
    for (i, p) in phdrs.iter().enumerate() {
        f[64 + 56 * i..120 + 56 * i].copy_from_slice(&p.to_bytes());
    }
    f[4096..4096 + notes.len()].copy_from_slice(&notes);
    let mut x = 0x1234_5678_9abc_def1u64;
    for b in f[8192..].iter_mut().step_by(7) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8 | 1;
    }
    f
}

fn metadata(disk: &Path) -> (u64, DumpSuperblock) {
    let mut f = File::open(disk).unwrap();
    let mut sector = [0u8; 512];
    f.read_exact(&mut sector).unwrap();
    let mbr = ZiplMbr::parse(&sector).unwrap();
    let mut sb = [0u8; 72];
    f.seek(SeekFrom::Start(mbr.sb_offset)).unwrap();
    f.read_exact(&mut sb).unwrap();
    (mbr.sb_offset, DumpSuperblock::parse(&sb).unwrap())
}

fn write_at(f: &mut File, off: u64, data: &[u8]) {
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(data).unwrap();
}

/// Recomputes the checksum and stores it, as the dump tool does.
fn update_csum(f: &mut File, sb_offset: u64, sb: &DumpSuperblock) {
    let mut block = vec![0u8; 4096];
    f.seek(SeekFrom::Start(sb.csum_area().start)).unwrap();
    f.read_exact(&mut block).unwrap();
    write_at(
        f,
        csum_field_offset(sb_offset),
        &csum_field_bytes(dump_csum(&block)),
    );
}

/// Writes `core` like the agent: busy marker, then the plan's steps (header last),
/// stopping before step `stop_before` if given.
fn dump_into(disk: &Path, core: &[u8], stop_before: Option<usize>) {
    let (sb_offset, sb) = metadata(disk);
    let mut f = File::options().read(true).write(true).open(disk).unwrap();
    let base = sb.dump_area().start;
    write_at(&mut f, base, &BUSY_MARKER);
    update_csum(&mut f, sb_offset, &sb);
    let v = zfcpdump_format::elf::Vmcore::read_headers(&mut &core[..], core.len() as u64).unwrap();
    let plan = copy_plan(&v.phdrs, core.len() as u64, 0x20000).unwrap();
    assert!(
        matches!(plan[0], CopyStep::Copy { hsa: true, .. }),
        "{plan:?}"
    );
    for (i, step) in plan.iter().enumerate() {
        if Some(i) == stop_before {
            return;
        }
        if let CopyStep::Copy { start, end, .. } = *step {
            write_at(&mut f, base + start, &core[start as usize..end as usize]);
        }
    }
    update_csum(&mut f, sb_offset, &sb);
}

#[test]
fn prepare_matches_real_zipl_512() {
    let dir = Dir::new("zipl512");
    let disk = prepare(
        &dir,
        "disk.img",
        &[
            "--size",
            "64M",
            "--part-start",
            "1M",
            "--part-size",
            "51200000",
        ],
    );
    assert_eq!(fs::metadata(&disk).unwrap().len(), 64 << 20);
    let (sb_offset, sb) = metadata(&disk);
    assert_eq!(sb_offset, 0x11ed400);
    assert_eq!(
        (sb.part_start, sb.part_size, sb.dump_size, sb.csum),
        (0x100000, 51_200_000, 15_269_376, 0x12345678)
    );
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    assert!(stdout(&o).contains("state:       empty"), "{}", stdout(&o));
    assert!(stdout(&o).contains("zeroed, as zipl left it"));
    assert!(stdout(&o).contains("sector size: 512"));
}

#[test]
fn prepare_matches_real_zipl_4k() {
    let dir = Dir::new("zipl4k");
    let disk = prepare(
        &dir,
        "disk.img",
        &[
            "--size",
            "512M",
            "--sector-size",
            "4096",
            "--part-size",
            "400M",
        ],
    );
    let (sb_offset, sb) = metadata(&disk);
    assert_eq!(sb_offset, 0x911c000);
    assert_eq!((sb.part_size, sb.dump_size), (419_430_400, 148_582_400));
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 3);
    assert!(stdout(&o).contains("sector size: 4096"), "{}", stdout(&o));
}

#[test]
fn lifecycle_empty_incomplete_complete_invalid() {
    let dir = Dir::new("life");
    let disk = prepare(&dir, "disk.img", &["--size", "48M"]);
    let core = fake_vmcore();

    // Interrupted before the header step: busy marker still at the start.
    dump_into(&disk, &core, Some(3));
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(stdout(&o).contains("state:       incomplete"));
    let out = dir.path("out.elf");
    let o = run(&["extract", s(&disk), s(&out)]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("refusing to extract"), "{}", stderr(&o));
    assert!(!out.exists());

    // Finished.
    dump_into(&disk, &core, None);
    let o = run(&["status", s(&disk)]);
    let text = stdout(&o);
    assert_eq!(code(&o), 0, "{text}");
    assert!(text.contains("state:       complete"), "{text}");
    assert!(text.contains("cpus:        2"), "{text}");
    assert!(text.contains("kernel:      6.1.0-test"), "{text}");
    assert!(
        text.contains(&format!("dump size:   {} bytes", core.len())),
        "{text}"
    );
    // Three PT_LOADs, the kernel-image one inside the first: two ranges, 384 KiB.
    assert!(
        text.contains("memory:      384.0 KiB in 2 range(s), 4 program headers"),
        "{text}"
    );
    assert!(
        text.contains("  0x0000000000000000-0x000000000003ffff (256.0 KiB)"),
        "{text}"
    );

    // Extract round trip.
    let o = run(&["extract", s(&disk), s(&out)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), core);
    let leftovers: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A byte of the checksummed block changed behind the checksum's back.
    let (_, sb) = metadata(&disk);
    let mut f = File::options().write(true).open(&disk).unwrap();
    write_at(&mut f, sb.csum_area().start + 4000, &[0x55]);
    drop(f);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(stdout(&o).contains("checksum mismatch"), "{}", stdout(&o));
    assert!(stdout(&o).contains("state:       invalid"));
    assert_eq!(code(&run(&["extract", s(&disk), s(&out)])), 4);
}

/// The agent flushes the busy marker before it updates the checksum: a
/// marker under the previous checksum is a dump stopped in between, so
/// incomplete (and said so), not a corrupted disk. The rest of the block
/// may be an older dump's header, which the marker overwrote in part.
/// Anything else under a stale checksum stays invalid.
#[test]
fn busy_marker_under_a_stale_checksum_is_incomplete() {
    let dir = Dir::new("stale");
    let disk = prepare(&dir, "disk.img", &["--size", "48M"]);
    let (_, sb) = metadata(&disk);
    let mut f = File::options().read(true).write(true).open(&disk).unwrap();
    write_at(&mut f, sb.dump_area().start, &BUSY_MARKER);
    drop(f);
    let o = run(&["status", s(&disk)]);
    let text = stdout(&o);
    assert_eq!(code(&o), 2, "{text}");
    assert!(text.contains("state:       incomplete"), "{text}");
    assert!(
        text.contains("checksum:    stale: the tool stopped"),
        "{text}"
    );
    // Something else under the stale checksum: not the tool's, invalid.
    let mut f = File::options().write(true).open(&disk).unwrap();
    write_at(&mut f, sb.dump_area().start, b"not a marker..");
    drop(f);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(stdout(&o).contains("checksum mismatch"), "{}", stdout(&o));
}

#[test]
fn complete_on_4k_disk() {
    let dir = Dir::new("life4k");
    let disk = prepare(
        &dir,
        "disk.img",
        &["--size", "300M", "--sector-size", "4096"],
    );
    let core = fake_vmcore();
    dump_into(&disk, &core, None);
    assert_eq!(code(&run(&["status", s(&disk)])), 0);
    let out = dir.path("core");
    assert_eq!(code(&run(&["extract", s(&disk), s(&out)])), 0);
    assert_eq!(fs::read(&out).unwrap(), core);
}

#[test]
fn invalid_metadata() {
    let dir = Dir::new("invalid");
    let disk = prepare(&dir, "disk.img", &["--size", "40M"]);
    let (sb_offset, _) = metadata(&disk);
    let original = fs::read(&disk).unwrap();

    // No zipl MBR.
    let mut f = File::options().write(true).open(&disk).unwrap();
    write_at(&mut f, 0, &[0; 4]);
    drop(f);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4);
    assert!(
        stdout(&o).contains("MBR magic is 00000000, expected 'zIPL'"),
        "{}",
        stdout(&o)
    );

    // Partition table that does not match the superblock.
    fs::write(&disk, &original).unwrap();
    let mut f = File::options().write(true).open(&disk).unwrap();
    write_at(&mut f, 0x1be + 8, &4096u32.to_le_bytes());
    drop(f);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4);
    assert!(
        stdout(&o).contains("no DOS partition matches"),
        "{}",
        stdout(&o)
    );

    // Superblock magic destroyed.
    fs::write(&disk, &original).unwrap();
    let mut f = File::options().write(true).open(&disk).unwrap();
    write_at(&mut f, sb_offset, b"XXXXXXXX");
    drop(f);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4);
    assert!(
        stdout(&o).contains("dump superblock magic"),
        "{}",
        stdout(&o)
    );

    // Truncated image.
    fs::write(&disk, &original[..1 << 20]).unwrap();
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4);
    assert!(stdout(&o).contains("past the end"), "{}", stdout(&o));

    // Not even a sector.
    fs::write(&disk, b"tiny").unwrap();
    assert_eq!(code(&run(&["status", s(&disk)])), 4);
}

#[test]
fn damaged_elf_is_invalid_and_garbage_is_empty() {
    let dir = Dir::new("damaged");
    let disk = prepare(&dir, "disk.img", &["--size", "40M"]);
    let (sb_offset, sb) = metadata(&disk);
    let mut core = fake_vmcore();
    // Program header 1 claims bytes far past the dump area.
    let mut p = ProgramHeader::parse(&core[120..176]);
    p.p_filesz = 1 << 40;
    p.p_memsz = 1 << 40;
    core[120..176].copy_from_slice(&p.to_bytes());
    let mut f = File::options().read(true).write(true).open(&disk).unwrap();
    write_at(&mut f, sb.dump_area().start, &core[..8192]);
    update_csum(&mut f, sb_offset, &sb);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 4, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("program header 1 extends past end of file"),
        "{}",
        stdout(&o)
    );

    write_at(&mut f, sb.dump_area().start, b"some old data");
    update_csum(&mut f, sb_offset, &sb);
    let o = run(&["status", s(&disk)]);
    assert_eq!(code(&o), 3);
    assert!(stdout(&o).contains("holds no dump"), "{}", stdout(&o));
}

#[test]
fn prepare_failures_leave_nothing_behind() {
    let dir = Dir::new("fail");
    let (img, rd) = dir.tool_files();
    let disk = dir.path("disk.img");
    // 4K disk with a 51 MB partition: zipl says the partition is too small.
    let o = run(&[
        "prepare",
        s(&disk),
        "--size",
        "64M",
        "--sector-size",
        "4096",
        "--part-size",
        "48M",
        "--image",
        s(&img),
        "--initrd",
        s(&rd),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("Partition too small for dump tool"),
        "{}",
        stderr(&o)
    );
    assert!(!disk.exists());

    // An existing image stays as it was when a later prepare fails.
    fs::write(&disk, b"keep me").unwrap();
    let o = run(&[
        "prepare",
        s(&disk),
        "--size",
        "1G",
        "--part-start",
        "1000",
        "--image",
        s(&img),
    ]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("partition start 1000 is not a multiple of the sector size 512"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&disk).unwrap(), b"keep me");
    let names: Vec<_> = fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    // Never replaces something that is not a regular file (e.g. a device).
    let not_file = dir.path("a-directory");
    fs::create_dir(&not_file).unwrap();
    let o = run(&["prepare", s(&not_file), "--size", "40M", "--image", s(&img)]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("is not a regular file"),
        "{}",
        stderr(&o)
    );
    assert!(not_file.is_dir());
    fs::remove_dir(&not_file).unwrap();

    // Missing tool image, bad size suffix, bad sector size: usage errors exit 1.
    assert_eq!(
        code(&run(&[
            "prepare",
            s(&disk),
            "--size",
            "64M",
            "--image",
            s(&dir.path("none"))
        ])),
        1
    );
    let o = run(&["prepare", s(&disk), "--size", "64Q", "--image", s(&img)]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("invalid size suffix 'Q'"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        code(&run(&[
            "prepare",
            s(&disk),
            "--size",
            "64M",
            "--image",
            s(&img),
            "--sector-size",
            "1024"
        ])),
        1
    );
    assert_eq!(code(&run(&["status"])), 1);
    assert_eq!(code(&run(&["status", s(&dir.path("absent"))])), 1);
}

#[test]
fn prepare_without_initrd_and_replacing() {
    let dir = Dir::new("noinitrd");
    let (img, _) = dir.tool_files();
    let disk = dir.path("disk.img");
    fs::write(&disk, vec![0xffu8; 4096]).unwrap();
    let o = run(&["prepare", s(&disk), "--size", "40M", "--image", s(&img)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (_, sb) = metadata(&disk);
    // 40 MiB disk, 1 MiB start: 79872 sectors minus reserve 0x10000 + 4504 + 2 + 8.
    assert_eq!(sb.dump_size, (79_872 - (0x10000 + 4504 + 2 + 8)) * 512);
    assert_eq!(code(&run(&["status", s(&disk)])), 3);
}

#[test]
fn help_documents_exit_codes() {
    let o = run(&["status", "--help"]);
    assert_eq!(code(&o), 0);
    let h = stdout(&o);
    for line in [
        "0  success",
        "2  status/extract: incomplete",
        "3  status/extract: empty",
        "4  status/extract: invalid",
    ] {
        assert!(h.contains(line), "{h}");
    }
}
