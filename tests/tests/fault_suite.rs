//! The fault suite stays whole: every test docs/RELIABILITY.md names exists and is run by
//! `tests/faults/run.sh`, and every test the script runs exists.

use std::collections::BTreeSet;
use std::path::Path;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `(package directory, test name)` of each test file a package has.
fn test_file(package: &str, test: &str) -> std::path::PathBuf {
    let dir = match package {
        "causeway-tests" => "tests",
        other => other.strip_prefix("causeway-").unwrap_or(other),
    };
    Path::new(ROOT)
        .join(dir)
        .join("tests")
        .join(format!("{test}.rs"))
}

#[test]
fn every_documented_fault_test_exists_and_is_in_the_suite() {
    let script = std::fs::read_to_string(Path::new(ROOT).join("tests/faults/run.sh")).unwrap();
    let suite: BTreeSet<(String, String)> = script
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('"')?
                .strip_suffix('"')
                .map(str::to_string)
        })
        .filter_map(|entry| {
            let mut words = entry.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    assert!(suite.len() >= 10, "{suite:?}");
    for (package, test) in &suite {
        let file = test_file(package, test);
        assert!(
            file.exists(),
            "run.sh names {package} {test}, but {} is missing",
            file.display()
        );
    }
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/RELIABILITY.md")).unwrap();
    let mut documented = 0;
    for cell in doc.split('`').skip(1).step_by(2) {
        let Some((dir, rest)) = cell.split_once("/tests/") else {
            continue;
        };
        let Some(test) = rest.strip_suffix(".rs").filter(|t| !t.contains('/')) else {
            continue;
        };
        documented += 1;
        let package = match dir {
            "tests" => "causeway-tests".to_string(),
            d => format!("causeway-{d}"),
        };
        assert!(
            test_file(&package, test).exists(),
            "docs/RELIABILITY.md names {cell}, which does not exist"
        );
        assert!(
            suite.contains(&(package.clone(), test.to_string())),
            "docs/RELIABILITY.md names {cell}; tests/faults/run.sh does not run it"
        );
    }
    assert!(documented >= 10, "the table names its tests: {documented}");
}
