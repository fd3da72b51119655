//! What the checks of a run and the modules below the tasks share: the
//! context of a lab run ([`Ctx`]: paths, the builds, the host tools and the
//! readers), the description of one dump run ([`RunSpec`]) and the agent's
//! test overrides. Made by [`super::setup::setup`].

use std::path::PathBuf;

use crate::readers::Readers;
use crate::sources::Source;

/// Progress of the shared setup, the zipl disks, the sources and e2e's
/// runs (tagged `[e2e]`, also when `faults` runs them).
pub(crate) fn step(msg: impl AsRef<str>) {
    eprintln!("[e2e] {}", msg.as_ref());
}

/// What a run must end in.
pub(crate) enum Expect {
    Success,
    /// `Dump failed: <this>...` on the console, the disk unchanged.
    Failure(&'static str),
}

/// One dump run of e2e: a disk, a vmcore and what must come of it.
pub(crate) struct RunSpec<'a> {
    pub(crate) name: String,
    pub(crate) target: &'a str,
    pub(crate) sector_size: u32,
    /// The disk before the run; the run boots a copy of it.
    pub(crate) before: PathBuf,
    pub(crate) source: &'a Source,
    pub(crate) expect: Expect,
    /// Boot the initramfs built with zero-page elision on.
    pub(crate) elided: bool,
}

/// Paths and tools shared by the steps.
pub(crate) struct Ctx {
    pub(crate) cache: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) image: PathBuf,
    /// None when the image carries its initramfs.
    pub(crate) initrd: Option<PathBuf>,
    /// The same profile with zero-page elision
    /// ([`super::setup::elided_build`]): the same kernel image, its own
    /// initramfs.
    pub(crate) elided_image: PathBuf,
    pub(crate) elided_initrd: Option<PathBuf>,
    pub(crate) memory: u64,
    pub(crate) disk_tool: PathBuf,
    pub(crate) fixture_tool: PathBuf,
    /// The readers that match the kernel (zgetdump, crash).
    pub(crate) readers: Readers,
    /// The profile kernel's vmlinux (with debug info) and release.
    pub(crate) vmlinux: PathBuf,
    pub(crate) release: String,
    pub(crate) keep: bool,
}

/// The agent's test overrides on the kernel command line (QEMU cannot IPL
/// in FCP dump mode): the vmcore on /dev/vda, the whole dump disk /dev/sda,
/// a simulated HSA. virtio-scsi's scan of empty targets would hold up boot
/// for about 15 s, and the agent polls for the disk anyway.
pub(crate) fn agent_append(hsa_size: u64) -> String {
    format!(
        "zfcpdump.source=/dev/vda zfcpdump.disk=/dev/sda zfcpdump.hsa_size={hsa_size:#x} \
         scsi_mod.scan=async"
    )
}
