//! Glob patterns as policies write them: path globs (where `~/` means the
//! acting agent's home directory) and name globs (agents, tools, servers),
//! plus the analysis that tells the kernel compiler which globs it can
//! express as an exact path or a path prefix.

use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

/// Characters that make a glob more than a literal path.
const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// The most alternatives a `{a,b}` pattern may expand to for the kernel.
const MAX_BRACE_EXPANSIONS: usize = 64;

/// A pattern that failed to compile: which one (index into the list given)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub index: usize,
    pub message: String,
}

fn path_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    // `*` stays inside one path component; `**` crosses them.
    GlobBuilder::new(pattern).literal_separator(true).build()
}

fn name_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(false).build()
}

/// Path globs compiled once per policy load. Patterns starting with `~/`
/// are matched against the part of the path below the acting UID's home.
#[derive(Debug, Clone)]
pub struct PathGlobs {
    sources: Vec<String>,
    absolute: GlobSet,
    home_relative: GlobSet,
}

impl PathGlobs {
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut absolute = GlobSetBuilder::new();
        let mut home_relative = GlobSetBuilder::new();
        for (index, pattern) in patterns.iter().enumerate() {
            let fail = |message: String| PatternError { index, message };
            if let Some(rest) = pattern.strip_prefix('~') {
                if !rest.starts_with('/') {
                    return Err(fail(format!(
                        "`{pattern}`: only `~/` (the agent's own home) is supported, not `~user`"
                    )));
                }
                home_relative.add(path_glob(rest).map_err(|e| fail(glob_message(&e)))?);
            } else if pattern.starts_with('/') || pattern.starts_with("**") {
                absolute.add(path_glob(pattern).map_err(|e| fail(glob_message(&e)))?);
            } else {
                return Err(fail(format!(
                    "`{pattern}`: path globs must be absolute, start with `~/` or with `**`"
                )));
            }
        }
        let build = |set: GlobSetBuilder| {
            set.build().map_err(|e| PatternError {
                index: 0,
                message: glob_message(&e),
            })
        };
        Ok(PathGlobs {
            sources: patterns.to_vec(),
            absolute: build(absolute)?,
            home_relative: build(home_relative)?,
        })
    }

    /// The patterns as written in the policy.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Does `path` match? `home` is the acting UID's home directory; without
    /// one, `~/` patterns match nothing.
    pub fn is_match(&self, path: &str, home: Option<&Path>) -> bool {
        self.is_match_prepared(&PreparedPath::new(path, home))
    }

    /// [`PathGlobs::is_match`] for a path prepared once for many globs.
    pub fn is_match_prepared(&self, path: &PreparedPath<'_>) -> bool {
        if self.absolute.is_match_candidate(&path.full) {
            return true;
        }
        match &path.below_home {
            Some(relative) if !self.home_relative.is_empty() => {
                self.home_relative.is_match_candidate(relative)
            }
            _ => false,
        }
    }

    /// The patterns with `~/` replaced by `home` (or dropped when there is
    /// no home), for the kernel compiler.
    pub fn expanded(&self, home: Option<&Path>) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|pattern| expand_home(pattern, home))
            .collect()
    }

    /// True when any pattern starts with `~/`.
    pub fn uses_home(&self) -> bool {
        self.sources.iter().any(|pattern| pattern.starts_with("~/"))
    }
}

/// A path ready to be matched against many [`PathGlobs`]: globset's
/// candidate for the whole path and for the part below the home directory.
pub struct PreparedPath<'a> {
    full: Candidate<'a>,
    below_home: Option<Candidate<'a>>,
}

impl<'a> PreparedPath<'a> {
    pub fn new(path: &'a str, home: Option<&Path>) -> Self {
        PreparedPath {
            full: Candidate::new(path),
            below_home: home
                .and_then(|home| below_home(path, home))
                .map(Candidate::new),
        }
    }
}

/// The path globs of many rules (of one kind) in one pair of glob sets, so
/// an action's path is matched once against all of them rather than once
/// per rule.
#[derive(Debug, Clone)]
pub struct PathIndex {
    absolute: GlobSet,
    absolute_owner: Vec<usize>,
    home_relative: GlobSet,
    home_owner: Vec<usize>,
}

