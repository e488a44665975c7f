//! The GitHub example's binary:
//! `OCEAN__INTEGRATION__CONFIG__WEBHOOK_SECRET=dev-secret cargo run -p ocean-example-github`.

// Mention the library so the linker keeps its processor registrations.
use ocean_example_github as _;

ocean_runtime::main!();
