//! Finding the dump disk from the IPL triple on a fake sysfs tree that models
//! the real one: device directories under /sys/devices with the bus and class
//! entries as symlinks, zfcp's attributes on SCSI devices, decoys, and a
//! "kernel" thread that reacts to the agent's writes asynchronously.

use crate::common::*;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};
use zfcpdump_agent::error::DumpStep;
use zfcpdump_agent::ipl::{IplDevice, find_disk, read_ipl};
use zfcpdump_agent::run;

const DEV: &str = "0.0.1700";
const WWPN: &str = "0x500507630300c562";
const LUN: &str = "0x4010400000000000";
const ADAPTER: &str = "sys/devices/css0/0.0.0010/0.0.1700";

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// `link` (relative to root) -> `target` (relative to root), as a relative symlink like sysfs.
fn link(root: &Path, link_rel: &str, target_rel: &str) {
    let l = root.join(link_rel);
    std::fs::create_dir_all(l.parent().unwrap()).unwrap();
    let depth = link_rel.matches('/').count();
    let rel = format!("{}{}", "../".repeat(depth), target_rel);
    symlink(rel, l).unwrap();
}

fn ipl_files(root: &Path, ipl_type: &str) {
    write(root, "sys/firmware/ipl/ipl_type", &format!("{ipl_type}\n"));
    if ipl_type == "fcp_dump" {
        write(root, "sys/firmware/ipl/device", &format!("{DEV}\n"));
        write(root, "sys/firmware/ipl/wwpn", &format!("{WWPN}\n"));
        write(root, "sys/firmware/ipl/lun", &format!("{LUN}\n"));
        write(root, "sys/firmware/ipl/bootprog", "0\n");
        write(root, "sys/firmware/ipl/br_lba", "0\n");
    }
}

/// A SCSI device below an adapter, with zfcp attributes if `zfcp` is given
/// (hba_id, wwpn, fcp_lun) and a block device `disk`.
fn scsi_device(
    root: &Path,
    adapter: &str,
    hctl: &str,
    zfcp: Option<(&str, &str, &str)>,
    disk: &str,
) {
    let (h, rest) = hctl.split_once(':').unwrap();
    let (c, rest) = rest.split_once(':').unwrap();
    let (t, _) = rest.split_once(':').unwrap();
    let host = format!("{adapter}/host{h}");
    let target = format!("{host}/rport-{h}:{c}-{t}/target{h}:{c}:{t}");
    let sdev = format!("{target}/{hctl}");
    if let Some((hba, wwpn, lun)) = zfcp {
        write(root, &format!("{sdev}/hba_id"), &format!("{hba}\n"));
        write(root, &format!("{sdev}/wwpn"), &format!("{wwpn}\n"));
        write(root, &format!("{sdev}/fcp_lun"), &format!("{lun}\n"));
    }
    write(root, &format!("{sdev}/vendor"), "IBM     \n");
    write(root, &format!("{sdev}/block/{disk}/size"), "100000\n");
    write(
        root,
        &format!("{sdev}/block/{disk}/queue/logical_block_size"),
        "512\n",
    );
    for (name, dir) in [
        (format!("host{h}"), host.clone()),
        (format!("target{h}:{c}:{t}"), target.clone()),
        (hctl.to_string(), sdev.clone()),
    ] {
        let l = format!("sys/bus/scsi/devices/{name}");
        if !root.join(&l).exists() {
            link(root, &l, &dir);
        }
    }
    link(
        root,
        &format!("sys/class/block/{disk}"),
        &format!("{sdev}/block/{disk}"),
    );
}

/// The zfcp adapter as the driver exposes it before it is online.
fn adapter(root: &Path, dir: &str, bus_id: &str, port_add: bool) {
    write(root, &format!("{dir}/online"), "0\n");
    write(root, &format!("{dir}/port_rescan"), "");
    write(root, &format!("{dir}/port_remove"), "");
    if port_add {
        write(root, &format!("{dir}/port_add"), "");
    }
    link(root, &format!("sys/bus/ccw/drivers/zfcp/{bus_id}"), dir);
}

