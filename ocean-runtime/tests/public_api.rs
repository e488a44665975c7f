//! The public surface of `ocean-runtime`, checked against `public-api.txt` so that it changes only
//! on purpose: what the crate root, `prelude`, `error` and `testing` export, the exported macros,
//! and the signatures of the public items defined in `testing`. After a deliberate change, bless
//! the new list with `OCEAN_BLESS=1 cargo test -p ocean-runtime --test public_api` and review the
//! diff of `public-api.txt`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;

/// Public declarations of `text`: lines that start (after `indent` spaces) with `pub ` followed by
/// `use`, `mod`, `fn`, `async fn`, `struct`, `enum`, `trait`, `type` or `const`, joined with
/// their continuation lines up to the `;`, `{` or `=` that ends the declaration.
fn declarations(text: &str, indents: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    // The inline module (`pub mod name {`) a line is in, for lib.rs.
    let mut module = String::new();
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let public = [
            "pub use ",
            "pub mod ",
            "pub fn ",
            "pub async fn ",
            "pub struct ",
            "pub enum ",
            "pub trait ",
            "pub type ",
            "pub const ",
        ]
        .iter()
        .any(|p| trimmed.starts_with(p));
        if indent == 0 && trimmed.starts_with("pub mod ") && trimmed.ends_with('{') {
            module = trimmed["pub mod ".len()..]
                .trim_end_matches(" {")
                .to_owned();
        } else if indent == 0 && trimmed == "}" {
            module.clear();
        }
        if public && indents.contains(&indent) {
            let mut decl = trimmed.to_owned();
            let is_use = decl.starts_with("pub use ");
            while !(decl.ends_with(';')
                || (!is_use && (decl.ends_with('{') || decl.contains(" = "))))
            {
                i += 1;
                let Some(next) = lines.get(i) else { break };
                decl.push(' ');
                decl.push_str(next.trim());
            }
            let decl = decl
                .trim_end_matches('{')
                .trim()
                .replace("{ ", "{")
                .replace(", }", "}");
            if indent > 0 && !module.is_empty() {
                out.push(format!("{module}: {decl}"));
            } else {
                out.push(decl);
            }
        } else if let Some(rest) = trimmed.strip_prefix("macro_rules! ") {
            out.push(format!("macro {}!", rest.trim_end_matches(" {")));
        }
        i += 1;
    }
    out
}

fn surface() -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let read = |f: &str| std::fs::read_to_string(src.join(f)).unwrap();
    let mut out = String::new();
    let mut section = |title: &str, items: Vec<String>| {
        out.push_str(&format!("# {title}\n"));
        let mut items = items;
        items.sort();
        items.dedup();
        for item in items {
            out.push_str(&item);
            out.push('\n');
        }
        out.push('\n');
    };
    // The root and its inline modules (`prelude`, `error`, `__private`); macros of every file.
    section("lib.rs", declarations(&read("lib.rs"), &[0, 4]));
    let mut macros = Vec::new();
    for f in ["processor.rs", "state.rs"] {
        macros.extend(declarations(&read(f), &[]));
    }
    section("exported macros outside lib.rs", macros);
    for f in [
        "testing/mod.rs",
        "testing/binary.rs",
        "testing/redis_server.rs",
    ] {
        section(f, declarations(&read(f), &[0, 4]));
    }
    out
}

#[test]
fn the_public_surface_changes_only_on_purpose() {
    let listed = Path::new(env!("CARGO_MANIFEST_DIR")).join("public-api.txt");
    let now = surface();
    if std::env::var_os("OCEAN_BLESS").is_some() {
        std::fs::write(&listed, &now).unwrap();
        return;
    }
    let before = std::fs::read_to_string(&listed).unwrap_or_default();
    if before != now {
        let old: Vec<&str> = before.lines().collect();
        let new: Vec<&str> = now.lines().collect();
        for l in old.iter().filter(|l| !new.contains(l)) {
            eprintln!("- {l}");
        }
        for l in new.iter().filter(|l| !old.contains(l)) {
            eprintln!("+ {l}");
        }
        panic!(
            "the public surface changed (lines above); if on purpose, run \
             OCEAN_BLESS=1 cargo test -p ocean-runtime --test public_api and commit public-api.txt"
        );
    }
}
