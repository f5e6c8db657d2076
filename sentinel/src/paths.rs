//! Canonical paths for what the kernel could not resolve to an object: an
//! open that failed before a file existed, a change decided on the name as
//! typed. The name is joined to the directory it was relative to, `.` and
//! `..` and empty components are removed lexically (`..` never climbs past
//! `/`), and the longest existing ancestor is resolved on the file system
//! (symlinked directories, merged-/usr aliases). The last component is kept
//! as typed: for a change it is the name being created or removed, and for
//! a failed open there is nothing to follow.

use std::path::{Path, PathBuf};

/// `typed` made absolute against `base` (a directory) and cleaned of `.`,
/// `..`, empty components and trailing slashes, without touching the file
/// system.
pub fn lexical(base: Option<&Path>, typed: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let joined;
    let full = if typed.starts_with('/') {
        typed
    } else {
        joined = format!(
            "{}/{typed}",
            base.map(|b| b.to_string_lossy()).unwrap_or_default()
        );
        joined.as_str()
    };
    for part in full.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(full.len());
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// [`lexical`], then the deepest existing ancestor directory resolved on
/// the file system; the rest is appended as it stands.
pub fn canonical(base: Option<&Path>, typed: &str) -> String {
    let clean = lexical(base, typed);
    let path = Path::new(&clean);
    let Some(parent) = path.parent() else {
        return clean;
    };
    let mut existing = parent.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&existing) {
            let mut out: PathBuf = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            if let Some(name) = path.file_name() {
                out.push(name);
            }
            return out.to_string_lossy().into_owned();
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(up)) => {
                rest.push(name.to_os_string());
                existing = up.to_path_buf();
            }
            _ => return clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_empty_components_go() {
        let home = Some(Path::new("/home/a"));
        assert_eq!(lexical(home, ".ssh/id_rsa"), "/home/a/.ssh/id_rsa");
        assert_eq!(lexical(home, "./.ssh//id_rsa"), "/home/a/.ssh/id_rsa");
        assert_eq!(
            lexical(home, ".ssh/../.ssh/./id_rsa"),
            "/home/a/.ssh/id_rsa"
        );
        assert_eq!(
            lexical(None, "/home//a/./.ssh/id_rsa"),
            "/home/a/.ssh/id_rsa"
        );
    }

    #[test]
    fn trailing_slashes_and_root() {
        assert_eq!(lexical(None, "/etc/cron.d/"), "/etc/cron.d");
        assert_eq!(lexical(None, "/etc/cron.d//."), "/etc/cron.d");
        assert_eq!(lexical(None, "/"), "/");
        assert_eq!(lexical(None, "///"), "/");
        assert_eq!(lexical(Some(Path::new("/")), "."), "/");
    }

    #[test]
    fn dotdot_never_climbs_past_root() {
        assert_eq!(lexical(None, "/../../etc/shadow"), "/etc/shadow");
        assert_eq!(
            lexical(Some(Path::new("/tmp")), "../../../../etc/shadow"),
            "/etc/shadow"
        );
        assert_eq!(lexical(None, "/a/b/../../.."), "/");
    }

    #[test]
    fn odd_names_are_kept_verbatim() {
        // Newlines, spaces and dots inside names are names, not syntax.
        assert_eq!(lexical(None, "/tmp/a\nb/..c/.d/ e"), "/tmp/a\nb/..c/.d/ e");
        assert_eq!(lexical(None, "/tmp/..."), "/tmp/...");
    }

    #[test]
    fn very_long_paths_survive() {
        let deep = "/x".repeat(2000);
        let out = lexical(None, &format!("{deep}/../y"));
        assert_eq!(out.len(), deep.len());
        assert!(out.ends_with("/x/y"));
        let up = format!("{deep}{}", "/..".repeat(2500));
        assert_eq!(lexical(None, &up), "/");
    }

    #[test]
    fn symlinked_directories_resolve_and_the_last_name_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", real.join("last")).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let base = Some(dir.path());
        // The directory is followed...
        assert_eq!(
            canonical(base, "link/new-file"),
            format!("{}/real/new-file", root.display())
        );
        // ...a missing middle is kept as typed...
        assert_eq!(
            canonical(base, "link/missing/x"),
            format!("{}/real/missing/x", root.display())
        );
        // ...and the last component is never followed.
        assert_eq!(
            canonical(base, "link/last"),
            format!("{}/real/last", root.display())
        );
    }
}
