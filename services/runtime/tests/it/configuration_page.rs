//! docs/configuration.md (linked from README.md) lists every environment variable the
//! services read, and nothing they do not.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Whether `name` is the name of an environment variable foodseg reads.
fn is_variable(name: &str) -> bool {
    name.starts_with("FOODSEG_")
        || name.starts_with("OTEL_")
        || matches!(
            name,
            "DATABASE_URL" | "NATS_URL" | "ORT_DYLIB_PATH" | "RUST_LOG" | "HOSTNAME"
        )
}

/// The variable names in string literals of the services' code (test modules excluded:
/// what a test sets is not configuration).
fn variables_in_code() -> BTreeSet<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo().join("services")).expect("services/") {
        let src = entry.expect("dir entry").path().join("src");
        if src.is_dir() && !src.starts_with(repo().join("services/testkit")) {
            sources(&src, &mut files);
        }
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for literal in code.split('"').skip(1).step_by(2) {
            if is_variable(literal)
                && literal
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                names.insert(literal.to_string());
            }
        }
    }
    names
}

/// The variables named in docs/configuration.md's tables (`` | `NAME` | … ``).
fn variables_in_docs() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo().join("docs/configuration.md"))
        .expect("docs/configuration.md");
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| is_variable(name))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_configuration_page_lists_every_variable_the_code_reads() {
    let code = variables_in_code();
    assert!(
        code.contains("DATABASE_URL") && code.contains("FOODSEG_API_ADDR"),
        "the scan finds variables: {code:?}"
    );
    let readme = variables_in_docs();
    let missing: Vec<_> = code.difference(&readme).collect();
    assert!(
        missing.is_empty(),
        "read by the code but not listed in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn the_configuration_page_lists_no_variable_the_code_does_not_read() {
    let code = variables_in_code();
    let stale: Vec<_> = variables_in_docs()
        .into_iter()
        .filter(|name| name.starts_with("FOODSEG_") && !code.contains(name))
        .collect();
    assert!(
        stale.is_empty(),
        "listed in docs/configuration.md but read by no code: {stale:?}"
    );
}
