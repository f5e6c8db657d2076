//! Behaviour detection on live traffic, on the real kernel: a watched
//! process tree reads a secret file and then connects out (loopback) → one
//! critical exfiltration alert in the stream and the audit chain, linked to
//! both events by `seq`, listed by `sentinel alerts list`.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn secret_read_then_connect_raises_a_linked_critical_alert() {
    require_environment();
    let _lock = kernel_lock();
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(policy.path().join("empty.toml"), "# observe only\n").unwrap();
    let mut daemon = Daemon::start(&["--policy", policy.path().to_str().unwrap()]);

    let dir = scratch_dir();
    let ssh = dir.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = ssh.join("id_ed25519");
    std::fs::write(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let out = sh_as(
        WATCHED_UID,
        &format!(
            "cat {} > /dev/null; echo x > /dev/tcp/127.0.0.1/{port}",
            key.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");

    let key_path = key.to_str().unwrap();
    let read = daemon.wait_for("the secret read", |e| {
        e["kind"] == "open" && e["path"] == key_path
    });
    let connect = daemon.wait_for("the connect", |e| {
        e["kind"] == "connect" && e["port"] == port
    });
    let alert = daemon.wait_for("the exfiltration alert", |e| {
        e["kind"] == "alert" && e["category"] == "exfiltration"
    });
    assert_eq!(alert["severity"], "critical", "{alert}");
    let related: Vec<u64> = alert["related"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert!(
        related.contains(&read["seq"].as_u64().unwrap()),
        "{alert} vs {read}"
    );
    assert!(
        related.contains(&connect["seq"].as_u64().unwrap()),
        "{alert} vs {connect}"
    );
    assert!(daemon.stop().success());

    // The same alert, from the audit chain's own records and the alerts CLI.
    let db = daemon.state_dir().join("sentinel.db");
    let out = Command::new(sentinel_bin())
        .args(["alerts", "list", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("exfiltration"));
    let out = Command::new(sentinel_bin())
        .args(["audit", "query", "--kind", "alert", "--db"])
        .arg(&db)
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exfiltration"),
        "{out:?}"
    );
}
