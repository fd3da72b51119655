//! The agent's console: its lines in the documented order, and its numbers.

/// The agent's summary line of an elided dump (`elide::summary_line`).
pub(crate) const ELISION_SUMMARY: &str = "filtered: dump level ";

/// MiB with one truncated decimal, as the agent prints them.
pub(crate) fn fmt_mib(n: u64) -> String {
    format!("{}.{} MiB", n >> 20, ((n & 0xfffff) * 10) >> 20)
}

/// The console lines of a good dump, in order: banner, HSA-backed ranges,
/// HSA release, the other ranges, the ELF header block, the final 100%
/// progress line, `Dump successful`, the peak RSS (the agent prints the
/// verdict first, README "Console messages"). An elided dump (`elided`) also
/// has, in order: the elision plan before the first range, the notes right
/// after the HSA release, its own header line, and the elision summary after
/// the progress; a byte-exact one has no elision line at all.
///
/// Without HSA-backed ranges (`hsa_backed` false: kdump, which has no HSA),
/// there must be no HSA-backed range line; the release line still comes.
pub(crate) fn console_order(console: &str, elided: bool, hsa_backed: bool) -> Vec<String> {
    let lines: Vec<&str> = console.lines().collect();
    let all = |pat: &str| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(pat))
            .map(|(i, _)| i)
            .collect()
    };
    let banner: Vec<usize> = lines
        .iter()
        .position(|l| l.starts_with("zfcpdump-agent ") && l.contains("writing the dump"))
        .into_iter()
        .collect();
    let progress = all("progress: ");
    let header = if elided {
        "write ELF header block (last)"
    } else {
        "copy ELF header block (last)"
    };
    let summary: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with(ELISION_SUMMARY))
        .map(|(i, _)| i)
        .collect();
    // (what, its lines), in the order they must appear.
    let mut groups: Vec<(&str, Vec<usize>)> = vec![("agent banner", banner)];
    if elided {
        groups.push(("elision plan", all("filtered layout: ")));
    }
    let hsa_lines = all("copy HSA-backed range ");
    let mut p = Vec::new();
    if hsa_backed {
        groups.push(("HSA-backed ranges", hsa_lines));
    } else if let Some(&i) = hsa_lines.first() {
        p.push(format!(
            "an HSA-backed range without an HSA: {:?}",
            lines[i].trim()
        ));
    }
    groups.push(("HSA release", all("HSA release")));
    if elided {
        groups.push(("notes", all("copy notes ")));
    }
    groups.push(("other ranges", all("copy range ")));
    groups.push(("ELF header block", all(header)));
    groups.push((
        "final progress",
        progress.last().copied().into_iter().collect(),
    ));
    if elided {
        groups.push(("elision summary", summary));
    }
    groups.push(("Dump successful", all("Dump successful")));
    groups.push(("peak RSS", all("peak RSS: ")));
    p.extend(
        groups
            .iter()
            .filter(|(_, v)| v.is_empty())
            .map(|(what, _)| format!("the console has no {what} line")),
    );
    if !elided {
        if let Some(l) = lines
            .iter()
            .find(|l| l.contains("filtered layout") || l.contains("filtered: "))
        {
            p.push(format!(
                "filtering is off in this build, yet the console says {:?}",
                l.trim()
            ));
        }
    }
    if groups.iter().any(|(_, v)| v.is_empty()) {
        return p;
    }
    let last_progress = *progress.last().unwrap_or(&0);
    if !lines[last_progress].contains("(100%)") {
        p.push(format!(
            "the last progress line is not 100%: {:?}",
            lines[last_progress]
        ));
    }
    // Each group must lie entirely after the previous one.
    for w in groups.windows(2) {
        let ((a, va), (b, vb)) = (&w[0], &w[1]);
        if va.last() >= vb.first() {
            p.push(format!("console order: {a} not before {b}"));
        }
    }
    let release = &groups
        .iter()
        .find(|(what, _)| *what == "HSA release")
        .expect("listed above")
        .1;
    if release.len() != 1 {
        p.push(format!("{} HSA release lines, expected 1", release.len()));
    }
    p
}

/// The `peak RSS: N KiB` value.
/// Whether the kernel's console shows where its initramfs came from as
/// expected: an external initrd makes it print "Trying to unpack rootfs
/// image as initramfs"; an image that carries its initramfs unpacks only
/// its own, silently. None when it is as expected, else the problem.
pub(crate) fn initramfs_origin(console: &str, builtin: bool) -> Option<String> {
    let initrd = console.contains("Trying to unpack rootfs image as initramfs");
    match (builtin, initrd) {
        (true, true) => Some(
            "the kernel unpacked an external initrd, but its initramfs should be built in".into(),
        ),
        (false, false) => Some("the kernel did not unpack the initrd".into()),
        _ => None,
    }
}

