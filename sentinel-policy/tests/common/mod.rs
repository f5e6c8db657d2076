//! Helpers shared by the integration tests: actions, a fake clock, and
//! policies from inline TOML.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentinel_policy::{Action, Object, Policy};

pub const AGENT_UID: u32 = 1001;
pub const AGENT_HOME: &str = "/home/agent";

/// Monday 2026-01-05 00:00:00 UTC plus `seconds`.
pub fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_571_200 + seconds)
}

pub fn homes() -> HashMap<u32, PathBuf> {
    HashMap::from([
        (AGENT_UID, PathBuf::from(AGENT_HOME)),
        (1002, PathBuf::from("/home/other")),
    ])
}

pub fn policy(toml: &str) -> Policy {
    match Policy::from_sources(&[("test.toml", toml)]) {
        Ok(policy) => policy,
        Err(error) => panic!("test policy does not parse: {error}"),
    }
}

fn action(object: Object) -> Action {
    Action {
        agent: Some("claude".into()),
        uid: AGENT_UID,
        pid: 4242,
        object,
    }
}

pub fn exec(binary: &str, argv: &[&str]) -> Action {
    action(Object::Exec {
        binary: binary.into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
    })
}

pub fn open(path: &str, write: bool) -> Action {
    action(Object::Open {
        path: path.into(),
        write,
    })
}

pub fn connect(addr: &str, port: u16) -> Action {
    let addr: IpAddr = addr.parse().expect("test address");
    action(Object::Connect { addr, port })
}

pub fn mcp(server: &str, tool: &str, args: serde_json::Value) -> Action {
    action(Object::Mcp {
        server: server.into(),
        tool: tool.into(),
        args,
    })
}

pub fn as_agent(mut action: Action, agent: Option<&str>, uid: u32) -> Action {
    action.agent = agent.map(str::to_string);
    action.uid = uid;
    action
}
