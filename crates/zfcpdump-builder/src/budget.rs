//! The memory budget: what the payload needs in the dump kernel's memory,
//! against the HSA size the profile targets.
//!
//! In dump mode the kernel may only use the saved low memory, and it holds
//! all of these at once during boot: its own image (text to bss), the
//! compressed initrd and the unpacked initramfs (until it frees the initrd),
//! and the decompressor's working memory. The runtime reserve covers what
//! the running kernel and the agent need after that.

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::initramfs::{self, InitramfsRecord};
use crate::kernel::KernelRecord;
use crate::profile::Profile;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub component: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Table {
    pub rows: Vec<Row>,
    pub total: u64,
    pub budget: u64,
}

impl Table {
    pub fn compute(profile: &Profile, k: &KernelRecord, i: &InitramfsRecord) -> Table {
        let mut rows = Vec::new();
        match &k.embedded {
            // Counted once, where it lies: inside the image's .init.ramfs,
            // which the footprint from vmlinux already spans.
            Some(_) => rows.push(row("kernel with its initramfs (0 to bss end)", k.footprint)),
            None => {
                rows.push(row("kernel (physical 0 to end of bss)", k.footprint));
                rows.push(row(
                    &format!("initrd ({}, compressed)", i.compression),
                    i.rd_size,
                ));
            }
        }
        rows.extend([
            row("initramfs, unpacked", i.unpacked_size),
            row(
                &format!("{} decompressor", i.compression),
                initramfs::decompressor_memory(i.compression),
            ),
            row(
                "runtime reserve (kernel + agent)",
                profile.budget.runtime_reserve,
            ),
        ]);
        Table {
            total: rows.iter().map(|r| r.bytes).sum(),
            rows,
            budget: profile.budget.total,
        }
    }

    pub fn headroom(&self) -> i64 {
        self.budget as i64 - self.total as i64
    }

    pub fn render(&self) -> String {
        let pct = |b: u64| 100.0 * b as f64 / self.budget as f64;
        let mut s = format!("{:<38} {:>12} {:>8}\n", "component", "bytes", "budget");
        for r in &self.rows {
            s.push_str(&format!(
                "{:<38} {:>12} {:>7.1}%\n",
                r.component,
                r.bytes,
                pct(r.bytes)
            ));
        }
        s.push_str(&format!(
            "{:<38} {:>12} {:>7.1}%\n",
            "total",
            self.total,
            pct(self.total)
        ));
        s.push_str(&format!(
            "{:<38} {:>12} {:>7.1}%\n",
            "headroom",
            self.headroom(),
            100.0 * self.headroom() as f64 / self.budget as f64
        ));
        s.push_str(&format!("{:<38} {:>12}\n", "budget", self.budget));
        s
    }

    /// Fails when over budget, naming the biggest parts.
    pub fn check(&self, profile: &str) -> Result<()> {
        if self.total <= self.budget {
            return Ok(());
        }
        let mut rows = self.rows.clone();
        rows.sort_by_key(|r| std::cmp::Reverse(r.bytes));
        let biggest: Vec<String> = rows
            .iter()
            .take(3)
            .map(|r| format!("{} ({} bytes)", r.component, r.bytes))
            .collect();
        bail!(
            "profile {profile:?} is over its memory budget by {} bytes ({} of {}); biggest parts: {}. \
             Shrink them, or raise budget.total if the target machines save more (z15 and later)",
            self.total - self.budget,
            self.total,
            self.budget,
            biggest.join(", ")
        )
    }
}

fn row(c: &str, bytes: u64) -> Row {
    Row {
        component: c.into(),
        bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(budget: u64) -> Table {
        let rows = vec![
            row("kernel", 7 << 20),
            row("initrd", 1 << 20),
            row("reserve", 8 << 20),
        ];
        Table {
            total: rows.iter().map(|r| r.bytes).sum(),
            rows,
            budget,
        }
    }

    #[test]
    fn within_budget_passes() {
        let t = table(32 << 20);
        t.check("default").unwrap();
        assert_eq!(t.headroom(), 16 << 20);
        assert!(t.render().contains("headroom"));
    }

    #[test]
    fn over_budget_names_the_biggest_parts() {
        let t = table(12 << 20);
        let e = t.check("tiny").unwrap_err().to_string();
        assert!(e.contains("over its memory budget by 4194304 bytes"), "{e}");
        assert!(e.starts_with("profile \"tiny\""), "{e}");
        let reserve = e.find("reserve").unwrap();
        let kernel = e.find("kernel").unwrap();
        assert!(reserve < kernel, "biggest first: {e}");
    }
}
