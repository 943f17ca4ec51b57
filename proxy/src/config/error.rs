//! Configuration errors that point at the file, the line and the problem.
//!
//! A DBA who mistypes a key or a path must be told where and what, not handed a serde trace.
//! Every error carries the file it came from and, when known, the 1-based line and column.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a configuration (or a file it names, such as a users file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file that holds the problem.
    pub file: PathBuf,
    /// 1-based line, when the problem has a position.
    pub line: Option<usize>,
    /// 1-based column, when the problem has a position.
    pub column: Option<usize>,
    /// What is wrong, in words a DBA understands.
    pub message: String,
}

impl ConfigError {
    /// An error without a position (a missing file, say).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An error at a byte span of `text`, the contents of `file`.
    pub fn at_span(
        file: &Path,
        text: &str,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_and_column(text, span.start);
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// An error at a 1-based line of `file`.
    pub fn at_line(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: Some(line),
            column: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, 8), (2, 3));
        assert_eq!(line_and_column(text, 999), (3, 1));
    }

    #[test]
    fn display_names_file_line_and_column() {
        let e = ConfigError::at_span(Path::new("w.toml"), "x\ny = 1", 2..3, "bad");
        assert_eq!(e.to_string(), "w.toml:2:1: bad");
        let e = ConfigError::whole_file(Path::new("w.toml"), "missing");
        assert_eq!(e.to_string(), "w.toml: missing");
    }
}
