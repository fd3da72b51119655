//! The production guest: the kernel that crashes. Its initramfs holds
//! Debian 12's busybox-static and kexec-tools (s390x, glibc), the pattern
//! writer, and the dump tool's `dist` files unchanged, which its /init loads
//! as the kdump capture kernel before it exits (PID 1 exiting is a real
//! panic, through __crash_kexec).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::readers::sysroot::{CRASHLAB_GUEST, elf_closure, in_root};
use zfcpdump_builder::archive::{Archive, Kind};

/// What the production guest's /init prints; the host looks for them.
pub const MARK_FAILED: &str = "CRASHLAB-PRODUCTION: FAILED";
pub const MARK_LOADED: &str = "CRASHLAB-PRODUCTION: capture kernel loaded";
pub const MARK_CRASHING: &str = "CRASHLAB-PRODUCTION: crashing";
/// Written to /dev/kmsg, so it is in the crashed kernel's log buffer, which
/// crash's `log` must show.
pub const MARKER: &str = "crashlab-marker";
/// The pattern file, in the rootfs (ramfs: zfcpdump_defconfig has no tmpfs).
const PATTERN_FILE: &str = "/pattern";

/// The panic that PID 1 exiting causes; crash's PANIC must name it.
pub const PANIC: &str = "Attempted to kill init!";

/// Busybox applets the init script uses.
const APPLETS: &[&str] = &[
    "sh", "mount", "cat", "echo", "grep", "sed", "tr", "poweroff", "uname", "sleep", "[", "dd",
];

/// The capture kernels the production initramfs carries, by name.
pub struct CaptureFiles<'a> {
    /// `(name, image, initrd)`: /init loads `/capture/<name>.image`, with
    /// `/capture/<name>.rd` if there is one (none when the initramfs is
    /// built into the image), as chosen by `crashlab.capture=<name>` on the
    /// production command line.
    pub captures: Vec<(&'static str, &'a Path, Option<&'a Path>)>,
}

/// The production /init. Its knobs come from the production command line:
/// `crashlab.seed=`, `crashlab.pages=` (the page-cache pattern),
/// `crashlab.useed=`, `crashlab.upages=` (the pattern a process holds in
/// anonymous memory), `crashlab.capture=` (which capture initrd) and
/// `crashlab.append=` (the capture kernel's command line, with `+` for
/// spaces, since the kernel splits its own command line at spaces).
///
/// Before it crashes, the guest holds memory of every class a dump level
/// can leave out: page cache (the ramfs pattern, the files of the
/// initramfs, and the dump disk's block-device cache, read with dd),
/// anonymous user memory (the holder process) and free memory (the rest).
fn init_script() -> String {
    format!(
        r#"#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
# kexec reads /sys/devices/system/memory/block_size_bytes, which needs
# CONFIG_MEMORY_HOTPLUG; zfcpdump_defconfig has none. The real sysfs goes
# elsewhere and /sys is a ramfs directory with that one file (toolchain.md).
mount -t sysfs sysfs /sysfs
fail() {{ echo "{failed}: $*"; poweroff -f; sleep 60; }}
arg() {{
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1="*) echo "${{w#*=}}" ;; esac
    done
}}
seed=$(arg crashlab.seed)
pages=$(arg crashlab.pages)
capture=$(arg crashlab.capture)
append=$(arg crashlab.append | tr + ' ')
[ -n "$seed" ] && [ -n "$pages" ] && [ -n "$capture" ] || fail "crashlab.seed, .pages or .capture missing"
echo "CRASHLAB-PRODUCTION: kernel $(uname -r), $(grep -c '^processor ' /proc/cpuinfo) CPUs"
grep -i 'crash kernel' /proc/iomem | sed 's/^ */CRASHLAB-PRODUCTION: reserved /'
crashlab-pattern "$seed" "$pages" {pattern} || fail "crashlab-pattern"
useed=$(arg crashlab.useed)
upages=$(arg crashlab.upages)
[ -n "$useed" ] && [ -n "$upages" ] || fail "crashlab.useed or .upages missing"
crashlab-pattern "$useed" "$upages" --hold /tmp/held &
i=0
while [ ! -e /tmp/held ]; do
    i=$((i + 1)); [ $i -le 60 ] || fail "the anonymous pattern holder did not start"; sleep 1
done
i=0
while [ ! -b /dev/sda ]; do
    i=$((i + 1)); [ $i -le 60 ] || fail "no /dev/sda for the block-device cache"; sleep 1
done
dd if=/dev/sda of=/dev/null bs=1M count=16 2>/dev/null || fail "reading /dev/sda"
grep -E '^(MemFree|Cached|AnonPages|Buffers):' /proc/meminfo | tr -s ' ' | sed 's/^/CRASHLAB-PRODUCTION: /'
if [ -e /capture/"$capture".rd ]; then
    kexec -p /capture/"$capture".image --initrd=/capture/"$capture".rd --append="$append" \
        || fail "kexec -p (exit $?)"
else
    kexec -p /capture/"$capture".image --append="$append" || fail "kexec -p (exit $?)"
fi
[ "$(cat /sysfs/kernel/kexec_crash_loaded)" = 1 ] || fail "kexec_crash_loaded is not 1"
echo "{loaded}: $capture, append: $append"
echo "{marker} seed=$seed pages=$pages capture=$capture" > /dev/kmsg
echo "{crashing}"
exit 1
"#,
        failed = MARK_FAILED,
        loaded = MARK_LOADED,
        crashing = MARK_CRASHING,
        marker = MARKER,
        pattern = PATTERN_FILE,
    )
}

/// Writes the production initramfs (newc cpio, uncompressed) to `out`.
pub fn write_initramfs(
    tools: &Path,
    pattern_bin: &Path,
    capture: &CaptureFiles,
    out: &Path,
) -> Result<()> {
    let mut a = Archive::new();
    const SOURCE: &str = "crash lab production initramfs";
    let mut add = |path: &str, mode: u32, kind: Kind| a.add_entry(path, mode, kind, SOURCE);
    for d in ["proc", "dev", "sysfs", "tmp", "capture"] {
        add(d, 0o755, Kind::Dir)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    add("dev/console", 0o600, Kind::Char { major: 5, minor: 1 })?;
    add(
        "sys/devices/system/memory/block_size_bytes",
        0o444,
        Kind::File(b"10000000\n".to_vec()),
    )?;
    add("init", 0o755, Kind::File(init_script().into_bytes()))?;
    for bin in CRASHLAB_GUEST.binaries {
        for rel in elf_closure(tools, bin)? {
            let data = fs::read(in_root(tools, &rel))
                .with_context(|| format!("cannot read {rel} from {}", tools.display()))?;
            add(&rel, 0o755, Kind::File(data))?;
        }
    }
    for applet in APPLETS {
        add(
            &format!("bin/{applet}"),
            0o777,
            Kind::Symlink("busybox".into()),
        )?;
    }
    let data =
        fs::read(pattern_bin).with_context(|| format!("cannot read {}", pattern_bin.display()))?;
    add("bin/crashlab-pattern", 0o755, Kind::File(data))?;
    for (name, image, rd) in &capture.captures {
        let data = fs::read(image).with_context(|| format!("cannot read {}", image.display()))?;
        add(&format!("capture/{name}.image"), 0o644, Kind::File(data))?;
        if let Some(rd) = rd {
            let data = fs::read(rd).with_context(|| format!("cannot read {}", rd.display()))?;
            add(&format!("capture/{name}.rd"), 0o644, Kind::File(data))?;
        }
    }
    let f = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let w = a.write(std::io::BufWriter::new(f), 0)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}
