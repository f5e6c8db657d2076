//! The MCP conformance suite (`@modelcontextprotocol/conformance`, its
//! server scenarios) run against the same server twice: directly, over the
//! Python SDK's own Streamable HTTP transport, and through the proxy's HTTP
//! front with the embedded default policy in front of that server on stdio.
//! The server (tests/mcp/conformance_server.py) carries the tools,
//! resources and prompts the scenarios call.
//!
//! What it holds: every scenario passes directly; through the proxy every
//! scenario ends as it does directly, except `tools-call-sampling`, which
//! the default policy holds for the operator (`ask`): the suite's client
//! gets the proxy's -32002 naming the approval; once the operator approves
//! it (`sentinel approve`, here the same store call), the rerun passes.
//! The side-by-side table in sentinel-mcp/README.md is checked against
//! what this run measured.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

/// Scenario name -> (checks passed, checks failed), from the suite's output.
type Outcome = BTreeMap<String, (u32, u32)>;

/// Runs the server scenarios of the suite against `url`, saving each
/// scenario's checks under `out`; `scenario` limits it to one.
fn run_suite(url: &str, out: &Path, scenario: Option<&str>) -> Outcome {
    let peers = peers();
    let node = peers.node_bin.join("node");
    let suite = peers.node_bin.join("conformance");
    assert!(
        node.exists() && suite.exists(),
        "the conformance suite or its Node 22 runtime is missing ({}, {}): install the \
         peers with `cargo xtask setup` (tests/mcp/package.json)",
        node.display(),
        suite.display()
    );
    let mut cmd = Command::new(&node);
    cmd.arg(&suite)
        .args(["server", "--url", url, "-o"])
        .arg(out);
    if let Some(name) = scenario {
        cmd.args(["--scenario", name]);
    }
    let output = cmd.output().expect("run the conformance suite");
    let mut outcome = Outcome::new();
    for (name, checks) in scenario_checks(out) {
        let count = |status: &str| checks.iter().filter(|c| c["status"] == status).count() as u32;
        outcome.insert(name, (count("SUCCESS"), count("FAILURE")));
    }
    assert!(
        !outcome.is_empty(),
        "the suite reported no scenario:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    outcome
}

/// The checks of each scenario the suite saved under `out`: one directory
/// per scenario, `server-NAME-TIMESTAMP/checks.json`.
fn scenario_checks(out: &Path) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(out).into_iter().flatten() {
        let path = entry.expect("a directory entry").path();
        let dir = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let Some(rest) = dir.strip_prefix("server-") else {
            continue;
        };
        // The name ends in "-" and a timestamp, "2026-12-03T12-00-00-000Z".
        let Some(at) = rest.len().checked_sub("-2026-12-03T12-00-00-000Z".len()) else {
            continue;
        };
        let text = std::fs::read_to_string(path.join("checks.json")).expect("checks.json");
        let checks: serde_json::Value = serde_json::from_str(&text).expect("checks JSON");
        found.push((
            rest[..at].to_string(),
            checks.as_array().cloned().unwrap_or_default(),
        ));
    }
    found
}

/// The error messages of the failed checks of `scenario` under `out`.
fn failure_messages(out: &Path, scenario: &str) -> Vec<String> {
    scenario_checks(out)
        .into_iter()
        .filter(|(name, _)| name == scenario)
        .flat_map(|(_, checks)| checks)
        .filter(|c| c["status"] == "FAILURE")
        .map(|c| c["errorMessage"].as_str().unwrap_or("").to_string())
        .collect()
}

fn cell((passed, failed): (u32, u32)) -> String {
    if failed == 0 {
        format!("pass ({passed})")
    } else {
        format!("**fail** ({passed} passed, {failed} failed)")
    }
}

