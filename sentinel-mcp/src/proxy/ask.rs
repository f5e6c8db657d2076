//! The ask flow: a call held for a human's decision, through MCP
//! elicitation (held call + `elicitation/create` on the 2025 revisions, a
//! sealed `InputRequiredResult` on 2026-07-28) or an operator's
//! confirmation token.

use serde_json::{json, Value};

use super::*;

/// A tools/call held while the client's user is asked (elicitation).
#[derive(Debug, Clone)]
pub(super) struct HeldCall {
    pub(super) client_id_key: String,
    pub(super) generation: u64,
    pub(super) raw: Vec<u8>,
    pub(super) call: ToolCall,
    pub(super) verdict: Verdict,
}

/// What a 2026-07-28 `tools/call` carries for the ask flow.
#[derive(Debug, Default)]
pub(super) struct ModernInput {
    /// The request speaks the 2026-07-28 revision.
    pub(super) modern: bool,
    /// The request's `_meta` declares the elicitation capability.
    pub(super) elicitation: bool,
    /// Our sealed `requestState`, when this is a retry.
    pub(super) state: Option<String>,
    /// The user's answer under our input key.
    pub(super) answer: Option<Value>,
}

/// The request without our `requestState` and input response.
pub(super) fn strip_our_input(msg: &Message) -> Vec<u8> {
    let mut value = msg.value.clone();
    if let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) {
        params.remove("requestState");
        let emptied = match params
            .get_mut("inputResponses")
            .and_then(Value::as_object_mut)
        {
            Some(responses) => {
                responses.remove(mrtr::INPUT_KEY);
                responses.is_empty()
            }
            None => false,
        };
        if emptied {
            params.remove("inputResponses");
        }
    }
    Value::Object(value).to_string().into_bytes()
}

