//! The prompt-injection detector measured on two labelled sets:
//!
//! - tests/mcp/injection_corpus.jsonl (written by
//!   tests/mcp/make_injection_corpus.py): the set the detector was tuned
//!   on; precision and recall overall and per category, held above a floor.
//! - tests/mcp/injection_heldout.jsonl (built by
//!   tests/mcp/make_heldout_corpus.py from public prompt-injection
//!   collections and prompt-engineering documentation): a held-out set the
//!   detector was never tuned on. Its figures are whatever they are; the
//!   test checks that the README states them, so the published figures
//!   cannot drift from the detector.

use std::collections::BTreeMap;

use serde_json::Value;

struct Figures {
    tp: u32,
    fp: u32,
    tn: u32,
    fnn: u32,
}

impl Figures {
    fn precision(&self) -> f64 {
        f64::from(self.tp) / f64::from(self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        f64::from(self.tp) / f64::from(self.tp + self.fnn)
    }
}

/// Runs the detector over a JSONL set (`label`, `text`, and `category` or
/// `source`), prints the figures, each group's score and every mistake.
fn measure(file: &str, group_of: impl Fn(&Value) -> String) -> Figures {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/mcp")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("the corpus");
    let scanner = sentinel_mcp::Scanner::new();
    let detector = sentinel_mcp::injection::Detector::new();
    let mut f = Figures {
        tp: 0,
        fp: 0,
        tn: 0,
        fnn: 0,
    };
    let mut by_group: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut misses = Vec::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let injection = row["label"] == "injection";
        let sample = row["text"].as_str().unwrap();
        let flagged = !scanner.injection_in(sample).is_empty();
        let key = format!("{}/{}", row["label"].as_str().unwrap(), group_of(&row));
        let entry = by_group.entry(key).or_default();
        entry.1 += 1;
        if flagged == injection {
            entry.0 += 1;
        } else {
            let j = detector.judge(sample);
            misses.push(format!(
                "{} (score {:.1} {:?}) {:?}",
                if injection {
                    "missed"
                } else {
                    "false positive"
                },
                j.score,
                j.signals,
                sample.chars().take(160).collect::<String>()
            ));
        }
        match (injection, flagged) {
            (true, true) => f.tp += 1,
            (true, false) => f.fnn += 1,
            (false, true) => f.fp += 1,
            (false, false) => f.tn += 1,
        }
    }
    println!("{file}: injections {} benign {}", f.tp + f.fnn, f.tn + f.fp);
    println!(
        "precision {:.3} recall {:.3} (tp {} fp {} tn {} fn {})",
        f.precision(),
        f.recall(),
        f.tp,
        f.fp,
        f.tn,
        f.fnn
    );
    for (group, (right, total)) in &by_group {
        println!("  {group}: {right}/{total} right");
    }
    for m in &misses {
        println!("  {m}");
    }
    f
}

#[test]
fn injection_detector_precision_and_recall_on_the_labelled_corpus() {
    let f = measure("injection_corpus.jsonl", |row| {
        row["category"].as_str().unwrap().to_string()
    });
    assert!(
        f.tp + f.fnn >= 200 && f.tn + f.fp >= 200,
        "the corpus is the size the issue asks for"
    );
    assert!(f.precision() >= 0.95, "precision {:.3}", f.precision());
    assert!(f.recall() >= 0.85, "recall {:.3}", f.recall());
}

#[test]
fn injection_detector_on_the_held_out_set_is_reported_as_measured() {
    let f = measure("injection_heldout.jsonl", |row| {
        // The source repository, without commit and path.
        let source = row["source"].as_str().unwrap();
        source.split('@').next().unwrap_or(source).to_string()
    });
    assert!(
        f.tp + f.fnn >= 100 && f.tn + f.fp >= 100,
        "the held-out set is big enough to mean something"
    );
    let row = format!(
        "| held-out set (not tuned on) | {:.3} ({} false positives of {}) | {:.3} ({} of {}) |",
        f.precision(),
        f.fp,
        f.fp + f.tn,
        f.recall(),
        f.tp,
        f.tp + f.fnn
    );
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    assert!(
        readme.contains(&row),
        "sentinel-mcp/README.md must report the held-out figures as measured:\n{row}"
    );
}
