//! docs/operations.md lists every setting in one table. This test reads the settings code
//! (every key passed to the config readers, and every key constant in a settings module)
//! and `.env.example`, and fails naming each key the table is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use regex::Regex;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every environment key the processes' code reads.
fn keys_read_by_the_code() -> BTreeSet<String> {
    // A reader called with a literal key: `parse_or("KEY", ..)`, `secret(env, "KEY")`, ...
    let reader = Regex::new(
        r#"\b(?:var|parse_or(?:::<[^>]+>)?|string_or|bool_or|duration_or|duration_list_or|secret|at_least_one|duration_at_least)\(\s*(?:env,\s*)?"([A-Z][A-Z0-9_]{2,})""#,
    )
    .unwrap();
    // A key kept in a constant, as the telemetry and secret settings do.
    let constant =
        Regex::new(r#"const [A-Za-z_]+: &(?:'static )?str = "([A-Z][A-Z0-9_]{2,})";"#).unwrap();
    let mut files = Vec::new();
    for dir in [
        "shared/src",
        "core/src",
        "web/src",
        "api-service/src",
        "dispatcher/src",
        "modem-agent/src",
        "tools/mock-hkt/src",
    ] {
        rust_files(&root().join(dir), &mut files);
    }
    let mut keys = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Tests set keys of their own; only what a process reads counts.
        let code = text.split("#[cfg(test)]").next().unwrap();
        keys.extend(reader.captures_iter(code).map(|c| c[1].to_owned()));
        let name = file.to_string_lossy();
        if ["settings", "config", "secret_box", "metrics"]
            .iter()
            .any(|part| name.contains(part))
        {
            keys.extend(constant.captures_iter(code).map(|c| c[1].to_owned()));
        }
    }
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let assignment = Regex::new(r"(?m)^#?\s*([A-Z][A-Z0-9_]{2,})=").unwrap();
    keys.extend(assignment.captures_iter(&example).map(|c| c[1].to_owned()));
    keys
}

/// The first column of the settings table: `| `KEY` | ...`.
fn keys_in_the_table() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let row = Regex::new(r"(?m)^\| `([A-Z][A-Z0-9_]{2,})` \|").unwrap();
    row.captures_iter(&doc).map(|c| c[1].to_owned()).collect()
}

#[test]
fn every_setting_the_code_reads_is_in_the_operations_table() {
    let read = keys_read_by_the_code();
    // The scan must find the settings it is meant to find, or it proves nothing.
    for key in [
        "RETRY_SCHEDULE",
        "QUORUM_QUEUES",
        "WEBHOOK_SECRET_KEYS",
        "OTEL_TRACES_SAMPLER",
    ] {
        assert!(read.contains(key), "the scan missed {key}");
    }
    let table = keys_in_the_table();
    let missing: Vec<_> = read.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md's settings table lacks {missing:?}"
    );
    let unknown: Vec<_> = table.difference(&read).collect();
    // Read by libraries, not by our readers: tracing's EnvFilter and the OTLP exporter.
    let by_libraries = ["RUST_LOG", "OTEL_EXPORTER_OTLP_HEADERS"];
    assert!(
        unknown.iter().all(|k| by_libraries.contains(&k.as_str())),
        "the table lists settings no code reads: {unknown:?}"
    );
}