impl PathIndex {
    /// Indexes `(owner, globs)` pairs; `None` if a glob fails to compile
    /// (they were all validated at load, so callers fall back to matching
    /// rule by rule).
    pub fn build<'g>(entries: impl IntoIterator<Item = (usize, &'g PathGlobs)>) -> Option<Self> {
        let mut absolute = GlobSetBuilder::new();
        let mut absolute_owner = Vec::new();
        let mut home_relative = GlobSetBuilder::new();
        let mut home_owner = Vec::new();
        for (owner, globs) in entries {
            for pattern in globs.sources() {
                if let Some(rest) = pattern.strip_prefix('~') {
                    home_relative.add(path_glob(rest).ok()?);
                    home_owner.push(owner);
                } else {
                    absolute.add(path_glob(pattern).ok()?);
                    absolute_owner.push(owner);
                }
            }
        }
        Some(PathIndex {
            absolute: absolute.build().ok()?,
            absolute_owner,
            home_relative: home_relative.build().ok()?,
            home_owner,
        })
    }

    /// The owners whose globs match `path`, sorted and deduplicated.
    pub fn hits(&self, path: &PreparedPath<'_>) -> Vec<usize> {
        let owner = |owners: &[usize], glob: usize| owners.get(glob).copied();
        let mut hits: Vec<usize> = self
            .absolute
            .matches_candidate(&path.full)
            .into_iter()
            .filter_map(|glob| owner(&self.absolute_owner, glob))
            .collect();
        if let Some(relative) = &path.below_home {
            if !self.home_relative.is_empty() {
                hits.extend(
                    self.home_relative
                        .matches_candidate(relative)
                        .into_iter()
                        .filter_map(|glob| owner(&self.home_owner, glob)),
                );
            }
        }
        hits.sort_unstable();
        hits.dedup();
        hits
    }
}

/// `path` below `home`, as `/rest` (so it matches a `~/rest` pattern with
/// the `~` removed), or `None` when the path is not inside the home.
fn below_home<'p>(path: &'p str, home: &Path) -> Option<&'p str> {
    let home = home.to_str()?.trim_end_matches('/');
    let rest = path.strip_prefix(home)?;
    rest.starts_with('/').then_some(rest)
}

/// `pattern` with a leading `~/` replaced by `home`; `None` when it needs a
/// home and there is none.
pub fn expand_home(pattern: &str, home: Option<&Path>) -> Option<String> {
    match pattern.strip_prefix('~') {
        Some(rest) => {
            let home = home?.to_str()?.trim_end_matches('/');
            Some(format!("{home}{rest}"))
        }
        None => Some(pattern.to_string()),
    }
}

/// Name globs (agent, tool and server names): `*` matches anything.
#[derive(Debug, Clone)]
pub struct NameGlobs {
    sources: Vec<String>,
    set: GlobSet,
}

impl NameGlobs {
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let mut set = GlobSetBuilder::new();
        for (index, pattern) in patterns.iter().enumerate() {
            set.add(name_glob(pattern).map_err(|e| PatternError {
                index,
                message: glob_message(&e),
            })?);
        }
        let set = set.build().map_err(|e| PatternError {
            index: 0,
            message: glob_message(&e),
        })?;
        Ok(NameGlobs {
            sources: patterns.to_vec(),
            set,
        })
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.set.is_match(name)
    }
}

fn glob_message(error: &globset::Error) -> String {
    format!("invalid glob: {error}")
}

/// A path the kernel can match by map lookup: an exact path, or every path
/// that starts with `path` (a byte prefix, for an LPM trie).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct KernelPath {
    pub path: String,
    pub prefix: bool,
}

impl KernelPath {
    /// Could one path be matched by both?
    pub fn overlaps(&self, other: &KernelPath) -> bool {
        match (self.prefix, other.prefix) {
            (false, false) => self.path == other.path,
            (true, false) => other.path.starts_with(&self.path),
            (false, true) => self.path.starts_with(&other.path),
            (true, true) => {
                self.path.starts_with(&other.path) || other.path.starts_with(&self.path)
            }
        }
    }
}

