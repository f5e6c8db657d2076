//! The sensor's pinned state on bpffs: where it lives, what a previous
//! daemon left there, and how a new daemon takes it over.
//!
//! A running daemon pins its links and a few maps in
//! `/sys/fs/bpf/sentinel/<state dir>/gen-<pid>/`, so its programs keep
//! enforcing (compiled denies, quarantine, lockdown, self-protection) if
//! it is killed or crashes. A clean stop removes the directory, and the
//! programs detach. A daemon that finds a generation directory at start
//! knows its predecessor died: it reads what the kernel noted (when the
//! process exited, the last attempt against it, what was decided and
//! dropped meanwhile), attaches its own programs, copies the watched
//! descendants and held processes over, and only then removes the old
//! pins — there is no moment without programs attached.

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray};
use sentinel_common::{config, counter, tamper};

/// Maps pinned with the links: read back by the next daemon.
pub const PINNED_MAPS: &[&str] = &["CONFIG", "TAMPER", "COUNTERS", "WATCHED_TASKS", "HELD"];

/// Where the pins of the daemon using `state_dir` live (one directory per
/// state directory, so a test daemon never takes over the operator's).
pub fn base_dir(state_dir: &Path) -> PathBuf {
    let key: String = state_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let key = if key.is_empty() { "root".into() } else { key };
    PathBuf::from("/sys/fs/bpf/sentinel").join(&key[key.len().saturating_sub(200)..])
}

pub fn generation_dir(base: &Path, pid: u32) -> PathBuf {
    base.join(format!("gen-{pid}"))
}

fn generations(base: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let pid = name.to_str()?.strip_prefix("gen-")?.parse().ok()?;
            Some((pid, e.path()))
        })
        .collect()
}

/// Removes every generation directory but `keep` (their links detach
/// when the last reference, the pin, goes).
pub fn remove_other_generations(base: &Path, keep: &Path) {
    for (_, dir) in generations(base) {
        if dir != keep {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing old pins {}: {e}", dir.display());
            }
        }
    }
}

pub fn read_tamper<T: std::borrow::Borrow<MapData>>(
    m: &Array<T, u64>,
) -> [u64; tamper::LEN as usize] {
    let mut out = [0u64; tamper::LEN as usize];
    for (i, v) in out.iter_mut().enumerate() {
        *v = m.get(&(i as u32), 0).unwrap_or(0);
    }
    out
}

/// What a daemon that did not stop cleanly left pinned.
#[derive(Debug, Default)]
pub struct Previous {
    /// Its pid (from the directory name).
    pub pid: u32,
    /// Kernel time its process exited (0: the kernel did not see it exit,
    /// e.g. its programs were loaded by an older build).
    pub exit_ns: u64,
    pub tamper: [u64; tamper::LEN as usize],
    /// Decisions its programs took and events they could not deliver,
    /// since they were loaded.
    pub kernel_decisions: u64,
    pub events_dropped: u64,
    pub watched_tasks: Vec<u32>,
    pub held: Vec<u32>,
}

/// Why the pinned state cannot be taken over.
#[derive(Debug, thiserror::Error)]
pub enum TakeoverError {
    #[error("another sentinel (pid {0}) is running with this state directory; stop it first (`kill {0}`)")]
    Running(u32),
}

fn open<T: TryFrom<Map>>(dir: &Path, name: &str) -> Option<T> {
    let data = MapData::from_pin(dir.join(format!("map-{name}"))).ok()?;
    T::try_from(Map::from_map_data(data).ok()?).ok()
}

fn is_sentinel(pid: u32) -> bool {
    let exe = |p: &str| std::fs::read_link(format!("/proc/{p}/exe")).ok();
    pid != std::process::id() && exe(&pid.to_string()).is_some_and(|e| Some(e) == exe("self"))
}

/// Reads the newest generation a previous daemon left under `base`.
/// `Ok(None)`: nothing pinned (the previous daemon stopped cleanly, or
/// there was none).
pub fn previous(base: &Path) -> Result<Option<Previous>, TakeoverError> {
    let mut gens = generations(base);
    gens.sort_by_key(|(pid, dir)| (std::fs::metadata(dir).and_then(|m| m.modified()).ok(), *pid));
    let Some((pid, dir)) = gens.pop() else {
        return Ok(None);
    };
    let mut prev = Previous {
        pid,
        ..Previous::default()
    };
    if let Some(cfg) = open::<Array<MapData, u64>>(&dir, "CONFIG") {
        let self_tgid = cfg.get(&config::SELF_TGID, 0).unwrap_or(0);
        prev.exit_ns = cfg.get(&config::DAEMON_EXIT_NS, 0).unwrap_or(0);
        if self_tgid != 0 && is_sentinel(self_tgid as u32) {
            return Err(TakeoverError::Running(self_tgid as u32));
        }
    }
    if let Some(t) = open::<Array<MapData, u64>>(&dir, "TAMPER") {
        prev.tamper = read_tamper(&t);
    }
    if let Some(c) = open::<PerCpuArray<MapData, u64>>(&dir, "COUNTERS") {
        let sum = |i: u32| c.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
        prev.kernel_decisions = sum(counter::KERNEL_DECISIONS);
        prev.events_dropped = sum(counter::RINGBUF_FULL);
    }
    if let Some(m) = open::<BpfHashMap<MapData, u32, u8>>(&dir, "WATCHED_TASKS") {
        prev.watched_tasks = m.keys().filter_map(Result::ok).collect();
    }
    if let Some(m) = open::<BpfHashMap<MapData, u32, u64>>(&dir, "HELD") {
        prev.held = m.keys().filter_map(Result::ok).collect();
    }
    Ok(Some(prev))
}

impl Previous {
    /// The alert text for the death of the previous daemon.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "the previous sentinel (pid {}) did not stop cleanly (killed or crashed); its pinned programs kept enforcing until this start took over: {} kernel decisions, {} events not observed",
            self.pid, self.kernel_decisions, self.events_dropped
        );
        if self.exit_ns != 0 {
            let ago = crate::observe::monotonic_ns().saturating_sub(self.exit_ns);
            s.push_str(&format!("; it died {:.1} s ago", ago as f64 / 1e9));
        }
        if self.tamper[tamper::COUNT as usize] > 0 {
            s.push_str(&format!("; {}", describe_tamper(&self.tamper)));
        }
        s
    }
}

/// The last attempt against the sentinel, in words.
pub fn describe_tamper(t: &[u64; tamper::LEN as usize]) -> String {
    format!(
        "last attempt against the sentinel: pid {} (uid {}) {} target {} signal {} ({} attempts in all)",
        t[tamper::PID as usize],
        t[tamper::UID as usize],
        sentinel_common::tamper_op::name(t[tamper::OP as usize] as u32),
        t[tamper::TARGET as usize] as i64,
        t[tamper::SIGNAL as usize],
        t[tamper::COUNT as usize],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_dir_has_its_own_pins() {
        assert_eq!(
            base_dir(Path::new("/run/sentinel")),
            PathBuf::from("/sys/fs/bpf/sentinel/run-sentinel")
        );
        assert_ne!(
            base_dir(Path::new("/tmp/a/state")),
            base_dir(Path::new("/run/sentinel"))
        );
    }
}
