//! The key vault: a root-only TOML file mapping the virtual keys agents
//! are given to the real provider keys they never see.
//!
//! ```toml
//! [[key]]
//! virtual = "sk-sentinel-claude-1"          # what the agent sends
//! real = "sk-ant-api03-..."                 # what the upstream gets
//! agent = "claude"                          # optional: who this key is
//! upstream = "https://api.anthropic.com"    # optional: overrides --upstream
//! expires = "2027-01-01T00:00:00Z"          # optional (RFC 3339)
//! paths = ["/v1/messages"]                  # optional: allowed API paths
//! ```
//!
//! The file must be owned by root and readable by nobody else: a vault the
//! agent can read gives it the real keys.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::OffsetDateTime;

/// Why a vault cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("cannot read the vault {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the vault {path} is {why}: agents could read the real keys; run `chown root:root {path} && chmod 600 {path}`")]
    Exposed { path: PathBuf, why: String },
    #[error("the vault {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// One `[[key]]`.
#[derive(Debug, Clone)]
pub struct VaultKey {
    pub virtual_key: String,
    pub real_key: String,
    pub agent: Option<String>,
    pub upstream: Option<hyper::Uri>,
    pub expires: Option<OffsetDateTime>,
    /// Allowed request paths (exact, without the query); `None`: all the
    /// proxied endpoints.
    pub paths: Option<Vec<String>>,
}

impl VaultKey {
    pub fn expired(&self, now: OffsetDateTime) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    pub fn allows_path(&self, path: &str) -> bool {
        self.paths
            .as_ref()
            .is_none_or(|paths| paths.iter().any(|p| p == path))
    }
}

/// The loaded vault.
#[derive(Debug, Clone, Default)]
pub struct Vault {
    keys: HashMap<String, VaultKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    #[serde(default)]
    key: Vec<RawKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    #[serde(rename = "virtual")]
    virtual_key: String,
    real: String,
    agent: Option<String>,
    upstream: Option<String>,
    expires: Option<String>,
    paths: Option<Vec<String>>,
}

impl Vault {
    /// Loads `path`, refusing a file that anyone but root could read or
    /// change.
    pub fn load(path: &Path) -> Result<Vault, VaultError> {
        let io = |source| VaultError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let exposed = if meta.uid() != 0 {
            Some(format!("owned by uid {}, not root", meta.uid()))
        } else if meta.mode() & 0o077 != 0 {
            Some(format!(
                "mode {:o}, open to group or others",
                meta.mode() & 0o777
            ))
        } else {
            None
        };
        if let Some(why) = exposed {
            return Err(VaultError::Exposed {
                path: path.to_path_buf(),
                why,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Vault::parse(&text).map_err(|message| VaultError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses vault text (no file checks).
    pub fn parse(text: &str) -> Result<Vault, String> {
        let raw: RawVault = toml::from_str(text).map_err(|e| e.message().to_string())?;
        if raw.key.is_empty() {
            return Err("no [[key]] entries".into());
        }
        let mut keys = HashMap::new();
        for (i, key) in raw.key.into_iter().enumerate() {
            let n = i + 1;
            if key.virtual_key.trim().len() < 16 {
                return Err(format!(
                    "key {n}: the virtual key must be at least 16 characters (it is the agent's password)"
                ));
            }
            if key.real.trim().is_empty() {
                return Err(format!("key {n}: `real` is empty"));
            }
            if key.virtual_key == key.real {
                return Err(format!("key {n}: the virtual key is the real key"));
            }
            let upstream = key
                .upstream
                .as_deref()
                .map(|u| parse_upstream(u).map_err(|e| format!("key {n}: {e}")))
                .transpose()?;
            let expires = key
                .expires
                .as_deref()
                .map(|t| {
                    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                        .map_err(|e| format!("key {n}: expires `{t}` is not RFC 3339: {e}"))
                })
                .transpose()?;
            if let Some(paths) = &key.paths {
                if let Some(bad) = paths.iter().find(|p| !p.starts_with('/')) {
                    return Err(format!("key {n}: path `{bad}` must start with /"));
                }
            }
            let entry = VaultKey {
                virtual_key: key.virtual_key.clone(),
                real_key: key.real,
                agent: key.agent,
                upstream,
                expires,
                paths: key.paths,
            };
            if keys.insert(key.virtual_key, entry).is_some() {
                return Err(format!("key {n}: the same virtual key appears twice"));
            }
        }
        Ok(Vault { keys })
    }

    /// The entry for a virtual key, compared in constant time per entry.
    pub fn lookup(&self, presented: &str) -> Option<&VaultKey> {
        self.keys
            .values()
            .find(|k| constant_time_eq(k.virtual_key.as_bytes(), presented.as_bytes()))
    }

    /// Every real key, to scrub from answers.
    pub fn real_keys(&self) -> impl Iterator<Item = &VaultKey> {
        self.keys.values()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks an upstream base URL (`http://` or `https://`, optional path
/// prefix, no query).
pub fn parse_upstream(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(format!(
                "`{url}`: the upstream must be an http:// or https:// URL"
            ))
        }
    }
    if uri.host().is_none() {
        return Err(format!("`{url}`: no host"));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}`: an upstream takes no query string"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let v = Vault::parse(
            r#"
[[key]]
virtual = "sk-sentinel-virtual-0001"
real = "sk-real"
agent = "claude"
upstream = "https://api.anthropic.com"
expires = "2020-01-01T00:00:00Z"
paths = ["/v1/messages"]
"#,
        )
        .unwrap();
        let k = v.lookup("sk-sentinel-virtual-0001").unwrap();
        assert!(k.expired(OffsetDateTime::now_utc()));
        assert!(k.allows_path("/v1/messages"));
        assert!(!k.allows_path("/v1/chat/completions"));
        assert!(v.lookup("sk-sentinel-virtual-0002").is_none());
        assert!(v.lookup("").is_none());
        for bad in [
            "",
            "[[key]]\nvirtual = \"short\"\nreal = \"r\"\n",
            "[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"sk-sentinel-virtual-0001\"\n",
            "[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"r\"\nupstream = \"ftp://x\"\n",
            "[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"r\"\nexpires = \"tomorrow\"\n",
            "[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"r\"\nreall = \"r\"\n",
            "[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"r\"\n[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"s\"\n",
        ] {
            assert!(Vault::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_a_vault_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.toml");
        std::fs::write(
            &path,
            "[[key]]\nvirtual = \"sk-sentinel-virtual-0001\"\nreal = \"r\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Vault::load(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(Vault::load(&path).is_ok());
        }
    }
}
