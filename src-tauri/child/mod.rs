//! Airlock's own short-lived child processes: the device probe and the document reader run as
//! `airlock <hidden subcommand>` so that a driver that hangs or a hostile file that makes a parser
//! recurse, allocate gigabytes or spin cannot take the app down. This module finds the executable
//! that answers those subcommands ([`own_exe`]) and runs one under limits ([`run_limited`]):
//! memory and CPU time enforced by the kernel (`setrlimit` in the child, Linux), wall-clock time
//! and output size enforced here. Which limit a child broke comes back in words.
//!
//! Uses no other module of Airlock.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The executable that answers Airlock's hidden subcommands: this one when it is `airlock` (or
/// `airlock-desktop`), else an `airlock` next to it or one directory up (a test binary in
/// `target/<profile>/deps/`). Never a test harness, which would take the arguments as filters,
/// and never one a variable names: what a child reports comes from this installation's code.
pub fn own_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let stem = exe.file_stem()?.to_string_lossy().into_owned();
    if stem == "airlock" || stem == "airlock-desktop" {
        return Some(exe);
    }
    let name = format!("airlock{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors().skip(1).take(2).map(|d| d.join(&name)).find(|p| p.is_file())
}

/// What a child may use. `memory` and `cpu` are enforced by the kernel on Linux (elsewhere only
/// `wall` and `output` hold).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Heap and other private memory (`RLIMIT_DATA`), bytes.
    pub memory: Option<u64>,
    /// CPU time (`RLIMIT_CPU`).
    pub cpu: Option<Duration>,
    /// Wall-clock time, after which the child is killed.
    pub wall: Duration,
    /// Bytes of standard output kept; a child that writes more is killed.
    pub output: usize,
}

/// Why a child gave no usable answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChildError {
    #[error("cannot start {exe}: {message}")]
    Start { exe: String, message: String },
    #[error("it did not finish within {} s", .0.as_secs())]
    WallClock(Duration),
    #[error("it needed more than {} s of CPU time", .0.as_secs())]
    CpuTime(Duration),
    #[error("it needed more than {} MB of memory", .0 >> 20)]
    Memory(u64),
    #[error("its output passed {} MB", .0 >> 20)]
    Output(usize),
    #[error("it nests too deeply (the reader ran out of stack)")]
    StackOverflow,
    #[error("it crashed ({status}){}", if .detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Crashed { status: String, detail: String },
}

/// What a child that finished printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last non-empty line of its standard error (its own error message), at most 300 chars.
    pub stderr_tail: String,
}

/// Runs `cmd` under `limits`, capturing its output. A child that exits (with any code) is
/// [`Finished`]; one killed by a limit or a signal is the [`ChildError`] that says which.
pub fn run_limited(mut cmd: Command, limits: Limits) -> Result<Finished, ChildError> {
    let exe = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    apply_kernel_limits(&mut cmd, limits);
    let mut child = cmd.spawn().map_err(|e| ChildError::Start { exe, message: e.to_string() })?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let cap = limits.output;
    let overflowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = std::thread::spawn({
        let overflowed = overflowed.clone();
        move || {
            let mut kept = Vec::new();
            let _ = (&mut stdout).take(cap as u64 + 1).read_to_end(&mut kept);
            overflowed.store(kept.len() > cap, std::sync::atomic::Ordering::Relaxed);
            kept
        }
    });
    // Drained so the child never blocks on a full pipe; only the tail is kept.
    let err = std::thread::spawn(move || {
        let mut tail = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 64 << 10 {
                tail.drain(..tail.len() - (16 << 10));
            }
        }
        tail
    });
    let started = Instant::now();
    let mut over_time = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limits.wall || overflowed.load(std::sync::atomic::Ordering::Relaxed) => {
                over_time = started.elapsed() > limits.wall;
                kill_group(&mut child);
                match child.wait() {
                    Ok(s) => break s,
                    Err(e) => return Err(ChildError::Crashed { status: e.to_string(), detail: String::new() }),
                }
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(ChildError::Crashed { status: e.to_string(), detail: String::new() }),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let stderr_tail: String = String::from_utf8_lossy(&stderr).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").chars().take(300).collect();
    if over_time {
        return Err(ChildError::WallClock(limits.wall));
    }
    if stdout.len() > cap {
        return Err(ChildError::Output(cap));
    }
    classify(status, &stderr, &stderr_tail, limits).map(|()| Finished { status, stdout, stderr_tail })
}

