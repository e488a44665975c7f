//! A small read-only HTML view of the built-in Port: `GET /` lists the blueprints with their entity
//! counts, `GET /ui/blueprints/{blueprint}` lists that blueprint's entities. No token needed; the
//! built-in Port listens on loopback by default.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;

use super::Shared;

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment.
fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}}\
         pre{{margin:0;font-size:.85em}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    ))
}

/// `GET /`: the blueprints and how many entities each has.
pub(super) async fn index(State(shared): State<Arc<Shared>>) -> Html<String> {
    let counts: BTreeMap<String, usize> = shared.store.read(|s| {
        let mut counts = BTreeMap::new();
        for (bp, _) in s.entities.keys() {
            *counts.entry(bp.clone()).or_default() += 1;
        }
        counts
    });
    let mut body = String::from(
        "<p>The built-in local Port of ocean-rs (read-only view).</p>\
         <table><tr><th>blueprint</th><th>entities</th></tr>",
    );
    for (bp, n) in &counts {
        let _ = write!(
            body,
            "<tr><td><a href=\"/ui/blueprints/{}\">{}</a></td><td>{n}</td></tr>",
            segment(bp),
            esc(bp)
        );
    }
    body.push_str("</table>");
    if counts.is_empty() {
        body.push_str("<p>No entities yet.</p>");
    }
    page("Built-in Port", &body)
}

/// `GET /ui/blueprints/{blueprint}`: its entities.
pub(super) async fn blueprint(
    State(shared): State<Arc<Shared>>,
    Path(blueprint): Path<String>,
) -> Html<String> {
    let rows: Vec<(String, String, String)> = shared.store.read(|s| {
        s.entities_of(&blueprint)
            .map(|(id, st)| {
                let title = st.entity["title"].as_str().unwrap_or_default().to_owned();
                let rest = serde_json::json!({
                    "properties": st.entity.get("properties"),
                    "relations": st.entity.get("relations"),
                });
                (
                    id.to_owned(),
                    title,
                    serde_json::to_string_pretty(&rest).unwrap_or_default(),
                )
            })
            .collect()
    });
    let mut body = format!(
        "<p><a href=\"/\">all blueprints</a> · {} entities</p>\
         <table><tr><th>identifier</th><th>title</th><th>properties and relations</th></tr>",
        rows.len()
    );
    for (id, title, rest) in &rows {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
            esc(id),
            esc(title),
            esc(rest)
        );
    }
    body.push_str("</table>");
    page(&blueprint, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_segments_encoded() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(segment("jira Issue/1"), "jira%20Issue%2F1");
    }
}
