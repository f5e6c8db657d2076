//! ask on the 2026-07-28 revision: an `InputRequiredResult` carrying an
//! elicitation, and a sealed `requestState` that binds the client's retry to
//! the exact call that was asked about.
//!
//! The state is `sentinel1.<hex payload>.<hex HMAC-SHA256>` under a key that
//! lives only in this proxy process; the payload binds agent, server, tool,
//! the digest of the canonical arguments, an expiry and a random nonce. A
//! client that edits it, replays it for other arguments, sends it late, or
//! sends it a second time (each state is redeemed once, here) is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::store::CallBinding;

/// The key under which the proxy's elicitation sits in `inputRequests`.
pub const INPUT_KEY: &str = "sentinel-approval";
const PREFIX: &str = "sentinel1.";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Sealed {
    binding: CallBinding,
    expires_unix: u64,
    nonce: String,
}

/// Why a returned `requestState` is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the approval state was altered or not issued by this proxy")]
    Tampered,
    #[error("the approval state has expired; call again to be asked again")]
    Expired,
    #[error("the approval state was issued for a different call")]
    OtherCall,
    #[error("the approval state was already used; call again to be asked again")]
    Replayed,
}

/// Seals and opens approval states with a per-process key.
pub struct StateSealer {
    key: [u8; 32],
    /// Nonces already redeemed, with their expiry (pruned once expired:
    /// an expired state is refused anyway).
    redeemed: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hmac_sha256(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl StateSealer {
    /// A sealer with a fresh random key.
    pub fn new() -> Self {
        let mut key = [0u8; 32];
        let random = unhex(&crate::store::random_hex(32)).unwrap_or_default();
        key.copy_from_slice(&random[..32.min(random.len())]);
        Self {
            key,
            redeemed: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Whether `state` looks like one of ours (else it is the server's).
    pub fn is_ours(state: &str) -> bool {
        state.starts_with(PREFIX)
    }

    pub fn seal(&self, binding: &CallBinding, ttl: Duration, now: SystemTime) -> String {
        let sealed = Sealed {
            binding: binding.clone(),
            expires_unix: unix(now) + ttl.as_secs(),
            nonce: crate::store::random_hex(16),
        };
        let payload = serde_json::to_vec(&sealed).unwrap_or_default();
        format!(
            "{PREFIX}{}.{}",
            hex(&payload),
            hex(&hmac_sha256(&self.key, &payload))
        )
    }

    /// Checks a returned state against the call being retried, and redeems
    /// it: the same state never opens twice.
    pub fn open(&self, state: &str, call: &CallBinding, now: SystemTime) -> Result<(), StateError> {
        let body = state.strip_prefix(PREFIX).ok_or(StateError::Tampered)?;
        let (payload, mac) = body.split_once('.').ok_or(StateError::Tampered)?;
        let payload = unhex(payload).ok_or(StateError::Tampered)?;
        let mac = unhex(mac).ok_or(StateError::Tampered)?;
        if !same(&mac, &hmac_sha256(&self.key, &payload)) {
            return Err(StateError::Tampered);
        }
        let sealed: Sealed = serde_json::from_slice(&payload).map_err(|_| StateError::Tampered)?;
        if sealed.expires_unix <= unix(now) {
            return Err(StateError::Expired);
        }
        if &sealed.binding != call {
            return Err(StateError::OtherCall);
        }
        let mut redeemed = self.redeemed.lock().unwrap_or_else(|p| p.into_inner());
        let now = unix(now);
        redeemed.retain(|_, expires| *expires > now);
        if redeemed.insert(sealed.nonce, sealed.expires_unix).is_some() {
            return Err(StateError::Replayed);
        }
        Ok(())
    }
}

impl Default for StateSealer {
    fn default() -> Self {
        Self::new()
    }
}

/// The `InputRequiredResult` asking the user to allow the call once.
pub fn input_required(message: String, state: String) -> Value {
    json!({
        "resultType": "input_required",
        "inputRequests": {
            INPUT_KEY: {
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": message,
                    "requestedSchema": {
                        "type": "object",
                        "properties": { "approve": { "type": "boolean", "title": "Allow this call once" } },
                        "required": ["approve"],
                    },
                },
            },
        },
        "requestState": state,
    })
}

/// Whether an elicitation answer (legacy result or 2026 input response)
/// approves the call.
pub fn approves(answer: Option<&Value>) -> bool {
    answer.and_then(|r| r.get("action")).and_then(Value::as_str) == Some("accept")
        && answer
            .and_then(|r| r.get("content"))
            .and_then(|c| c.get("approve"))
            .and_then(Value::as_bool)
            == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(args: &str) -> CallBinding {
        CallBinding {
            agent: Some("a".into()),
            server: "s".into(),
            tool: "t".into(),
            args_digest: args.into(),
        }
    }

    #[test]
    fn hmac_matches_a_known_answer() {
        // Python: hmac.new(bytes(range(32)), b"hello", "sha256").hexdigest()
        let key: [u8; 32] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            hex(&hmac_sha256(&key, b"hello")),
            "53c40272a70c15ca4ee0af4df1f155fd6c41e00ce2307d8987ecd4bb36a7e990"
        );
    }

    #[test]
    fn a_sealed_state_opens_only_for_its_call_before_expiry() {
        let sealer = StateSealer::new();
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let state = sealer.seal(&binding("d1"), Duration::from_secs(60), now);
        assert!(StateSealer::is_ours(&state));
        assert_eq!(
            sealer.open(&state, &binding("d2"), now),
            Err(StateError::OtherCall)
        );
        assert_eq!(sealer.open(&state, &binding("d1"), now), Ok(()));
        assert_eq!(
            sealer.open(&state, &binding("d1"), now),
            Err(StateError::Replayed),
            "single use"
        );
        assert_eq!(
            sealer.open(&state, &binding("d1"), now + Duration::from_secs(61)),
            Err(StateError::Expired)
        );
        let mut forged = state.clone();
        forged.replace_range(12..13, if &state[12..13] == "0" { "1" } else { "0" });
        assert_eq!(
            sealer.open(&forged, &binding("d1"), now),
            Err(StateError::Tampered)
        );
        assert_eq!(
            StateSealer::new().open(&state, &binding("d1"), now),
            Err(StateError::Tampered),
            "another process's key does not open it"
        );
    }
}