/// A child that exited is fine here (its code is the caller's business); one that a signal
/// ended broke a limit or crashed, and its standard error says which.
fn classify(status: ExitStatus, stderr: &[u8], stderr_tail: &str, limits: Limits) -> Result<(), ChildError> {
    let text = String::from_utf8_lossy(stderr);
    if text.contains("has overflowed its stack") {
        return Err(ChildError::StackOverflow);
    }
    // Rust's allocator reports a refused allocation, then aborts.
    if let (Some(memory), true) = (limits.memory, text.contains("memory allocation of")) {
        return Err(ChildError::Memory(memory));
    }
    if status.code().is_some() {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::ExitStatusExt;
        if let (Some(cpu), Some(libc::SIGXCPU)) = (limits.cpu, status.signal()) {
            return Err(ChildError::CpuTime(cpu));
        }
    }
    Err(ChildError::Crashed { status: status.to_string(), detail: stderr_tail.to_string() })
}

/// Kills the child and whatever it started (its own process group), so no grandchild keeps
/// the output pipes open.
fn kill_group(child: &mut std::process::Child) {
    #[cfg(target_os = "linux")]
    // SAFETY: kill only sends a signal; the group is the child's own (see apply_kernel_limits).
    unsafe {
        libc::kill(-(child.id() as i32), libc::SIGKILL);
    }
    let _ = child.kill();
}

#[cfg(target_os = "linux")]
fn apply_kernel_limits(cmd: &mut Command, limits: Limits) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let set = |resource: libc::__rlimit_resource_t, soft: u64, hard: u64| {
        let limit = libc::rlimit { rlim_cur: soft as libc::rlim_t, rlim_max: hard as libc::rlim_t };
        // SAFETY: setrlimit only reads the struct passed to it.
        if unsafe { libc::setrlimit(resource, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: runs in the forked child before exec and only calls setrlimit, which is
    // async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(bytes) = limits.memory {
                set(libc::RLIMIT_DATA, bytes, bytes)?;
            }
            if let Some(cpu) = limits.cpu {
                // SIGXCPU at the soft limit, SIGKILL a second later if the child ignores it.
                set(libc::RLIMIT_CPU, cpu.as_secs().max(1), cpu.as_secs().max(1) + 1)?;
            }
            // A crash leaves no core file of a document's contents behind.
            set(libc::RLIMIT_CORE, 0, 0)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn apply_kernel_limits(_cmd: &mut Command, _limits: Limits) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    const ROOMY: Limits = Limits { memory: None, cpu: None, wall: Duration::from_secs(20), output: 1 << 20 };

    #[test]
    fn a_child_that_exits_is_finished_with_its_output_and_error_line() {
        let done = run_limited(sh("echo out; echo 'first' >&2; echo 'the reason' >&2; exit 3"), ROOMY).unwrap();
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr_tail, "the reason");
        assert_eq!(done.status.code(), Some(3));
    }

    #[test]
    fn each_limit_says_which_it_was() {
        let wall = Limits { wall: Duration::from_millis(300), ..ROOMY };
        assert_eq!(run_limited(sh("sleep 30"), wall).unwrap_err(), ChildError::WallClock(Duration::from_millis(300)));
        let output = Limits { output: 1000, ..ROOMY };
        assert_eq!(run_limited(sh("yes"), output).unwrap_err(), ChildError::Output(1000));
        let err = run_limited(sh("kill -SEGV $$"), ROOMY).unwrap_err();
        assert!(matches!(err, ChildError::Crashed { .. }), "{err:?}");
        assert!(matches!(run_limited(Command::new("/nonexistent/airlock"), ROOMY), Err(ChildError::Start { .. })));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_holds_cpu_time() {
        let cpu = Limits { cpu: Some(Duration::from_secs(1)), ..ROOMY };
        assert_eq!(run_limited(sh("while :; do :; done"), cpu).unwrap_err(), ChildError::CpuTime(Duration::from_secs(1)));
    }
}
