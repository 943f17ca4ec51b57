//! Comparing what a client sees directly with what it sees through warden.
//!
//! PROXY-2 says everything a client does through the proxy must be byte-for-byte the same as
//! directly, where no policy applies. Every equivalence test states explicitly which
//! observations must match (an exit status, psql's output, COPY data, binary column values) by
//! calling one of these functions once per observation; a mismatch names the observation and
//! shows where the two first differ.

use std::fmt::Debug;

use anyhow::{Result, bail};

use crate::tools::ToolRun;

/// `direct` and `through_warden` must be equal.
pub fn same<T: PartialEq + Debug>(what: &str, direct: &T, through_warden: &T) -> Result<()> {
    if direct != through_warden {
        bail!(
            "{what} differs through warden\ndirect:\n{direct:#?}\nthrough warden:\n{through_warden:#?}"
        );
    }
    Ok(())
}

/// Two byte strings must be identical; the error shows the first difference.
pub fn same_bytes(what: &str, direct: &[u8], through_warden: &[u8]) -> Result<()> {
    if direct == through_warden {
        return Ok(());
    }
    let at = direct
        .iter()
        .zip(through_warden)
        .position(|(a, b)| a != b)
        .unwrap_or(direct.len().min(through_warden.len()));
    let window = |b: &[u8]| {
        let start = at.saturating_sub(60);
        let end = (at + 60).min(b.len());
        String::from_utf8_lossy(&b[start..end]).into_owned()
    };
    bail!(
        "{what} differs through warden: {} bytes directly, {} through warden, first difference at byte {at}\n\
         direct:         {:?}\nthrough warden: {:?}",
        direct.len(),
        through_warden.len(),
        window(direct),
        window(through_warden)
    )
}

/// Two runs of a client program must have the same exit status, stdout and stderr.
pub fn same_run(what: &str, direct: &ToolRun, through_warden: &ToolRun) -> Result<()> {
    if direct.status.code() != through_warden.status.code() {
        bail!(
            "{what}: exit status {:?} directly but {:?} through warden\n== direct ==\n{}\n== through warden ==\n{}",
            direct.status.code(),
            through_warden.status.code(),
            direct.describe(),
            through_warden.describe()
        );
    }
    same_bytes(
        &format!("{what}: stdout"),
        &direct.stdout,
        &through_warden.stdout,
    )?;
    same_bytes(
        &format!("{what}: stderr"),
        &direct.stderr,
        &through_warden.stderr,
    )
}
