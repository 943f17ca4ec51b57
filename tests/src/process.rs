//! Server processes that die with the test process.
//!
//! A test binary that panics, is interrupted or is killed must not leave a PostgreSQL server or
//! a warden proxy behind. Every server the harness starts goes through [`ServerProcess::spawn`]:
//!
//! - the fork happens on one long-lived spawner thread, because the kernel's parent-death signal
//!   (`PR_SET_PDEATHSIG`) fires when the *thread* that forked exits, and test threads come and go;
//! - the child sets that signal in `pre_exec`, which std runs after `setgid`/`setuid` (a credential
//!   change clears the setting, so the order matters), and exits at once if the parent is already
//!   gone;
//! - a normal process exit also runs the hooks registered with [`at_exit`], which stop shared
//!   servers gracefully and remove their directories (statics are never dropped);
//! - a [`ServerProcess`] that is dropped kills its child.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running server: its child process and the files its output goes to.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    pid: i32,
    child: Mutex<Child>,
    logs: Vec<PathBuf>,
}

impl ServerProcess {
    /// Starts `command` with stdout and stderr appended to `stdout_log` and `stderr_log` (which
    /// may be the same file), tied to this process: the kernel sends `death_signal` to the child
    /// when the test process dies.
    pub fn spawn(
        name: &str,
        mut command: Command,
        stdout_log: &Path,
        stderr_log: &Path,
        death_signal: i32,
    ) -> Result<ServerProcess> {
        let open = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))
        };
        let stdout = open(stdout_log)?;
        let stderr = if stderr_log == stdout_log {
            stdout.try_clone()?
        } else {
            open(stderr_log)?
        };
        command.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let program = command.get_program().to_string_lossy().into_owned();
        let child = spawn_tied(command, death_signal)
            .with_context(|| format!("cannot start {name} ({program})"))?;
        let mut logs = vec![stdout_log.to_path_buf()];
        if stderr_log != stdout_log {
            logs.push(stderr_log.to_path_buf());
        }
        Ok(ServerProcess {
            name: name.to_string(),
            pid: child.id() as i32,
            child: Mutex::new(child),
            logs,
        })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the process (if it still runs).
    pub fn signal(&self, signal: i32) -> Result<()> {
        if self.try_wait()?.is_some() {
            bail!("{} (pid {}) has already exited", self.name, self.pid);
        }
        // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child, so
        // it cannot have been recycled for another process.
        if unsafe { libc::kill(self.pid, signal) } != 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("cannot signal {} (pid {})", self.name, self.pid));
        }
        Ok(())
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        child
            .try_wait()
            .with_context(|| format!("cannot check on {}", self.name))
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal`, waits up to `grace` for an exit, then kills the process.
    pub fn stop(&self, signal: i32, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_wait() {
            return Some(status);
        }
        // SAFETY: as in `signal`.
        unsafe { libc::kill(self.pid, signal) };
        if let Ok(Some(status)) = self.wait_timeout(grace) {
            return Some(status);
        }
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        child.wait().ok()
    }

    /// The last `lines` lines of each log file, labelled, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in &self.logs {
            out.push_str(&format!(
                "---- {} log {} (last {lines} lines) ----\n",
                self.name,
                path.display()
            ));
            out.push_str(&tail(path, lines));
        }
        out
    }

    /// Every log file in full.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last `lines` lines of the file at `path` (or a note that it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut out = all[start..].join("\n");
            out.push('\n');
            out
        }
        Err(e) => format!("(cannot read {}: {e})\n", path.display()),
    }
}

struct SpawnRequest {
    command: Command,
    death_signal: i32,
    reply: mpsc::Sender<io::Result<Child>>,
}

static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();

/// Spawns `command` from the spawner thread with a parent-death signal.
pub fn spawn_tied(command: Command, death_signal: i32) -> io::Result<Child> {
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, requests) = mpsc::channel();
        std::thread::Builder::new()
            .name("warden-tests-spawner".into())
            .spawn(move || spawner_thread(requests))
            .expect("cannot start the harness's spawner thread");
        sender
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .send(SpawnRequest {
            command,
            death_signal,
            reply,
        })
        .map_err(|_| io::Error::other("the harness's spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the harness's spawner thread did not answer"))?
}

/// Forks every tied child. It lives as long as the process: the sender sits in a static and is
/// never dropped, so the loop never ends, and the children's parent-death signal stays armed.
fn spawner_thread(requests: mpsc::Receiver<SpawnRequest>) {
    let parent = std::process::id() as libc::pid_t;
    for mut request in requests {
        let signal = request.death_signal;
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe system calls; it allocates nothing.
        unsafe {
            request.command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would signal us.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let _ = request.reply.send(request.command.spawn());
    }
    loop {
        std::thread::park();
    }
}

type ExitHook = Box<dyn FnOnce() + Send>;

static EXIT_HOOKS: Mutex<Vec<ExitHook>> = Mutex::new(Vec::new());
static REGISTER_EXIT_HOOKS: Once = Once::new();

/// Runs `hook` when the process exits normally (after the last test), newest first. Used for
/// shared servers, which live in statics and are never dropped.
pub fn at_exit(hook: impl FnOnce() + Send + 'static) {
    REGISTER_EXIT_HOOKS.call_once(|| {
        // SAFETY: registering a plain extern "C" function with atexit(3).
        unsafe { libc::atexit(run_exit_hooks) };
    });
    EXIT_HOOKS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(hook));
}

extern "C" fn run_exit_hooks() {
    let hooks = std::mem::take(&mut *EXIT_HOOKS.lock().unwrap_or_else(|e| e.into_inner()));
    for hook in hooks.into_iter().rev() {
        // A panic must not unwind into libc.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(hook));
    }
}

/// Stops the (unreaped) child `pid` from an exit hook: `signal`, up to `grace`, then SIGKILL.
pub fn stop_pid(pid: i32, signal: i32, grace: Duration) {
    // SAFETY: kill(2) and waitpid(2) on our own child; no memory is shared.
    unsafe {
        if libc::kill(pid, signal) != 0 {
            return;
        }
        let deadline = Instant::now() + grace;
        let mut status = 0;
        while Instant::now() < deadline {
            let r = libc::waitpid(pid, &mut status, libc::WNOHANG);
            if r == pid || r < 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
}
