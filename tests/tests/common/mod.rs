//! What the authoring tests share: an app on one path with a one-resource mapping of kind `thing`.

#![allow(dead_code)]

use std::time::Duration;

use ocean_runtime::testing::{TestApp, TestAppBuilder};

/// How long a test waits for what it expects.
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// An app serving only `path`'s processors, with a one-resource mapping of kind `thing`.
pub(crate) fn on(path: &str) -> TestAppBuilder {
    TestApp::builder().paths(&[path]).mapping(THING_MAPPING)
}

/// A mapping of kind `thing` into blueprint `thing`, identified by `.id`.
pub(crate) const THING_MAPPING: &str = r#"
resources:
  - kind: thing
    selector:
      query: 'true'
    port:
      entity:
        mappings:
          identifier: .id
          blueprint: '"thing"'
"#;
