//! Bringing the IPL zfcp device online and finding its disk through sysfs.
//!
//! The reference writes the IPL triple (device, WWPN, LUN) from
//! /sys/firmware/ipl into the zfcp driver's sysfs files, sleeps 2 s and
//! assumes /dev/sda. This module does the same writes, then looks for the SCSI
//! device whose zfcp attributes (`hba_id`, `wwpn`, `fcp_lun`, see
//! drivers/s390/scsi/zfcp_sysfs.c) match the triple and takes the block device
//! below it, polling until it appears or the configured timeout passes.
//!
//! Every path is taken relative to a root directory, so tests run this against
//! a fake sysfs tree.

use crate::cmdline::parse_u64;
use crate::error::{Context, DumpError, DumpStep};
use crate::log::Log;
use crate::{info, trace};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pause between two looks at sysfs while waiting.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The FCP device the machine was IPLed from in dump mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IplDevice {
    /// The FCP subchannel device bus id, e.g. `0.0.1700`.
    pub device: String,
    /// Target port WWPN.
    pub wwpn: u64,
    /// FCP LUN.
    pub lun: u64,
}

impl IplDevice {
    /// The name zfcp gives the port's sysfs directory ("0x%016llx").
    pub fn port_dir_name(&self) -> String {
        format!("0x{:016x}", self.wwpn)
    }

    /// `0x%016llx` of the LUN, the form zfcp prints and `unit_add` accepts.
    pub fn lun_text(&self) -> String {
        format!("0x{:016x}", self.lun)
    }
}

/// `root` joined with an absolute path such as `/sys/firmware/ipl`.
pub(crate) fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// Reads a sysfs attribute, without the trailing newline.
pub(crate) fn read_attr(path: &Path) -> io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

/// Writes a sysfs attribute in one write(2), as sysfs wants.
pub(crate) fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    f.write_all(value.as_bytes())
}

/// Calls `f` until it returns `Some` or `deadline` passes (checked after each call,
/// so `f` always runs at least once).
pub(crate) fn poll_until<T>(deadline: Instant, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Reads the IPL triple from /sys/firmware/ipl, refusing unless the machine
/// was IPLed in FCP dump mode.
pub fn read_ipl(root: &Path) -> Result<IplDevice, DumpError> {
    let step = DumpStep::IplDevice;
    let ipl_type = read_attr(&under(root, "/sys/firmware/ipl/ipl_type"))
        .ctx(step, || "reading /sys/firmware/ipl/ipl_type".into())?;
    if ipl_type != "fcp_dump" {
        return Err(DumpError::new(
            step,
            format!(
                "not IPLed in FCP dump mode: /sys/firmware/ipl/ipl_type is '{ipl_type}' (expected \
                 'fcp_dump'), so there is no IPL device to dump to (under QEMU, pass zfcpdump.disk= \
                 and zfcpdump.source= for tests)"
            ),
        ));
    }
    let attr = |name: &str| {
        read_attr(&under(root, &format!("/sys/firmware/ipl/{name}")))
            .ctx(step, || format!("reading /sys/firmware/ipl/{name}"))
    };
    let device = attr("device")?;
    if !is_bus_id(&device) {
        return Err(DumpError::new(
            step,
            format!("/sys/firmware/ipl/device is '{device}', expected a bus id like 0.0.1700"),
        ));
    }
    let number = |name: &str| -> Result<u64, DumpError> {
        let text = attr(name)?;
        parse_hex(&text).ok_or_else(|| {
            DumpError::new(
                step,
                format!("/sys/firmware/ipl/{name} is '{text}', expected a hex number"),
            )
        })
    };
    Ok(IplDevice {
        device: device.to_ascii_lowercase(),
        wwpn: number("wwpn")?,
        lun: number("lun")?,
    })
}

/// A hex number with or without `0x` (sysfs prints `0x%016llx`).
pub fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    parse_u64(&format!("0x{digits}"))
}

/// `css.ssid.devno`: `0.0.1700`.
fn is_bus_id(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts[2].len() == 4
}

