//! `docs/configuration.md` lists every environment variable the binaries read, so the table
//! cannot drift from the code: every `"QUARRY_…"`, `"EDG_…"` and `"OE_…"` string literal in the
//! crates' sources (`src/`, `benches/`, `build.rs`; tests set variables for the binaries and
//! are left out) must name a variable of the table. A literal that ends in `_` is a prefix
//! (`starts_with("QUARRY_INSECURE_")`) and must begin at least one documented name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The families of variables that the table must cover.
const PREFIXES: [&str; 3] = ["QUARRY_", "EDG_", "OE_"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The backticked names in the first cell of each table row.
fn documented(doc: &str) -> BTreeSet<String> {
    doc.lines()
        .filter_map(|line| line.strip_prefix('|'))
        .filter_map(|row| row.split('|').next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .map(str::to_owned)
        .collect()
}

/// The string literals of `text` that consist of one variable name of [`PREFIXES`].
fn literals(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices('"') {
        let rest = &text[at + 1..];
        if !PREFIXES.iter().any(|p| rest.starts_with(p)) {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if rest[end..].starts_with('"') {
            found.push(rest[..end].to_owned());
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every variable literal of the crates' sources, with the files that name it.
fn source_literals() -> BTreeMap<String, BTreeSet<String>> {
    let root = workspace();
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let krate = krate.unwrap().path();
        rust_files(&krate.join("src"), &mut files);
        rust_files(&krate.join("benches"), &mut files);
        let build = krate.join("build.rs");
        if build.is_file() {
            files.push(build);
        }
    }
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        for name in literals(&text) {
            found.entry(name).or_default().insert(shown.clone());
        }
    }
    found
}

fn covered(name: &str, documented: &BTreeSet<String>) -> bool {
    if name.ends_with('_') {
        documented.iter().any(|d| d.starts_with(name))
    } else {
        documented.contains(name)
    }
}

#[test]
fn configuration_doc_lists_every_variable_the_sources_name() {
    let doc = std::fs::read_to_string(workspace().join("docs/configuration.md")).unwrap();
    let documented = documented(&doc);
    let found = source_literals();
    // The scan itself works: it sees variables of the Coordinator, the premain and the CLI.
    for known in [
        "EDG_COORDINATOR_CLIENT_ADDR",
        "EDG_MARBLE_TYPE",
        "QUARRY_PCCS_URL",
    ] {
        assert!(found.contains_key(known), "the scan missed {known}");
    }

    let missing: Vec<String> = found
        .iter()
        .filter(|(name, _)| !covered(name, &documented))
        .map(|(name, files)| {
            let files: Vec<&str> = files.iter().map(String::as_str).collect();
            format!("{name} (in {})", files.join(", "))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md lacks a table row for: {}",
        missing.join("; ")
    );
}

#[test]
fn scanner_reads_table_names_and_whole_literals_only() {
    let doc = "| variable | x |\n|---|---|\n| `EDG_A` | `QUARRY_NOT_A_NAME` |\n\
               | `XDG_CONFIG_HOME`, `HOME` | y |\ntext `QUARRY_PROSE`\n";
    let names = documented(doc);
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["EDG_A", "HOME", "XDG_CONFIG_HOME"]
    );

    let code = r#"get("EDG_A"); env = "QUARRY_B_C"; starts_with("QUARRY_D_");
        "set QUARRY_E or QUARRY_F"; "quarry_g"; "OE_SIMULATION""#;
    assert_eq!(
        literals(code),
        ["EDG_A", "QUARRY_B_C", "QUARRY_D_", "OE_SIMULATION"]
    );

    let documented: BTreeSet<String> = ["QUARRY_D_X".to_owned()].into();
    assert!(covered("QUARRY_D_", &documented));
    assert!(!covered("QUARRY_D", &documented));
    assert!(!covered("QUARRY_E_", &documented));
}
