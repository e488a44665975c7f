//! Collecting every problem of one macro call, to report them together.
//!
//! A [`Diag`] must be ended with [`Diag::finish`] or [`Diag::fail`]: dropping it with problems
//! unreported would compile the user's mistake silently, so that is a bug in this crate, and the
//! drop panics (serde_derive's `Ctxt` does the same). A panic in a proc macro is a compile error
//! at the macro call, never a silently accepted attribute.

use std::fmt::Display;

use proc_macro2::Span;

/// Every problem found in one macro call; reported together.
#[derive(Default)]
pub(crate) struct Diag {
    errors: Option<syn::Error>,
    ended: bool,
}

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
        match &mut self.errors {
            Some(all) => all.combine(e),
            None => self.errors = Some(e),
        }
    }

    /// Ends the collection: `ok` when nothing was reported, else every problem.
    pub(crate) fn finish<T>(mut self, ok: T) -> syn::Result<T> {
        self.ended = true;
        self.errors.take().map_or(Ok(ok), Err)
    }

    /// Ends the collection at an error that stops parsing: every problem reported before it,
    /// then it.
    pub(crate) fn fail(mut self, e: syn::Error) -> syn::Error {
        self.ended = true;
        match self.errors.take() {
            Some(mut all) => {
                all.combine(e);
                all
            }
            None => e,
        }
    }
}

impl Drop for Diag {
    fn drop(&mut self) {
        if !self.ended && !std::thread::panicking() {
            panic!(
                "ocean-macros bug: problems were collected and never reported (Diag dropped unfinished)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_before_a_parse_error_are_kept() {
        let mut diag = Diag::default();
        diag.at_span(Span::call_site(), "first");
        let all = diag.fail(syn::Error::new(Span::call_site(), "second"));
        let messages: Vec<String> = all.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    #[should_panic(expected = "Diag dropped unfinished")]
    fn an_unfinished_diag_is_a_bug() {
        let mut diag = Diag::default();
        diag.at_span(Span::call_site(), "lost");
    }

    #[test]
    fn a_finished_diag_drops_quietly() {
        let diag = Diag::default();
        assert!(diag.finish(()).is_ok());
    }
}