pub(crate) fn peak_rss(console: &str) -> Option<u64> {
    console.lines().rev().find_map(|l| {
        let rest = &l[l.find("peak RSS: ")? + "peak RSS: ".len()..];
        rest.strip_suffix(" KiB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
[    0.29] Run /init as init process
zfcpdump-agent 0.1.0: writing the dump (PID 1)
busy marker written
copy HSA-backed range 0x3000..0x403000 (4096 KiB)
HSA release (simulated HSA of 0x400000 bytes: its reads fail from now on)
copy range 0x1000..0x3000 (8 KiB)
copy range 0x403000..0xa03000 (6144 KiB)
copy ELF header block (last) 0x0..0x1000 (4 KiB)
progress: 10.0 of 10.0 MiB (100%), 5.0 MiB/s, ETA 0 s
Dump successful
peak RSS: 1234 KiB
";

    #[test]
    fn console_order_accepts_the_documented_sequence() {
        assert_eq!(console_order(GOOD, false, true), Vec::<String>::new());
        assert_eq!(peak_rss(GOOD), Some(1234));
    }

    #[test]
    fn without_an_hsa_there_is_no_hsa_backed_range() {
        let kdump: String = GOOD
            .lines()
            .filter(|l| !l.contains("copy HSA-backed range"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(console_order(&kdump, false, false), Vec::<String>::new());
        let p = console_order(GOOD, false, false);
        assert!(
            p[0].starts_with("an HSA-backed range without an HSA"),
            "{p:?}"
        );
        let p = console_order(&kdump, false, true);
        assert!(
            p.iter().any(|l| l.contains("no HSA-backed ranges line")),
            "{p:?}"
        );
    }

    #[test]
    fn console_order_finds_misordered_and_missing_lines() {
        let swapped = GOOD.replace(
            "HSA release (simulated HSA of 0x400000 bytes: its reads fail from now on)\ncopy range 0x1000..0x3000 (8 KiB)",
            "copy range 0x1000..0x3000 (8 KiB)\nHSA release (simulated HSA of 0x400000 bytes: its reads fail from now on)",
        );
        let p = console_order(&swapped, false, true);
        assert!(
            p.iter()
                .any(|m| m.contains("HSA release not before other ranges")),
            "{p:?}"
        );
        let p = console_order(&GOOD.replace("Dump successful\n", ""), false, true);
        assert!(p.iter().any(|m| m.contains("no Dump successful")), "{p:?}");
        let p = console_order(&GOOD.replace("(100%)", "(99%)"), false, true);
        assert!(p.iter().any(|m| m.contains("not 100%")), "{p:?}");
    }

    /// The agent's lines for an elided dump (README "Zero-page elision").
    const ELIDED: &str = "\
zfcpdump-agent 0.1.0: writing the dump (PID 1)
filtered layout: 1024 program headers reserved (56 KiB), notes at 0xe000, data from 0x10000
busy marker written
copy HSA-backed range 0x3000..0x403000 (4096 KiB)
HSA release (simulated HSA of 0x400000 bytes: its reads fail from now on)
copy notes 0x1000..0x2698 to 0xe000
copy range 0x403000..0x1003000 (12288 KiB)
write ELF header block (last) with 70 program headers, 0x0..0xe000
progress: 16.0 of 16.0 MiB (100%), 5.0 MiB/s, ETA 0 s
filtered: dump level 1, 8.0 MiB of 16.0 MiB memory left out in 68 runs; 8.0 MiB written, 70 program headers of 1024 reserved
Dump successful
peak RSS: 1300 KiB
";

    #[test]
    fn console_order_of_an_elided_dump() {
        assert_eq!(console_order(ELIDED, true, true), Vec::<String>::new());
        // Its own lines are required, and misplaced ones found.
        let p = console_order(ELIDED, false, true);
        assert!(p.iter().any(|m| m.contains("no ELF header block")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("filtering is off")), "{p:?}");
        let p = console_order(&GOOD.replace("copy ELF", "write ELF"), true, true);
        assert!(p.iter().any(|m| m.contains("no elision plan")), "{p:?}");
        assert!(p.iter().any(|m| m.contains("no notes")), "{p:?}");
        let summary = ELIDED.lines().nth(9).unwrap();
        assert!(summary.starts_with(ELISION_SUMMARY));
        let late = ELIDED.replace(&format!("{summary}\n"), "") + summary + "\n";
        let p = console_order(&late, true, true);
        assert!(
            p.iter()
                .any(|m| m.contains("elision summary not before Dump successful")),
            "{p:?}"
        );
        assert_eq!(fmt_mib(8 << 20), "8.0 MiB");
        assert_eq!(fmt_mib((16 << 20) + (1 << 19) + 1), "16.5 MiB");
    }
}
