//! Collecting every problem of one macro call, to report them together.

use std::fmt::Display;

use proc_macro2::Span;

/// Every problem found in one macro call; reported together.
#[derive(Default)]
pub(crate) struct Diag(Option<syn::Error>);

impl Diag {
    /// A problem spanning `what`'s tokens.
    pub(crate) fn at(&mut self, what: impl quote::ToTokens, msg: impl Display) {
        self.push(syn::Error::new_spanned(what, msg));
    }

    /// A problem at `span`.
    pub(crate) fn at_span(&mut self, span: Span, msg: impl Display) {
        self.push(syn::Error::new(span, msg));
    }

    /// Adds an error (which may already hold several).
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    /// `ok` when nothing was reported, else every problem.
    pub(crate) fn finish<T>(self, ok: T) -> syn::Result<T> {
        self.0.map_or(Ok(ok), Err)
    }
}
