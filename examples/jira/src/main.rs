//! The Jira-like example's binary: `cargo run -p ocean-example-jira`.

// Mention the library so the linker keeps its processor registrations.
use ocean_example_jira as _;

ocean_runtime::main!(state = ocean_example_jira::Jira::connect);
