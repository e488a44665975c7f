//! Meaning checks on the parsed attribute; every problem is collected.

use std::collections::HashSet;

use syn::{FnArg, ItemFn, LitStr, ReturnType, Type};

use super::args::{Args, call_site};
use crate::jq_check;

/// A valid processor, ready to expand.
pub(super) struct Model {
    pub(super) path: LitStr,
    pub(super) kinds: Vec<LitStr>,
    pub(super) matches: Option<LitStr>,
    pub(super) name: LitStr,
    pub(super) func: ItemFn,
}

fn check_path(path: &LitStr, diag: &mut crate::diag::Diag) {
    let value = path.value();
    if !value.starts_with('/') {
        diag.at(
            path,
            format!(
                "`path` must start with `/`, e.g. \"/{}\"",
                value.trim_start_matches('/')
            ),
        );
    } else if value.len() > 1 && value[1..].split('/').any(str::is_empty) {
        diag.at(path, "`path` has an empty segment (`//` or a trailing `/`)");
    }
    if value
        .chars()
        .any(|c| c.is_whitespace() || c == '?' || c == '#' || c == '{' || c == '}')
    {
        diag.at(path, "`path` may not contain spaces, `?`, `#`, `{` or `}`");
    }
}

fn check_signature(func: &ItemFn, diag: &mut crate::diag::Diag) {
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        diag.at(sig.fn_token, "a webhook processor must be an `async fn`");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        diag.at(&sig.generics, "a webhook processor cannot be generic");
    }
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(r) => diag.at(
                r,
                "a webhook processor cannot take `self`; write a free `async fn`",
            ),
            FnArg::Typed(arg) => {
                if !matches!(&*arg.ty, Type::Reference(r) if r.mutability.is_none()) {
                    diag.at(
                        &arg.ty,
                        "unsupported argument type; a webhook processor takes `&WebhookEvent`",
                    );
                }
            }
        }
    }
    if sig.inputs.len() > 1 {
        diag.at(
            &sig.inputs,
            "a webhook processor takes one argument, `&WebhookEvent`",
        );
    }
    if let ReturnType::Default = sig.output {
        diag.at(
            &sig.ident,
            "a webhook processor must return `Result<RawResults, ProcessError>`",
        );
    }
}

/// Checks the attribute and the fn.
pub(super) fn check(args: Args) -> syn::Result<Model> {
    let Args {
        path,
        kinds,
        matches,
        name,
        func,
        mut diag,
    } = args;
    match &path {
        Some(p) => check_path(p, &mut diag),
        None => diag.at_span(
            call_site(),
            "missing `path = \"/...\"`: the path under /integration this processor listens on",
        ),
    }
    match &kinds {
        None => diag.at_span(
            call_site(),
            "missing `kinds = [\"...\"]`: the mapping kinds this processor produces",
        ),
        Some(k) if k.list.is_empty() => diag.at(&k.key, "`kinds` is empty; list at least one kind"),
        Some(k) => {
            let mut seen = HashSet::new();
            for kind in &k.list {
                if kind.value().is_empty() {
                    diag.at(kind, "a kind cannot be empty");
                } else if !seen.insert(kind.value()) {
                    diag.at(kind, format!("kind `{}` is listed twice", kind.value()));
                }
            }
        }
    }
    if let Some(m) = &matches {
        jq_check::check("matches", m, &mut diag);
    }
    if let Some(n) = &name
        && n.value().trim().is_empty()
    {
        diag.at(n, "`name` cannot be empty");
    }
    check_signature(&func, &mut diag);
    let name =
        name.unwrap_or_else(|| LitStr::new(&func.sig.ident.to_string(), func.sig.ident.span()));
    let model = match (path, kinds) {
        (Some(path), Some(kinds)) => Some(Model {
            path,
            kinds: kinds.list,
            matches,
            name,
            func,
        }),
        _ => None,
    };
    match (diag.finish(()), model) {
        (Ok(()), Some(model)) => Ok(model),
        (Err(e), _) => Err(e),
        (Ok(()), None) => Err(syn::Error::new(call_site(), "missing `path` or `kinds`")),
    }
}
