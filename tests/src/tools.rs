//! Running client programs (psql, pgbench, python3, the warden CLI) with a bounded run time.
//!
//! A hung client must fail its test, not the whole suite, so every run has a timeout after
//! which the program is killed. The output is captured in full, because equivalence tests
//! compare it byte for byte and failing tests print it.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What a finished program did.
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ToolRun {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Standard output as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Standard error as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Standard output and standard error together, for searching messages.
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout_text(), self.stderr_text())
    }

    /// The run as a block of text: command, status and both streams.
    pub fn describe(&self) -> String {
        format!(
            "command: {}\nstatus: {}\n---- stdout ----\n{}---- stderr ----\n{}",
            self.command,
            self.status,
            self.stdout_text(),
            self.stderr_text()
        )
    }

    /// The run itself if it succeeded, otherwise an error describing it.
    pub fn ensure_success(self) -> Result<ToolRun> {
        if self.success() {
            Ok(self)
        } else {
            bail!("the command failed\n{}", self.describe())
        }
    }
}

/// Runs `command` to completion, killing it after `timeout`.
pub fn run(command: Command, timeout: Duration) -> Result<ToolRun> {
    run_with_input(command, None, timeout)
}

/// Runs `command` with `input` on its standard input, killing it after `timeout`.
pub fn run_with_input(
    mut command: Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<ToolRun> {
    let description = describe_command(&command);
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = crate::process::spawn_tied(command, libc::SIGKILL)
        .with_context(|| format!("cannot run {description}"))?;
    let stdin = child.stdin.take();
    let input = input.map(|i| i.to_vec());
    let writer = std::thread::spawn(move || {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // The program may exit without reading everything; that shows in its output.
            let _ = stdin.write_all(&input);
        }
    });
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot wait for {description}"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = out_reader.join().unwrap_or_default();
            let stderr = err_reader.join().unwrap_or_default();
            bail!(
                "{description} did not finish within {timeout:?} and was killed\n---- stdout ----\n{}---- stderr ----\n{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(ToolRun {
        command: description,
        status,
        stdout,
        stderr,
    })
}

/// The command line of `command`, with passwords in environment variables left out.
pub fn describe_command(command: &Command) -> String {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            let key = key.to_string_lossy();
            let shown = if key.contains("PASSWORD") {
                "***".into()
            } else {
                value.to_string_lossy().into_owned()
            };
            parts.push(format!("{key}={shown}"));
        }
    }
    parts.push(shell_word(command.get_program()));
    parts.extend(
        command
            .get_args()
            .map(|a| shell_word(std::ffi::OsStr::new(&mask_password(&a.to_string_lossy())))),
    );
    parts.join(" ")
}

/// `text` with the value of every `password=` keyword of a conninfo string replaced by `***`.
fn mask_password(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str("***");
        let value = &rest[at + KEY.len()..];
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            let close = quoted
                .char_indices()
                .find(|&(_, c)| {
                    let done = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    done
                })
                .map_or(quoted.len(), |(i, _)| i + 1);
            1 + close
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

fn shell_word(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn conninfo_passwords_are_masked() {
        assert_eq!(
            mask_password("host=h password='Pw a\\'b c!' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            mask_password("password=plain port=1"),
            "password=*** port=1"
        );
        assert_eq!(mask_password("no secrets"), "no secrets");
    }
}
