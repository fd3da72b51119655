//! The QEMU guest runner: a qemu-system-s390x command line for a kernel, an
//! initramfs and disks, run with its console captured and a timeout; and a
//! minimal QMP client for what a test asks of a running guest.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// A disk attached to the guest.
pub struct Drive {
    pub file: PathBuf,
    /// `scsi` (virtio-scsi, /dev/sdX) or `blk` (virtio-blk, /dev/vdX).
    pub bus: &'static str,
    pub sector_size: u32,
}

pub struct Boot<'a> {
    pub image: &'a Path,
    /// None for an image that carries its initramfs.
    pub initrd: Option<&'a Path>,
    pub memory: u64,
    /// Virtual CPUs (`-smp`).
    pub cpus: u32,
    pub append: String,
    pub drives: Vec<Drive>,
    pub timeout: Duration,
    pub log: PathBuf,
}

pub struct Outcome {
    /// QEMU's exit status: 0 after the guest powered off, 1 on a guest panic
    /// (`-action panic=exit-failure`); None when killed at the timeout.
    pub exit: Option<i32>,
    pub console: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The console's last lines, for failure messages.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Boot<'_> {
    /// The QEMU command line, with `extra` arguments at the end (e.g. a QMP
    /// socket or another `-action`).
    pub fn command_with(&self, extra: &[String]) -> Command {
        let mut c = Command::new("qemu-system-s390x");
        c.args(["-M", "s390-ccw-virtio", "-nographic", "-no-reboot"])
            .arg("-smp")
            .arg(self.cpus.to_string())
            .arg("-m")
            .arg(format!("{}M", self.memory.div_ceil(1 << 20)))
            .args(["-action", "panic=exit-failure"])
            .arg("-kernel")
            .arg(self.image);
        if let Some(rd) = self.initrd {
            c.arg("-initrd").arg(rd);
        }
        c.arg("-append")
            .arg(format!("console=ttysclp0 {}", self.append).trim_end());
        if self.drives.iter().any(|d| d.bus == "scsi") {
            c.args(["-device", "virtio-scsi-ccw,id=scsi0"]);
        }
        for (i, d) in self.drives.iter().enumerate() {
            c.arg("-drive").arg(format!(
                "if=none,id=d{i},file={},format=raw",
                d.file.display()
            ));
            let dev = match d.bus {
                "scsi" => format!("scsi-hd,drive=d{i},bus=scsi0.0,scsi-id={i}"),
                _ => format!("virtio-blk-ccw,drive=d{i}"),
            };
            let bs = d.sector_size;
            c.arg("-device").arg(format!(
                "{dev},logical_block_size={bs},physical_block_size={bs}"
            ));
        }
        c.args(extra);
        c
    }

    /// Boots, captures the console into `log`, kills QEMU at the timeout.
    pub fn run(&self) -> Result<Outcome> {
        self.run_with(&[])
    }

    /// [`Boot::run`] with extra QEMU arguments at the end of the command line.
    pub fn run_with(&self, extra: &[String]) -> Result<Outcome> {
        if let Some(dir) = self.log.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut cmd = self.command_with(extra);
        let mut log = fs::File::create(&self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        writeln!(log, "$ {cmd:?}")?;
        let t = Instant::now();
        let (reader, writer) = std::io::pipe()?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()
            .context("cannot run qemu-system-s390x (Debian: qemu-system-misc)")?;
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let reader_thread = std::thread::spawn(move || -> std::io::Result<String> {
            let mut console = String::new();
            for line in BufReader::new(reader).lines() {
                let line = line.unwrap_or_default();
                // The SCLP console ends lines with \r\n.
                let line = line.trim_end_matches('\r');
                writeln!(log, "{line}")?;
                console.push_str(line);
                console.push('\n');
            }
            Ok(console)
        });
        let exit = loop {
            if let Some(status) = child.try_wait()? {
                break status.code();
            }
            if t.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let console = reader_thread
            .join()
            .map_err(|_| anyhow::anyhow!("console reader panicked"))??;
        Ok(Outcome {
            exit,
            console,
            elapsed: t.elapsed(),
        })
    }
}

/// Waits for the guest to power off (paused), dumps its memory, quits QEMU.
pub fn dump_via_qmp(
    sock: &Path,
    out: &Path,
    timeout: Duration,
    qemu_gone: impl Fn() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let stream = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) => {
                if qemu_gone() || Instant::now() > deadline {
                    return Err(e).with_context(|| {
                        format!("cannot connect to QEMU's QMP socket {}", sock.display())
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    // A dead QEMU closes the socket; the timeout is for a hung one.
    stream.set_read_timeout(Some(timeout))?;
    let mut qmp = Qmp {
        reader: BufReader::new(stream.try_clone()?),
        writer: stream,
    };
    qmp.read()?; // greeting
    qmp.execute("qmp_capabilities", json!({}))?;
    let res = (|| {
        loop {
            let st = qmp.execute("query-status", json!({}))?;
            match st["status"].as_str() {
                Some("shutdown") => break,
                Some("running") | Some("prelaunch") => {}
                other => bail!("unexpected guest state {other:?} before the power-off"),
            }
            ensure!(
                Instant::now() < deadline,
                "the guest did not power off within {} s",
                timeout.as_secs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let protocol = format!("file:{}", out.display());
        // Synchronous (no detach): returns when the file is complete.
        qmp.execute(
            "dump-guest-memory",
            json!({"paging": false, "protocol": protocol}),
        )?;
        Ok(())
    })();
    let quit = qmp.execute("quit", json!({}));
    res?;
    let Err(e) = quit else { return Ok(()) };
    // A QEMU that closed the socket was quit or killed (the runner's
    // timeout); the caller's exit-status check tells which.
    let gone_by = Instant::now() + Duration::from_secs(5);
    while !qemu_gone() && Instant::now() < gone_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    if qemu_gone() { Ok(()) } else { Err(e) }
}

/// A minimal QMP client: one command at a time, events skipped.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        ensure!(n > 0, "QEMU closed the QMP connection");
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let msg = json!({"execute": cmd, "arguments": args});
        writeln!(self.writer, "{msg}").context("writing to QMP")?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {cmd}: {}", e["desc"].as_str().unwrap_or("error"));
            }
            // An event ({"event": ...}): not the answer.
        }
    }
}
