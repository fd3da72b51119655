//! Which compiler the kernel's make runs, from the profile: the cross gcc
//! of `kernel.cross_compile`, or what `kernel.make_args` names instead
//! (`CC=...`, or clang through kbuild's `LLVM=`). The stage always passes
//! `CC` itself (with the compile cache's launcher and the path maps), so a
//! `CC` or `LLVM` in `make_args` must change that `CC`, not be overridden
//! by it.

use crate::profile;

/// The `(name, value)` pairs of `kernel.make_args`, in order.
pub fn make_args(k: &profile::Kernel) -> impl Iterator<Item = (&str, &str)> {
    k.make_args.iter().filter_map(|a| a.split_once('='))
}

/// The last value of make variable `name` in `kernel.make_args` (make's
/// command line: the last one wins).
fn make_arg<'a>(k: &'a profile::Kernel, name: &str) -> Option<&'a str> {
    make_args(k)
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .last()
}

/// kbuild's `LLVM=`: an empty value is gcc.
pub fn llvm(k: &profile::Kernel) -> Option<&str> {
    make_arg(k, "LLVM").filter(|v| !v.is_empty())
}

/// The name of an LLVM tool as kbuild forms it from `LLVM=`: `LLVM=1`
/// `clang`, `LLVM=-16` `clang-16`, `LLVM=/opt/llvm/bin/`
/// `/opt/llvm/bin/clang`.
pub fn llvm_tool(llvm: &str, tool: &str) -> String {
    if llvm.ends_with('/') {
        format!("{llvm}{tool}")
    } else if llvm.starts_with('-') {
        format!("{tool}{llvm}")
    } else {
        tool.to_string()
    }
}

/// The kernel's C compiler, as a command line (a `CC=` may carry flags):
/// `CC` from `make_args`, else clang when `LLVM` is set, else
/// `<cross_compile>gcc`.
pub fn cc(k: &profile::Kernel) -> String {
    if let Some(cc) = make_arg(k, "CC") {
        cc.to_string()
    } else if let Some(l) = llvm(k) {
        llvm_tool(l, "clang")
    } else {
        format!("{}gcc", k.cross_compile)
    }
}

/// The program of [`cc`]: its first word.
pub fn cc_program(k: &profile::Kernel) -> String {
    let cc = cc(k);
    cc.split_whitespace().next().unwrap_or_default().to_string()
}

/// Whether make must be given `make_args`' variable `name` as it is: all
/// but `CC`, which goes into the stage's own `CC`.
pub fn passed_through(name: &str) -> bool {
    name != "CC"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(args: &[&str]) -> profile::Kernel {
        let text = format!(
            "[kernel]\nsource = {{ dir = \"/x\" }}\nmake_args = {:?}\n",
            args
        );
        let t: toml::Table = text.parse().unwrap();
        t["kernel"].clone().try_into().unwrap()
    }

    #[test]
    fn the_compiler_follows_make_args() {
        assert_eq!(cc(&kernel(&[])), "s390x-linux-gnu-gcc");
        assert_eq!(cc(&kernel(&["LLVM=1"])), "clang");
        assert_eq!(cc(&kernel(&["LLVM=-16"])), "clang-16");
        assert_eq!(cc(&kernel(&["LLVM=/opt/l/bin/"])), "/opt/l/bin/clang");
        // kbuild: an empty LLVM is gcc; the last one wins.
        assert_eq!(cc(&kernel(&["LLVM="])), "s390x-linux-gnu-gcc");
        assert_eq!(cc(&kernel(&["LLVM=1", "LLVM="])), "s390x-linux-gnu-gcc");
        // CC wins over LLVM, as in kbuild (LLVM only sets CC's default).
        let k = kernel(&["LLVM=1", "CC=clang-17 -fcolor-diagnostics"]);
        assert_eq!(cc(&k), "clang-17 -fcolor-diagnostics");
        assert_eq!(cc_program(&k), "clang-17");
        assert_eq!(llvm(&k), Some("1"));
    }
}
