//! Compile-time checks: every `ui/fail/*.rs` must fail with its reviewed `.stderr`, every
//! `ui/pass/*.rs` must compile. Regenerate with `TRYBUILD=overwrite cargo test -p ocean-tests --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