/// The reference's writes: LUN scan off, adapter online, port (if the kernel
/// still has `port_add`), unit. The port directory appears asynchronously after
/// the adapter comes online, so it is waited for until `deadline`.
pub fn bring_online(
    root: &Path,
    ipl: &IplDevice,
    deadline: Instant,
    log: &Log,
) -> Result<(), DumpError> {
    let step = DumpStep::IplDevice;
    // With automatic LUN scanning, zfcp would attach every LUN of the port;
    // the dump needs exactly the IPL LUN.
    let scan = under(root, "/sys/module/zfcp/parameters/allow_lun_scan");
    if scan.exists() {
        write_attr(&scan, "0").ctx(step, || {
            "writing 0 to /sys/module/zfcp/parameters/allow_lun_scan".into()
        })?;
        trace!(log, "wrote 0 to /sys/module/zfcp/parameters/allow_lun_scan");
    }
    let dev_abs = format!("/sys/bus/ccw/drivers/zfcp/{}", ipl.device);
    let dev = under(root, &dev_abs);
    write_attr(&dev.join("online"), "1").ctx(step, || format!("writing 1 to {dev_abs}/online"))?;
    info!(log, "IPL device {} online", ipl.device);

    let port = ipl.port_dir_name();
    let port_add = dev.join("port_add");
    if port_add.exists() {
        match write_attr(&port_add, &port) {
            Ok(()) => trace!(log, "wrote {port} to {dev_abs}/port_add"),
            // The port may already be known from the adapter's port scan.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(DumpError::io(
                    step,
                    format!("writing {port} to {dev_abs}/port_add"),
                    e,
                ));
            }
        }
    }
    let unit_add = dev.join(&port).join("unit_add");
    if poll_until(deadline, || unit_add.exists().then_some(())).is_none() {
        return Err(DumpError::new(
            step,
            format!(
                "port {port} did not appear under {dev_abs} in time (is the WWPN reachable from {}?)",
                ipl.device
            ),
        ));
    }
    let lun = ipl.lun_text();
    match write_attr(&unit_add, &lun) {
        Ok(()) => {}
        // Already attached (e.g. by a LUN scan): that is what we want.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => {
            return Err(DumpError::io(
                step,
                format!("writing {lun} to {dev_abs}/{port}/unit_add"),
                e,
            ));
        }
    }
    info!(log, "IPL unit {} wwpn {port} lun {lun} added", ipl.device);
    Ok(())
}

/// One look at /sys/bus/scsi/devices for the SCSI disk of `ipl`: its block
/// device name, if it has one yet.
pub fn find_disk(root: &Path, ipl: &IplDevice) -> Option<String> {
    let dir = under(root, "/sys/bus/scsi/devices");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    // Deterministic order; sysfs has no defined one.
    entries.sort();
    for sdev in entries {
        // Hosts, targets and non-zfcp devices have no zfcp attributes.
        let (Ok(hba), Ok(wwpn), Ok(lun)) = (
            read_attr(&sdev.join("hba_id")),
            read_attr(&sdev.join("wwpn")),
            read_attr(&sdev.join("fcp_lun")),
        ) else {
            continue;
        };
        if !hba.eq_ignore_ascii_case(&ipl.device)
            || parse_hex(&wwpn) != Some(ipl.wwpn)
            || parse_hex(&lun) != Some(ipl.lun)
        {
            continue;
        }
        let mut names: Vec<String> = std::fs::read_dir(sdev.join("block"))
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        return names.into_iter().next();
    }
    None
}

/// Waits until the IPL disk's block device and its /dev node exist; returns
/// the node.
pub fn wait_for_disk(
    root: &Path,
    ipl: &IplDevice,
    deadline: Instant,
    timeout_s: u32,
    log: &Log,
) -> Result<PathBuf, DumpError> {
    let found = poll_until(deadline, || {
        let name = find_disk(root, ipl)?;
        let node = under(root, &format!("/dev/{name}"));
        node.exists().then_some((name, node))
    });
    match found {
        Some((name, node)) => {
            info!(log, "IPL disk is /dev/{name}");
            Ok(node)
        }
        None => Err(DumpError::new(
            DumpStep::IplDevice,
            format!(
                "no disk for device {} wwpn {} lun {} appeared within {timeout_s} s (no SCSI device \
                 in /sys/bus/scsi/devices with matching hba_id/wwpn/fcp_lun and a block device with \
                 a /dev node)",
                ipl.device,
                ipl.port_dir_name(),
                ipl.lun_text()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_bus_ids() {
        assert_eq!(
            parse_hex("0x500507630300c562\n"),
            Some(0x5005_0763_0300_c562)
        );
        assert_eq!(parse_hex("500507630300C562"), Some(0x5005_0763_0300_c562));
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("zz"), None);
        assert!(is_bus_id("0.0.1700"));
        assert!(is_bus_id("0.1.fc00"));
        assert!(!is_bus_id("0.0.170"));
        assert!(!is_bus_id("sda"));
        assert!(!is_bus_id("0..1700"));
        let d = IplDevice {
            device: "0.0.1700".into(),
            wwpn: 0x5005_0763_0300_c562,
            lun: 0x4010_4000,
        };
        assert_eq!(d.port_dir_name(), "0x500507630300c562");
        assert_eq!(d.lun_text(), "0x0000000040104000");
    }
}
