//! The daemon's own files, wherever this run keeps them: its state
//! directory (sealing keys, anchors, sockets), its audit database, its
//! policy directory and its binary. The embedded policy protects the
//! installed paths (`00-sentinel-self.toml`); this module adds the same
//! protection for the paths this run was given (`--state-dir`, `--db`,
//! `--policy`, the running executable) as one more policy source, so the
//! kernel compiler, the file guard and the engine all enforce it: a
//! watched process — a setuid-root descendant included — may not open the
//! state, the database or the policy, nor write the binary.
//!
//! A directory that others share (world- or group-writable, not owned by
//! root, or `/`) is not protected as a whole: that would deny the agent
//! its own files. The database itself is protected wherever it is.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sentinel_policy::{Policy, PolicyError};

/// The name the generated source goes by in errors and `policy.files()`.
pub const SOURCE_NAME: &str = "(sentinel) own files of this run";

/// What this run's own files are.
#[derive(Debug, Clone, Default)]
pub struct OwnFiles {
    /// Opened by no watched process (directories as `DIR/**`).
    off_limits: Vec<String>,
    /// Written by no watched process.
    read_only: Vec<String>,
}

impl OwnFiles {
    pub fn of(state_dir: &Path, db: &Path, policy_dir: Option<&Path>, exe: Option<&Path>) -> Self {
        let mut own = OwnFiles::default();
        for dir in std::iter::once(state_dir).chain(policy_dir) {
            if let Some(dir) = private_dir(dir) {
                own.off_limits.push(format!("{}/**", dir.display()));
            }
        }
        if let Some(db) = absolute(db) {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                own.off_limits.push(format!("{}{suffix}", db.display()));
            }
            // A standalone proxy's keys for this database.
            own.off_limits.push(format!("{}.state/**", db.display()));
        }
        if let Some(exe) = exe.and_then(absolute) {
            own.read_only.push(exe.display().to_string());
        }
        own.off_limits.retain(|p| plain(p));
        own.read_only.retain(|p| plain(p));
        own
    }

    /// The policy source that protects them: `(name, TOML text)`.
    pub fn source(&self) -> (String, String) {
        let list = |paths: &[String]| {
            let quoted: Vec<String> = paths
                .iter()
                .map(|p| serde_json::Value::String(p.clone()).to_string())
                .collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut text = String::new();
        if !self.off_limits.is_empty() {
            text.push_str(&format!(
                "[[rule]]\nname = \"sentinel-own-state\"\npriority = 10\nkind = \"open\"\naction = \"deny\"\npath = {}\nrisk = 95\nreason = \"this sentinel's state, keys, audit database and policy are off limits to agents\"\n\n",
                list(&self.off_limits)
            ));
        }
        if !self.read_only.is_empty() {
            text.push_str(&format!(
                "[[rule]]\nname = \"sentinel-own-binary-write\"\npriority = 10\nkind = \"open\"\naction = \"deny\"\nwrite = true\npath = {}\nrisk = 95\nreason = \"agents may not modify the running sentinel binary\"\n",
                list(&self.read_only)
            ));
        }
        (SOURCE_NAME.to_string(), text)
    }

    /// The policy in `dir` (or the embedded defaults), with these files
    /// protected.
    pub fn load(&self, dir: Option<&Path>) -> Result<Policy, PolicyError> {
        let mut sources = match dir {
            Some(dir) => Policy::sources_in(dir)?,
            None => Policy::embedded_sources(),
        };
        sources.push(self.source());
        Policy::from_sources(&sources)
    }
}

/// The path as the kernel will resolve it: the file itself when it exists,
/// else (a database not created yet) its deepest existing directory
/// resolved, as [`crate::paths::canonical`] does for events.
fn absolute(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok().or_else(|| {
        let cwd = std::env::current_dir().ok();
        Some(PathBuf::from(crate::paths::canonical(
            cwd.as_deref(),
            &path.to_string_lossy(),
        )))
    })
}

/// `dir`, resolved, when it is the daemon's alone: owned by root, writable
/// by no one else, and not `/`.
fn private_dir(dir: &Path) -> Option<PathBuf> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let meta = std::fs::metadata(&dir).ok()?;
    let private = meta.is_dir() && meta.uid() == 0 && meta.mode() & 0o022 == 0;
    (private && dir != Path::new("/")).then_some(dir)
}

/// A path with no glob syntax in it (it is used as a pattern).
fn plain(path: &str) -> bool {
    let name = path.strip_suffix("/**").unwrap_or(path);
    !name.contains(['*', '?', '[', ']', '{', '}', '~', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_policy::{Action, Decision, Engine, Object};
    use std::os::unix::fs::PermissionsExt;
    use std::time::SystemTime;

    fn open(path: &str, write: bool) -> Action {
        Action {
            agent: None,
            uid: 1000,
            pid: 1,
            object: Object::Open {
                path: path.to_string(),
                write,
            },
        }
    }

    #[test]
    fn the_runs_state_database_policy_and_binary_are_protected() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let policy = dir.path().join("policy");
        for d in [&state, &policy] {
            std::fs::create_dir(d).unwrap();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let db = dir.path().join("audit.db");
        let exe = dir.path().join("sentinel");
        let own = OwnFiles::of(&state, &db, Some(&policy), Some(&exe));
        let mut engine = Engine::new(own.load(None).unwrap());
        let now = SystemTime::now();
        let p = |p: &Path| p.display().to_string();
        for (path, write, denied) in [
            (format!("{}/key", p(&state)), false, true),
            (p(&db), false, true),
            (format!("{}-wal", p(&db)), true, true),
            (format!("{}/10-mine.toml", p(&policy)), true, true),
            (p(&exe), true, true),
            (p(&exe), false, false),
            (format!("{}/other", p(dir.path())), true, false),
        ] {
            let v = engine.evaluate(&open(&path, write), now);
            assert_eq!(
                v.action == Decision::Deny,
                denied,
                "{path} write={write}: {v:?}"
            );
        }
    }

    #[test]
    fn a_database_not_created_yet_is_named_as_the_kernel_resolves_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let own = OwnFiles::of(dir.path(), &dir.path().join("link/new.db"), None, None);
        let (_, text) = own.source();
        assert!(
            text.contains(&format!("{}/new.db\"", real.display())),
            "{text}"
        );
    }

    #[test]
    fn a_shared_directory_is_not_taken_from_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let own = OwnFiles::of(dir.path(), &dir.path().join("s.db"), None, None);
        let (_, text) = own.source();
        assert!(
            !text.contains(&format!("{}/**\"", dir.path().display())),
            "{text}"
        );
        assert!(text.contains("s.db"), "{text}");
        let root = OwnFiles::of(Path::new("/"), Path::new("/x.db"), None, None);
        assert!(!root.source().1.contains("\"/**\""));
    }
}