fn port(root: &Path, wwpn: &str) {
    write(root, &format!("{ADAPTER}/{wwpn}/unit_add"), "");
    write(root, &format!("{ADAPTER}/{wwpn}/unit_remove"), "");
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

/// Waits (up to 10 s) until `rel` under root reads `want`.
fn wait_for(root: &Path, rel: &str, want: &str) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if std::fs::read_to_string(root.join(rel)).is_ok_and(|s| s.trim() == want) {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A world whose IPL disk is found through sysfs: decoys exist from the start,
/// the IPL LUN's disk appears only after the agent's writes.
fn sysfs_world(port_add: bool) -> (World, thread::JoinHandle<bool>) {
    let w = World::new(512, spec());
    let root = w.root.clone();
    ipl_files(&root, "fcp_dump");
    write(&root, "sys/module/zfcp/parameters/allow_lun_scan", "Y\n");
    adapter(&root, ADAPTER, DEV, port_add);
    adapter(
        &root,
        "sys/devices/css0/0.0.0011/0.0.1800",
        "0.0.1800",
        false,
    );
    // Decoys: another LUN behind the same port (sorted first), a disk on
    // another adapter with the same WWPN and LUN, and a non-zfcp SCSI disk.
    scsi_device(
        &root,
        ADAPTER,
        "0:0:0:0",
        Some((DEV, WWPN, "0x4010400100000000")),
        "sda",
    );
    scsi_device(
        &root,
        "sys/devices/css0/0.0.0011/0.0.1800",
        "2:0:0:1",
        Some(("0.0.1800", WWPN, LUN)),
        "sdc",
    );
    scsi_device(
        &root,
        "sys/devices/css0/0.0.0020/0.0.0002/virtio0",
        "1:0:0:0",
        None,
        "sdd",
    );
    for d in ["sda", "sdc", "sdd"] {
        std::fs::write(root.join("dev").join(d), b"not the dump disk").unwrap();
    }
    let image = w.image.clone();
    let kernel = thread::spawn(move || {
        if !wait_for(&root, &format!("{ADAPTER}/online"), "1") {
            return false;
        }
        if port_add && !wait_for(&root, &format!("{ADAPTER}/port_add"), WWPN) {
            return false;
        }
        thread::sleep(Duration::from_millis(150));
        port(&root, WWPN);
        if !wait_for(&root, &format!("{ADAPTER}/{WWPN}/unit_add"), LUN) {
            return false;
        }
        // The SCSI device, then (later) the devtmpfs node.
        thread::sleep(Duration::from_millis(150));
        scsi_device(&root, ADAPTER, "0:0:0:1", Some((DEV, WWPN, LUN)), "sdb");
        thread::sleep(Duration::from_millis(150));
        std::fs::hard_link(&image, root.join("dev/sdb")).unwrap();
        true
    });
    (w, kernel)
}

fn discovery(port_add: bool) {
    let (w, kernel) = sysfs_world(port_add);
    let mut env = zfcpdump_agent::Env::new(&w.root);
    env.log = zfcpdump_agent::log::Log::capture();
    let result = run(&env);
    assert!(
        kernel.join().unwrap(),
        "the fake kernel did not see the expected writes"
    );
    let s = result.unwrap_or_else(|e| panic!("{e}\n{}", env.log.captured()));
    assert_eq!(s.disk, w.root.join("dev/sdb"));
    assert_eq!(
        read(&w.root, "sys/module/zfcp/parameters/allow_lun_scan"),
        "0"
    );
    assert_eq!(read(&w.root, &format!("{ADAPTER}/online")), "1");
    assert_eq!(read(&w.root, &format!("{ADAPTER}/{WWPN}/unit_add")), LUN);
    assert_eq!(
        read(&w.root, "sys/devices/css0/0.0.0011/0.0.1800/online"),
        "0\n",
        "other adapter untouched"
    );
    let log = env.log.captured();
    assert_in_order(
        &log,
        &[
            "IPL device 0.0.1700 wwpn 0x500507630300c562 lun 0x4010400000000000",
            "online",
            "added",
            "IPL disk is /dev/sdb",
            "busy marker",
        ],
    );
    assert_dump_is_vmcore(&w);
}

#[test]
fn ipl_disk_found_through_sysfs() {
    discovery(false);
}

#[test]
fn ipl_disk_found_through_sysfs_with_port_add() {
    discovery(true);
}

#[test]
fn find_disk_matches_the_whole_triple_numerically() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    scsi_device(
        root,
        ADAPTER,
        "0:0:0:0",
        Some((DEV, WWPN, "0x4010400100000000")),
        "sda",
    );
    scsi_device(
        root,
        ADAPTER,
        "0:0:1:0",
        Some((DEV, "0x500507630300c563", LUN)),
        "sdb",
    );
    scsi_device(
        root,
        "sys/devices/css0/0.0.0011/0.0.1800",
        "2:0:0:1",
        Some(("0.0.1800", WWPN, LUN)),
        "sdc",
    );
    scsi_device(root, "sys/devices/virtio", "1:0:0:0", None, "sdd");
    let ipl = IplDevice {
        device: DEV.into(),
        wwpn: 0x5005_0763_0300_c562,
        lun: 0x4010_4000_0000_0000,
    };
    assert_eq!(find_disk(root, &ipl), None);
    // Upper-case hex and a different spelling still match numerically.
    scsi_device(
        root,
        ADAPTER,
        "0:0:0:7",
        Some(("0.0.1700", "0x500507630300C562", "0x4010400000000000")),
        "sde",
    );
    assert_eq!(find_disk(root, &ipl).as_deref(), Some("sde"));
}

#[test]
fn read_ipl_parses_the_triple() {
    let t = tempfile::tempdir().unwrap();
    ipl_files(t.path(), "fcp_dump");
    let ipl = read_ipl(t.path()).unwrap();
    assert_eq!(
        ipl,
        IplDevice {
            device: DEV.into(),
            wwpn: 0x5005_0763_0300_c562,
            lun: 0x4010_4000_0000_0000
        }
    );
    write(t.path(), "sys/firmware/ipl/wwpn", "garbage\n");
    let e = read_ipl(t.path()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPL device: /sys/firmware/ipl/wwpn is 'garbage', expected a hex number"
    );
}

#[test]
fn not_an_fcp_dump_ipl_is_explained() {
    let w = World::new(512, spec());
    ipl_files(&w.root, "unknown");
    let mut env = zfcpdump_agent::Env::new(&w.root);
    env.log = zfcpdump_agent::log::Log::capture();
    let before = w.snapshot();
    let e = run(&env).unwrap_err();
    assert_eq!(e.step, DumpStep::IplDevice);
    assert_eq!(
        e.to_string(),
        "IPL device: not IPLed in FCP dump mode: /sys/firmware/ipl/ipl_type is 'unknown' (expected \
         'fcp_dump'), so there is no IPL device to dump to (under QEMU, pass zfcpdump.disk= and \
         zfcpdump.source= for tests)"
    );
    assert_eq!(assert_same_except(&before, &w.image, &[]), 0);
    // No /sys/firmware/ipl at all: the errno in words.
    std::fs::remove_dir_all(w.root.join("sys/firmware")).unwrap();
    let e = run(&env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPL device: reading /sys/firmware/ipl/ipl_type (No such file or directory (os error 2))"
    );
}

#[test]
fn disk_that_never_appears_times_out() {
    let w = World::new(512, spec());
    ipl_files(&w.root, "fcp_dump");
    adapter(&w.root, ADAPTER, DEV, false);
    port(&w.root, WWPN); // the port exists, but no SCSI device ever shows up
    w.write_root("etc/zfcpdump.conf", "device_timeout_s = 1\n");
    let mut env = zfcpdump_agent::Env::new(&w.root);
    env.log = zfcpdump_agent::log::Log::capture();
    let t = Instant::now();
    let e = run(&env).unwrap_err();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(e.step, DumpStep::IplDevice);
    assert!(
        e.to_string().starts_with(
            "IPL device: no disk for device 0.0.1700 wwpn 0x500507630300c562 lun 0x4010400000000000 appeared within 1 s"
        ),
        "{e}"
    );
}

#[test]
fn port_that_never_appears_times_out() {
    let w = World::new(512, spec());
    ipl_files(&w.root, "fcp_dump");
    adapter(&w.root, ADAPTER, DEV, false);
    w.write_root("etc/zfcpdump.conf", "device_timeout_s = 1\n");
    let mut env = zfcpdump_agent::Env::new(&w.root);
    env.log = zfcpdump_agent::log::Log::capture();
    let e = run(&env).unwrap_err();
    assert!(
        e.to_string().contains(
            "port 0x500507630300c562 did not appear under /sys/bus/ccw/drivers/zfcp/0.0.1700"
        ),
        "{e}"
    );
}

#[test]
fn adapter_missing_names_the_file_and_errno() {
    let w = World::new(512, spec());
    ipl_files(&w.root, "fcp_dump");
    let mut env = zfcpdump_agent::Env::new(&w.root);
    env.log = zfcpdump_agent::log::Log::capture();
    let e = run(&env).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IPL device: writing 1 to /sys/bus/ccw/drivers/zfcp/0.0.1700/online (No such file or directory (os error 2))"
    );
}
