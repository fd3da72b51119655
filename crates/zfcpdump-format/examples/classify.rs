//! Classifies the pages of an ELF dump file: `classify DUMP [LEVEL [MIN_RUN]]`.
use std::fs::File;
use std::os::unix::fs::FileExt;
use zfcpdump_format::elf::{ReadAt, Vmcore};
use zfcpdump_format::filter::classify::leaves_out;
use zfcpdump_format::filter::{self, CLASSES, DumpLevel, VmcorePhys, class_index};

struct F(File);
impl ReadAt for F {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut f = F(File::open(&a[1]).unwrap());
    let size = f.0.metadata().unwrap().len();
    let level = DumpLevel::new(a.get(2).map_or(31, |s| s.parse().unwrap())).unwrap();
    let min_run = a.get(3).map_or(1, |s| s.parse().unwrap());
    let vm = Vmcore::read(&mut f, size).unwrap();
    let t = std::time::Instant::now();
    let mut mem = VmcorePhys::new(&vm, &mut f);
    let mut pf = match filter::prepare(&vm, &mut mem, level, min_run) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("prepare: {e}");
            std::process::exit(1)
        }
    };
    eprintln!(
        "prepared in {:?}: {} runs, {} pfns",
        t.elapsed(),
        pf.map().runs.len(),
        pf.map().pfns()
    );
    let mut counts = [0u64; 5];
    let mut runs = 0u64;
    let mut prev = false;
    for r in filter::dump_pfns(&vm) {
        let mut classes = vec![0u8; (r.end - r.start) as usize];
        pf.fill(&mut mem, r.start, &mut classes);
        if std::env::var_os("WINDOWS").is_some() {
            for (w, c) in classes.chunks(1024).enumerate() {
                let n = |b: u8| c.iter().filter(|&&x| x == b).count();
                if n(8) > 0 || n(2) > 0 {
                    println!(
                        "window {}: cache {} user {} free {}",
                        r.start + w as u64 * 1024,
                        n(2),
                        n(8),
                        n(16)
                    );
                }
            }
        }
        for &c in &classes {
            let out = leaves_out(c);
            if out {
                counts[class_index(c)] += 1;
            }
            if out && !prev {
                runs += 1;
            }
            prev = out;
        }
    }
    for (i, (_, name)) in CLASSES.iter().enumerate() {
        println!("{name}: {}", counts[i]);
    }
    println!(
        "runs: {runs} counts: {:?} in {:?}",
        pf.counts(),
        t.elapsed()
    );
}
