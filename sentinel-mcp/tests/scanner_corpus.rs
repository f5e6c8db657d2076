//! The prompt-injection detector measured on the labelled corpus in
//! tests/mcp/injection_corpus.jsonl (written by
//! tests/mcp/make_injection_corpus.py): precision and recall overall and
//! per category, printed, and held above a floor.

use std::collections::BTreeMap;

use serde_json::Value;

#[test]
fn injection_detector_precision_and_recall_on_the_labelled_corpus() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/mcp/injection_corpus.jsonl");
    let text = std::fs::read_to_string(&path).expect("the corpus");
    let scanner = sentinel_mcp::Scanner::new();
    let (mut tp, mut fp, mut tn, mut fnn) = (0u32, 0u32, 0u32, 0u32);
    let mut by_category: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut misses = Vec::new();
    for line in text.lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let injection = row["label"] == "injection";
        let sample = row["text"].as_str().unwrap();
        let flagged = !scanner.injection_in(sample).is_empty();
        let key = format!(
            "{}/{}",
            row["label"].as_str().unwrap(),
            row["category"].as_str().unwrap()
        );
        let entry = by_category.entry(key).or_default();
        entry.1 += 1;
        if flagged == injection {
            entry.0 += 1;
        } else {
            let j = sentinel_mcp::injection::Detector::new().judge(sample);
            misses.push(format!(
                "{} (score {:.1} {:?}) {:?}",
                if injection {
                    "missed"
                } else {
                    "false positive"
                },
                j.score,
                j.signals,
                sample
            ));
        }
        match (injection, flagged) {
            (true, true) => tp += 1,
            (true, false) => fnn += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
        }
    }
    let precision = f64::from(tp) / f64::from(tp + fp);
    let recall = f64::from(tp) / f64::from(tp + fnn);
    println!("injections {} benign {}", tp + fnn, tn + fp);
    println!("precision {precision:.3} recall {recall:.3} (tp {tp} fp {fp} tn {tn} fn {fnn})");
    for (category, (right, total)) in &by_category {
        println!("  {category}: {right}/{total} right");
    }
    for m in &misses {
        println!("  {m}");
    }
    assert!(
        tp + fnn >= 200 && tn + fp >= 200,
        "the corpus is the size the issue asks for"
    );
    assert!(precision >= 0.95, "precision {precision:.3}");
    assert!(recall >= 0.85, "recall {recall:.3}");
}