#[test]
fn conformance_suite_direct_and_through_the_proxy() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let server_script = workspace_root()
        .join("tests/mcp/conformance_server.py")
        .display()
        .to_string();

    // Direct: the server's own Streamable HTTP transport.
    let port = free_port();
    let _direct = Session::spawn_with_stderr(
        &peers.python,
        std::slice::from_ref(&server_script),
        &[("SENTINEL_TEST_HTTP_PORT", port.to_string())],
        Some(&dir.path().join("direct.stderr")),
    );
    wait_port(port);
    let direct = run_suite(
        &format!("http://127.0.0.1:{port}/mcp"),
        &dir.path().join("direct"),
        None,
    );
    let failing: Vec<_> = direct.iter().filter(|(_, c)| c.1 > 0).collect();
    assert!(
        failing.is_empty(),
        "the server fails scenarios on its own: {failing:?}"
    );

    // Through the proxy: its HTTP front, embedded default policy, the same
    // server on stdio.
    let db = dir.path().join("s.db");
    let stderr = dir.path().join("proxy.stderr");
    let proxy_port = free_port();
    let listen = format!("127.0.0.1:{proxy_port}");
    let _proxy = Session::spawn_with_stderr(
        &proxy_bin(),
        &[
            "--standalone".to_string(),
            "--agent".into(),
            "conformance".into(),
            "--server-name".into(),
            "conformance".into(),
            "--db".into(),
            db.display().to_string(),
            "--listen".into(),
            listen.clone(),
            "--".into(),
            peers.python.display().to_string(),
            server_script.clone(),
        ],
        &[],
        Some(&stderr),
    );
    wait_listening(&stderr);
    let url = format!("http://{listen}/mcp");
    let proxied_out = dir.path().join("proxied");
    let proxied = run_suite(&url, &proxied_out, None);

    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        proxied.keys().collect::<Vec<_>>(),
        "the same scenarios ran"
    );
    for (scenario, &(passed, failed)) in &proxied {
        if scenario == "tools-call-sampling" {
            continue;
        }
        assert_eq!(
            failed,
            0,
            "`{scenario}` fails through the proxy but not directly: {:?}",
            failure_messages(&proxied_out, scenario)
        );
        assert!(passed > 0, "`{scenario}` checked nothing through the proxy");
    }

    // Sampling: the default policy asks the operator. The suite's client
    // sees the proxy's refusal naming the approval, not a broken server.
    assert_eq!(proxied["tools-call-sampling"], (0, 1));
    let messages = failure_messages(&proxied_out, "tools-call-sampling");
    let message = messages.first().cloned().unwrap_or_default();
    assert!(
        message.contains("-32002") && message.contains("mcp-server-sampling"),
        "{messages:?}"
    );
    let ask_id = message
        .split("sentinel approve ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the refusal names the approval to give")
        .trim_matches('`')
        .to_string();
    sentinel_mcp::Store::open(&db)
        .unwrap()
        .approve(&ask_id, std::time::SystemTime::now())
        .expect("the operator approves the pending ask");
    let approved = run_suite(
        &url,
        &dir.path().join("approved"),
        Some("tools-call-sampling"),
    );
    assert_eq!(
        approved["tools-call-sampling"],
        (1, 0),
        "after the operator's approval: {:?}",
        failure_messages(&dir.path().join("approved"), "tools-call-sampling")
    );
    // The approval was good once: a second sampling request is held again.
    let again = run_suite(&url, &dir.path().join("again"), Some("tools-call-sampling"));
    assert_eq!(again["tools-call-sampling"], (0, 1));

    // The README's table is this run.
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let mut missing = Vec::new();
    for (scenario, &counts) in &direct {
        let through = if scenario == "tools-call-sampling" {
            format!(
                "held for the operator (`ask`): {}; after `sentinel approve`: {}",
                cell(proxied[scenario]),
                cell(approved[scenario])
            )
        } else {
            cell(proxied[scenario])
        };
        let row = format!("| {scenario} | {} | {through} |", cell(counts));
        if !readme.contains(&row) {
            missing.push(row);
        }
    }
    let total = |o: &Outcome| o.values().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
    let (dp, df) = total(&direct);
    let (pp, pf) = total(&proxied);
    let row =
        format!("| **checks** | **{dp} passed, {df} failed** | **{pp} passed, {pf} failed** |");
    if !readme.contains(&row) {
        missing.push(row);
    }
    assert!(
        missing.is_empty(),
        "sentinel-mcp/README.md must show the conformance run as measured; rows not found:\n{}",
        missing.join("\n")
    );
}
