//! The crate's one error type, and turning TOML byte offsets into
//! `file:line:column` locations a person can jump to.

use std::path::PathBuf;

use thiserror::Error;

/// Why a policy could not be loaded, or a quarantine entry not accepted.
#[derive(Debug, Error)]
pub enum PolicyError {
    /// Something inside a policy file is wrong; `line` and `column` are
    /// 1-based and point at the offending value.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot read policy {}: {source}; check that it exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A quarantine target's glob does not compile.
    #[error("invalid quarantine pattern `{pattern}`: {message}")]
    Quarantine { pattern: String, message: String },
}

impl PolicyError {
    /// Builds an [`PolicyError::Invalid`] from a byte offset into `text`.
    pub(crate) fn at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(text, offset);
        PolicyError::Invalid {
            file: file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
/// Offsets past the end point just after the last character.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn offsets_become_one_based_line_and_column() {
        let text = "a = 1\nbb = \"é\"\nc";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "é" is two bytes; the closing quote is the 8th character.
        assert_eq!(line_column(text, 14), (2, 8));
        assert_eq!(line_column(text, 16), (3, 1));
        assert_eq!(line_column(text, 999), (3, 2));
    }
}
