//! The QEMU guest runner: a qemu-system-s390x command line for a kernel, an
//! initramfs and disks, run with its console captured and a timeout; and a
//! minimal QMP client for what a test asks of a running guest.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// A disk attached to the guest.
pub struct Drive {
    pub file: PathBuf,
    /// `scsi` (virtio-scsi, /dev/sdX) or `blk` (virtio-blk, /dev/vdX).
    pub bus: &'static str,
    pub sector_size: u32,
    /// QEMU's blkdebug rules: the image is opened through blkdebug, with
    /// the raw format driver above it (blkdebug's rules fire on the events
    /// of a format driver).
    pub blkdebug: Option<PathBuf>,
    /// QEMU's write throttling, bytes per second.
    pub write_bps: Option<u64>,
    /// Only the backend is on the command line; the device comes later
    /// through QMP `device_add` ([`Drive::device_add`]).
    pub hotplug: bool,
    /// Read-only (a shared lock: guests running at once may read the file).
    pub read_only: bool,
}

impl Drive {
    pub fn new(file: PathBuf, bus: &'static str, sector_size: u32) -> Drive {
        Drive {
            file,
            bus,
            sector_size,
            blkdebug: None,
            write_bps: None,
            hotplug: false,
            read_only: false,
        }
    }

    /// The `-drive` argument of drive number `i`.
    fn backend(&self, i: usize) -> String {
        let mut d = match &self.blkdebug {
            Some(rules) => format!(
                "if=none,id=d{i},driver=raw,file.driver=blkdebug,file.config={},\
                 file.image.driver=file,file.image.filename={}",
                rules.display(),
                self.file.display()
            ),
            None => format!("if=none,id=d{i},file={},format=raw", self.file.display()),
        };
        if self.read_only {
            d.push_str(",readonly=on");
        }
        if let Some(bps) = self.write_bps {
            d.push_str(&format!(",throttling.bps-write={bps}"));
        }
        d
    }

    /// The device of drive number `i`: its driver and properties.
    fn device(&self, i: usize) -> Vec<(&'static str, Value)> {
        let bs = json!(self.sector_size);
        let mut props = match self.bus {
            "scsi" => vec![
                ("driver", json!("scsi-hd")),
                ("bus", json!("scsi0.0")),
                ("scsi-id", json!(i)),
            ],
            _ => vec![("driver", json!("virtio-blk-ccw"))],
        };
        props.extend([
            ("drive", json!(format!("d{i}"))),
            ("id", json!(format!("dev{i}"))),
            ("logical_block_size", bs.clone()),
            ("physical_block_size", bs),
        ]);
        props
    }

    /// The `-device` argument of drive number `i`.
    fn device_arg(&self, i: usize) -> String {
        let props = self.device(i);
        let mut out = props[0].1.as_str().unwrap_or_default().to_string();
        for (k, v) in &props[1..] {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            out.push_str(&format!(",{k}={v}"));
        }
        out
    }

    /// Plugs in drive number `i` of a running guest (a drive with `hotplug`).
    pub fn device_add(&self, qmp: &mut Qmp, i: usize) -> Result<()> {
        let args: serde_json::Map<String, Value> = self
            .device(i)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        qmp.execute("device_add", Value::Object(args)).map(|_| ())
    }
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
    /// (`-action panic=exit-failure`); None when killed (at the timeout, or
    /// by the watcher).
    pub exit: Option<i32>,
    pub console: String,
    /// Each console line with when it arrived, from QEMU's start.
    pub lines: Vec<(Duration, String)>,
    /// The watcher killed QEMU (SIGKILL: a power cut).
    pub killed: bool,
    pub elapsed: Duration,
}

/// What a watcher of [`Boot::run_watched`] wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    Go,
    /// SIGKILL QEMU now.
    Kill,
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
            c.arg("-drive").arg(d.backend(i));
            if !d.hotplug {
                c.arg("-device").arg(d.device_arg(i));
            }
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
        self.run_watched(extra, |_, _| Watch::Go)
    }

    /// [`Boot::run_with`], calling `watch(elapsed, line)` for each console
    /// line as it arrives and every few milliseconds in between (`None`);
    /// QEMU is killed with SIGKILL when it answers [`Watch::Kill`].
    pub fn run_watched(
        &self,
        extra: &[String],
        mut watch: impl FnMut(Duration, Option<&str>) -> Watch,
    ) -> Result<Outcome> {
        if let Some(dir) = self.log.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut cmd = self.command_with(extra);
        let mut log = fs::File::create(&self.log)
            .with_context(|| format!("cannot create {}", self.log.display()))?;
        writeln!(log, "$ {cmd:?}")?;
        let t = Instant::now();
        let (reader, writer) = zfcpdump_builder::util::pipe()?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()
            .context("cannot run qemu-system-s390x (Debian: qemu-system-misc)")?;
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let (tx, rx) = mpsc::channel::<(Duration, String)>();
        let reader_thread = std::thread::spawn(move || -> std::io::Result<()> {
            for line in BufReader::new(reader).lines() {
                let line = line.unwrap_or_default();
                // The SCLP console ends lines with \r\n.
                let line = line.trim_end_matches('\r').to_string();
                writeln!(log, "{line}")?;
                let _ = tx.send((t.elapsed(), line));
            }
            Ok(())
        });
        let mut lines = Vec::new();
        let mut killed = false;
        let exit = loop {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok((at, line)) => {
                    let w = watch(at, Some(&line));
                    lines.push((at, line));
                    if w == Watch::Kill {
                        killed = true;
                    }
                }
                Err(_) => {
                    if watch(t.elapsed(), None) == Watch::Kill {
                        killed = true;
                    }
                }
            }
            if killed || t.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            if let Some(status) = child.try_wait()? {
                break status.code();
            }
        };
        reader_thread
            .join()
            .map_err(|_| anyhow::anyhow!("console reader panicked"))??;
        lines.extend(rx.try_iter());
        let mut console = String::new();
        for (_, l) in &lines {
            console.push_str(l);
            console.push('\n');
        }
        Ok(Outcome {
            exit,
            console,
            lines,
            killed,
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
    let mut qmp = Qmp::connect(sock, timeout, &qemu_gone)?;
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
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to QEMU's QMP socket (retrying while QEMU starts, until
    /// `timeout` or `qemu_gone`) and enters command mode.
    pub fn connect(sock: &Path, timeout: Duration, qemu_gone: &dyn Fn() -> bool) -> Result<Qmp> {
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
        Ok(qmp)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading from QMP")?;
        ensure!(n > 0, "QEMU closed the QMP connection");
        serde_json::from_str(&line).with_context(|| format!("QMP sent {line:?}"))
    }

    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
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