impl Proxy {
    pub(super) fn on_ask(
        &self,
        step: &mut Step,
        id: &Value,
        raw: &[u8],
        call: ToolCall,
        verdict: Verdict,
        input: ModernInput,
    ) -> Option<PendingKind> {
        let modern = input.modern;
        // Digested from the exact text of what is forwarded, so numbers
        // beyond 64 bits bind exactly.
        let args_text = crate::exact::call_arguments(raw);
        let binding = CallBinding {
            agent: call.agent.clone(),
            server: call.server.clone(),
            tool: call.tool.clone(),
            args_digest: args_text.as_deref().map_or_else(
                || args_digest(&call.args),
                |t| crate::store::sha256_hex(t.as_bytes()),
            ),
        };
        let now = self.clock.now();
        // Who may approve: with `approver = "operator"` no elicitation is
        // sent and no elicited answer counts.
        let client_may_approve =
            self.decider.settings().approver == sentinel_policy::Approver::Client;
        match self.decider.take_ask(&binding, now) {
            Ok(true) => {
                self.record(&call, &verdict, "approved");
                return Some(PendingKind::ToolsCall {
                    call: Box::new(call),
                    verdict: Box::new(verdict),
                });
            }
            Ok(false) => {}
            Err(e) => {
                let verdict = own_verdict(
                    Decision::Deny,
                    "sentinel-unavailable",
                    format!("the approval could not be checked, so the call is refused: {e}"),
                    100,
                );
                step.client(self.deny_reply(id, &call, &verdict, modern));
                return None;
            }
        }
        if modern && client_may_approve {
            if let Some(state) = &input.state {
                let why = match self.sealer.open(state, &binding, now) {
                    Ok(()) if mrtr::approves(input.answer.as_ref()) => {
                        self.record(&call, &verdict, "approved-by-elicitation");
                        return Some(PendingKind::ToolsCall {
                            call: Box::new(call),
                            verdict: Box::new(verdict),
                        });
                    }
                    Ok(()) => "the user declined the call".to_string(),
                    Err(e) => e.to_string(),
                };
                let denied = own_verdict(
                    Decision::Deny,
                    verdict.rule.as_deref().unwrap_or("ask"),
                    why,
                    verdict.risk,
                );
                self.record(&call, &denied, "denied-by-elicitation");
                step.client(self.deny_reply(id, &call, &denied, modern));
                return None;
            }
            if input.elicitation {
                let sealed = self.sealer.seal(&binding, self.config.ask_ttl, now);
                self.record(&call, &verdict, "ask-elicited");
                step.client(jsonrpc::result_response(
                    id,
                    mrtr::input_required(self.ask_message(&call, &verdict), sealed),
                ));
                return None;
            }
        }
        let elicit = client_may_approve && self.state().client_elicitation && !modern;
        if elicit {
            let mut state = self.state();
            state.next_elicitation += 1;
            // Unguessable, so a server cannot pick ids that collide with ours.
            let elicitation_id = format!(
                "sentinel-elicit-{}-{}",
                self.elicit_prefix, state.next_elicitation
            );
            let generation = state.next_generation + 1;
            state.elicitations.insert(
                id_key(&Value::String(elicitation_id.clone())),
                HeldCall {
                    client_id_key: id_key(id),
                    generation,
                    raw: raw.to_vec(),
                    call: call.clone(),
                    verdict: verdict.clone(),
                },
            );
            drop(state);
            let request = json!({
                "jsonrpc": "2.0",
                "id": elicitation_id,
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": self.ask_message(&call, &verdict),
                    "requestedSchema": {
                        "type": "object",
                        "properties": { "approve": { "type": "boolean", "title": "Allow this call once" } },
                        "required": ["approve"],
                    },
                },
            });
            step.client(request.to_string().into_bytes());
            return Some(PendingKind::AwaitingElicitation);
        }
        let text = match self.decider.request_ask(
            &binding,
            args_text.as_deref(),
            self.config.ask_ttl,
            now,
        ) {
            Ok(approval) => {
                self.record(&call, &verdict, "ask-pending");
                format!(
                    "Sentinel needs an operator's approval for tool `{}` on server `{}` (rule `{}`: {}). \
                     Ask the operator to run `sentinel approve {approval}` within {} seconds, then retry \
                     the same call with the same arguments; the approval is good for one call.",
                    call.tool,
                    call.server,
                    verdict.rule.as_deref().unwrap_or("-"),
                    verdict.reason,
                    self.config.ask_ttl.as_secs(),
                )
            }
            Err(e) => format!(
                "Sentinel could not register an approval request, so the call is refused: {e}"
            ),
        };
        step.client(jsonrpc::result_response(
            id,
            tool_error_result(text, modern),
        ));
        None
    }

    /// The operator's token flow for anything but a tool call (a resource
    /// read, a prompt, a server's sampling request): `Ok` when an approval
    /// of exactly this was taken (it is used up), else the text to answer
    /// with, naming the approval id to give the operator.
    pub(super) fn operator_ask(
        &self,
        call: &ToolCall,
        verdict: &Verdict,
        args_text: Option<&str>,
    ) -> Result<(), String> {
        let args_text = args_text
            .map(str::to_owned)
            .unwrap_or_else(|| crate::store::canonical_json(&call.args));
        let binding = CallBinding {
            agent: call.agent.clone(),
            server: call.server.clone(),
            tool: call.tool.clone(),
            args_digest: crate::store::sha256_hex(args_text.as_bytes()),
        };
        let now = self.clock.now();
        match self.decider.take_ask(&binding, now) {
            Ok(true) => {
                self.record(call, verdict, "approved");
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => {
                return Err(format!(
                    "Sentinel could not check the approval, so `{}` is refused: {e}",
                    call.tool
                ))
            }
        }
        match self
            .decider
            .request_ask(&binding, Some(&args_text), self.config.ask_ttl, now)
        {
            Ok(approval) => {
                self.record(call, verdict, "ask-pending");
                Err(format!(
                    "Sentinel needs an operator's approval for `{}` on server `{}` (rule `{}`: {}). \
                     Ask the operator to run `sentinel approve {approval}` within {} seconds, then retry; \
                     the approval is good once.",
                    call.tool,
                    call.server,
                    verdict.rule.as_deref().unwrap_or("-"),
                    verdict.reason,
                    self.config.ask_ttl.as_secs(),
                ))
            }
            Err(e) => Err(format!(
                "Sentinel could not register an approval request, so `{}` is refused: {e}",
                call.tool
            )),
        }
    }

    pub(super) fn on_elicitation_answer(&self, step: &mut Step, held: HeldCall, msg: &Message) {
        let pending = {
            let state = self.state();
            state
                .pending
                .get(&held.client_id_key)
                .filter(|p| p.generation == held.generation)
                .cloned()
        };
        let Some(pending) = pending else {
            return; // the call already timed out and was answered
        };
        let result = msg.value.get("result");
        let accepted = mrtr::approves(result);
        if accepted {
            self.record(&held.call, &held.verdict, "approved-by-elicitation");
            if let Some(p) = self.state().pending.get_mut(&held.client_id_key) {
                p.kind = PendingKind::ToolsCall {
                    call: Box::new(held.call),
                    verdict: Box::new(held.verdict),
                };
            }
            step.server(held.raw);
        } else {
            self.state().pending.remove(&held.client_id_key);
            let verdict = own_verdict(
                Decision::Deny,
                held.verdict.rule.as_deref().unwrap_or("ask"),
                "the user declined the call".into(),
                held.verdict.risk,
            );
            self.record(&held.call, &verdict, "denied-by-elicitation");
            step.client(self.deny_reply(&pending.id, &held.call, &verdict, pending.modern));
        }
    }

    pub(super) fn ask_message(&self, call: &ToolCall, verdict: &Verdict) -> String {
        format!(
            "Sentinel: allow tool `{}` on server `{}` once? Rule `{}`: {}. Arguments: {}",
            call.tool,
            call.server,
            verdict.rule.as_deref().unwrap_or("-"),
            verdict.reason,
            crate::store::canonical_json(&self.redacted_args(&call.args)),
        )
    }
}