/// The kernel forms of an absolute glob, or `None` when the kernel cannot
/// express it. Expressible: a literal path, a literal directory followed by
/// `/**` (every path below it), a literal followed by one trailing `*`, and
/// `{a,b}` alternatives of those.
///
/// A trailing `*` becomes a byte prefix, which also matches deeper paths
/// (`/root/.ssh/id_*` catches `/root/.ssh/id_x/y`): the kernel is then
/// slightly stricter than userspace, never looser.
pub fn kernel_paths(pattern: &str) -> Option<Vec<KernelPath>> {
    let mut out = Vec::new();
    for alternative in expand_braces(pattern)? {
        out.push(kernel_path(&alternative)?);
    }
    Some(out)
}

fn kernel_path(pattern: &str) -> Option<KernelPath> {
    if !pattern.starts_with('/') {
        return None;
    }
    let (literal, prefix) = if let Some(dir) = pattern.strip_suffix("/**") {
        (format!("{dir}/"), true)
    } else if let Some(start) = pattern.strip_suffix('*') {
        (start.to_string(), true)
    } else {
        (pattern.to_string(), false)
    };
    if literal.contains(GLOB_META) || literal.is_empty() {
        return None;
    }
    Some(KernelPath {
        path: literal,
        prefix,
    })
}

/// Could some path match both the kernel path `compiled` and the glob
/// `pattern` (absolute, home already expanded)? Exact when `pattern` is
/// kernel-expressible or `compiled` is exact; otherwise it compares literal
/// prefixes and errs towards "yes".
pub fn may_overlap(compiled: &KernelPath, pattern: &str) -> bool {
    if let Some(forms) = kernel_paths(pattern) {
        return forms.iter().any(|form| form.overlaps(compiled));
    }
    if !compiled.prefix {
        return match path_glob(pattern) {
            Ok(glob) => glob.compile_matcher().is_match(&compiled.path),
            Err(_) => true,
        };
    }
    let alternatives = expand_braces(pattern).unwrap_or_else(|| vec![pattern.to_string()]);
    alternatives.iter().any(|alternative| {
        let literal = match alternative.find(GLOB_META) {
            Some(meta) => &alternative[..meta],
            None => alternative.as_str(),
        };
        literal.starts_with(&compiled.path) || compiled.path.starts_with(literal)
    })
}

