//! Loading policy directories from real files, and error messages that
//! name file, line and column.

mod common;

use std::fs;

use sentinel_policy::{check_dir, Decision, Policy, PolicyError};

fn error_for(toml: &str) -> String {
    match Policy::from_sources(&[("bad.toml", toml)]) {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn errors_name_file_line_and_column() {
    let rule = |extra: &str| {
        format!("# comment\n[[rule]]\nname = \"r\"\nkind = \"open\"\naction = \"deny\"\n{extra}\n")
    };
    // (what, policy text, expected message start)
    let cases = [
        (
            "invalid glob",
            rule("path = \"/etc/[\""),
            "bad.toml:6:8: invalid glob",
        ),
        (
            "glob in a list",
            rule("path = [\"/ok\", \"/a/{b\"]"),
            "bad.toml:6:8: invalid glob",
        ),
        (
            "relative path glob",
            rule("path = \"etc/x\""),
            "bad.toml:6:8: `etc/x`: path globs must be absolute",
        ),
        (
            "invalid regex",
            "[[rule]]\nname = \"r\"\nkind = \"exec\"\naction = \"deny\"\nargs = \"(unclosed\"\n"
                .to_string(),
            "bad.toml:5:8: invalid regex",
        ),
        (
            "invalid CIDR",
            rule("").replace("open", "connect") + "addr = [\"10.0.0.0/33\"]\n",
            "bad.toml:7:8: `10.0.0.0/33` is not an IP address or CIDR",
        ),
        (
            "invalid time zone",
            rule("schedule = { start = \"09:00\", end = \"17:00\", tz = \"Mars/Olympus\" }"),
            "bad.toml:6:51: unknown time zone `Mars/Olympus`",
        ),
        (
            "invalid clock",
            rule("schedule = { start = \"9am\", end = \"17:00\" }"),
            "bad.toml:6:22: `9am` is not a 24-hour time",
        ),
        (
            "invalid day",
            rule("schedule = { days = [\"mon\", \"funday\"], start = \"09:00\", end = \"17:00\" }"),
            "bad.toml:6:29: `funday` is not a day",
        ),
        (
            "unknown key",
            rule("colour = \"red\""),
            "bad.toml:6:1: unknown field `colour`",
        ),
        (
            "wrong type",
            rule("priority = \"high\""),
            "bad.toml:6:12: invalid type: string \"high\", expected i64",
        ),
        (
            "unknown action",
            "[[rule]]\nname = \"r\"\nkind = \"open\"\naction = \"block\"\n".to_string(),
            "bad.toml:4:10: unknown variant `block`",
        ),
        (
            "unknown kind",
            "[[rule]]\nname = \"r\"\nkind = \"fork\"\naction = \"deny\"\n".to_string(),
            "bad.toml:3:8: unknown variant `fork`",
        ),
        (
            "key of another kind",
            rule("port = 22"),
            "bad.toml:6:8: key `port` does not apply to kind = \"open\"",
        ),
        (
            "bad port",
            rule("").replace("open", "connect") + "port = \"90-80\"\n",
            "bad.toml:7:8: `90-80` is not a port",
        ),
        (
            "port out of range",
            rule("").replace("open", "connect") + "port = 70000\n",
            "bad.toml:7:8: port 70000 is out of range",
        ),
        (
            "risk out of range",
            rule("risk = 101"),
            "bad.toml:6:8: risk must be between 0 and 100",
        ),
        (
            "zero rate limit",
            rule("rate_limit = { max = 0, per_seconds = 1 }"),
            "bad.toml:6:14: rate_limit needs max >= 1",
        ),
        (
            "missing name",
            "[[rule]]\nkind = \"open\"\naction = \"deny\"\n".to_string(),
            "bad.toml:1:1: missing field `name`",
        ),
        (
            "reserved name",
            "[[rule]]\nname = \"quarantine\"\nkind = \"open\"\naction = \"deny\"\n".to_string(),
            "bad.toml:2:8: rule name `quarantine` is reserved",
        ),
        (
            "syntax error",
            "[[rule]\nname = 1\n".to_string(),
            "bad.toml:1:8: unclosed array table",
        ),
        (
            "lockdown path the kernel cannot enforce",
            "[lockdown]\nexec = [\"/usr/bin/ok\", \"/usr/*/bin\"]\n".to_string(),
            "bad.toml:2:24: lockdown entry `/usr/*/bin` must be",
        ),
        (
            "unknown section",
            "[lockdwn]\nexec = []\n".to_string(),
            "bad.toml:1:2: unknown field `lockdwn`",
        ),
    ];
    for (what, text, expected) in cases {
        let message = error_for(&text);
        assert!(
            message.starts_with(expected),
            "{what}:\n  got      {message}\n  expected {expected}…"
        );
        assert!(
            !message.contains('\n'),
            "{what}: one line please: {message}"
        );
    }
}

#[test]
fn duplicate_names_across_files_point_at_both() {
    let a = "[[rule]]\nname = \"dup\"\nkind = \"open\"\naction = \"deny\"\n";
    let b = "\n\n[[rule]]\nname = \"dup\"\nkind = \"exec\"\naction = \"deny\"\n";
    let error = Policy::from_sources(&[("a.toml", a), ("b.toml", b)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "b.toml:4:8: duplicate rule name `dup` (first defined at a.toml:2:8); rule names must be unique"
    );
}

#[test]
fn load_dir_reads_toml_files_sorted_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let rule = |name: &str, action: &str| {
        format!(
            "[[rule]]\nname = \"{name}\"\nkind = \"open\"\naction = \"{action}\"\npath = \"/x\"\n"
        )
    };
    fs::write(dir.path().join("20-b.toml"), rule("from-b", "deny")).unwrap();
    fs::write(dir.path().join("10-a.toml"), rule("from-a", "allow")).unwrap();
    fs::write(dir.path().join("README.md"), "not policy").unwrap();
    fs::create_dir(dir.path().join("sub.toml")).unwrap();
    let policy = Policy::load_dir(dir.path()).unwrap();
    assert_eq!(policy.files().len(), 2);
    assert!(policy.files()[0].ends_with("10-a.toml"));
    assert_eq!(policy.rules()[0].name, "from-a");
    assert_eq!(policy.rules()[0].action, Decision::Allow);
    let summary = check_dir(dir.path()).unwrap();
    assert_eq!((summary.rules, summary.enabled), (2, 2));
    assert!(summary
        .to_string()
        .starts_with("policy OK: 2 rules (2 enabled) in 2 file(s)"));

    fs::write(
        dir.path().join("30-c.toml"),
        "[[rule]]\nname = \"c\"\nkind = \"open\"\naction = \"deny\"\npath = \"/[\"\n",
    )
    .unwrap();
    let message = Policy::load_dir(dir.path()).unwrap_err().to_string();
    let expected_file = dir.path().join("30-c.toml");
    assert!(
        message.starts_with(&format!("{}:5:8: invalid glob", expected_file.display())),
        "{message}"
    );
}

#[test]
fn a_missing_directory_says_what_to_do() {
    let error = Policy::load_dir(std::path::Path::new("/nonexistent/policies")).unwrap_err();
    assert!(matches!(error, PolicyError::Io { .. }));
    assert!(error
        .to_string()
        .starts_with("cannot read policy /nonexistent/policies: No such file or directory"));
    assert!(error
        .to_string()
        .ends_with("check that it exists and is readable"));
}

#[test]
fn shipped_policy_directory_matches_the_embedded_defaults() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let on_disk = Policy::load_dir(&dir).unwrap();
    let embedded = Policy::embedded_defaults();
    let names = |p: &Policy| p.rules().iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&on_disk),
        names(&embedded),
        "add new policies/ files to EMBEDDED"
    );
    assert_eq!(on_disk.files().len(), embedded.files().len());
}