/// Expands `{a,b}` alternatives (nested ones too). `None` when braces are
/// unbalanced, escaped, or expand to too many alternatives.
pub fn expand_braces(pattern: &str) -> Option<Vec<String>> {
    if pattern.contains('\\') {
        return None;
    }
    let Some(open) = pattern.find('{') else {
        return (!pattern.contains('}')).then(|| vec![pattern.to_string()]);
    };
    let mut depth = 0usize;
    let mut close = None;
    let mut splits = Vec::new();
    for (offset, c) in pattern[open..].char_indices() {
        let at = open + offset;
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(at);
                    break;
                }
            }
            ',' if depth == 1 => splits.push(at),
            _ => {}
        }
    }
    let close = close?;
    let head = &pattern[..open];
    let tail = &pattern[close + 1..];
    let mut bounds = vec![open];
    bounds.extend(splits);
    bounds.push(close);
    let mut out = Vec::new();
    for window in bounds.windows(2) {
        let choice = &pattern[window[0] + 1..window[1]];
        for expanded in expand_braces(&format!("{head}{choice}{tail}"))? {
            out.push(expanded);
            if out.len() > MAX_BRACE_EXPANSIONS {
                return None;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn globs(patterns: &[&str]) -> PathGlobs {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        PathGlobs::new(&patterns).expect("test globs compile")
    }

    #[test]
    fn path_globs_match_absolute_and_home_relative_paths() {
        let home = PathBuf::from("/home/alice");
        let set = globs(&["/etc/shadow", "~/.ssh/id_*", "**/ngrok", "/etc/cron.d/**"]);
        let cases = [
            ("/etc/shadow", Some(&home), true),
            ("/etc/shadow2", Some(&home), false),
            ("/home/alice/.ssh/id_ed25519", Some(&home), true),
            ("/home/alice/.ssh/id_ed25519.pub", Some(&home), true),
            ("/home/alice/.ssh/known_hosts", Some(&home), false),
            ("/home/alice/.ssh/id_x/deeper", Some(&home), false),
            ("/home/bob/.ssh/id_rsa", Some(&home), false),
            ("/home/alice/.ssh/id_rsa", None, false),
            ("/home/alicex/.ssh/id_rsa", Some(&home), false),
            ("/usr/local/bin/ngrok", Some(&home), true),
            ("/etc/cron.d/job", Some(&home), true),
            ("/etc/cron.d/a/b", Some(&home), true),
            ("/etc/cron.daily", Some(&home), false),
        ];
        for (path, home, expected) in cases {
            assert_eq!(
                set.is_match(path, home.map(|h| h.as_path())),
                expected,
                "{path}"
            );
        }
    }

    #[test]
    fn relative_paths_and_tilde_user_are_rejected() {
        let err = PathGlobs::new(&["/ok".into(), "etc/x".into()]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(PathGlobs::new(&["~bob/x".into()]).is_err());
        assert!(PathGlobs::new(&["/etc/[".into()]).is_err());
    }

    #[test]
    fn name_globs_cross_separators() {
        let names = NameGlobs::new(&["*status*".into(), "git_*".into()]).unwrap();
        assert!(names.is_match("get_status"));
        assert!(names.is_match("git_push"));
        assert!(names.is_match("a/status/b"));
        assert!(!names.is_match("push"));
    }

    #[test]
    fn kernel_forms() {
        let exact = |p: &str| KernelPath {
            path: p.into(),
            prefix: false,
        };
        let prefix = |p: &str| KernelPath {
            path: p.into(),
            prefix: true,
        };
        let cases: Vec<(&str, Option<Vec<KernelPath>>)> = vec![
            ("/etc/shadow", Some(vec![exact("/etc/shadow")])),
            ("/etc/cron.d/**", Some(vec![prefix("/etc/cron.d/")])),
            ("/root/.ssh/id_*", Some(vec![prefix("/root/.ssh/id_")])),
            (
                "/etc/{shadow,gshadow}",
                Some(vec![exact("/etc/shadow"), exact("/etc/gshadow")]),
            ),
            ("/etc/*/x", None),
            ("**/ngrok", None),
            ("/etc/sh?dow", None),
            ("/etc/[ab]", None),
            ("/etc/**/x", None),
            ("/etc/{a,b", None),
        ];
        for (pattern, expected) in cases {
            assert_eq!(kernel_paths(pattern), expected, "{pattern}");
        }
    }

    #[test]
    fn overlap_analysis() {
        let exact = |p: &str| KernelPath {
            path: p.into(),
            prefix: false,
        };
        let prefix = |p: &str| KernelPath {
            path: p.into(),
            prefix: true,
        };
        let cases = [
            (exact("/etc/hosts"), "/etc/hosts", true),
            (exact("/etc/hosts"), "/etc/*", true),
            (exact("/etc/hosts"), "/etc/*/x", false),
            (exact("/etc/hosts"), "/var/**", false),
            (prefix("/etc/"), "/etc/hosts", true),
            (prefix("/etc/"), "/etc/*.conf", true),
            (prefix("/etc/"), "/var/*.conf", false),
            (prefix("/etc/cron.d/"), "/etc/**", true),
            (prefix("/etc/cron.d/"), "/e*", true),
            (prefix("/etc/cron.d/"), "**/x", true),
            (prefix("/etc/cron.d/"), "/etc/{cron.d,x}/y?", true),
            (prefix("/etc/cron.d/"), "/etc/{passwd,group}?", false),
        ];
        for (compiled, pattern, expected) in cases {
            assert_eq!(
                may_overlap(&compiled, pattern),
                expected,
                "{compiled:?} vs {pattern}"
            );
        }
    }

    #[test]
    fn braces_expand_nested() {
        assert_eq!(
            expand_braces("/a/{b,c{d,e}}/f").unwrap(),
            vec!["/a/b/f", "/a/cd/f", "/a/ce/f"]
        );
        assert_eq!(expand_braces("/plain").unwrap(), vec!["/plain"]);
        assert!(expand_braces("/a}").is_none());
    }
}
