//! The binary of the facade check: `main!` with `crate = "engine"`.

use ocean_facade_test as _;

engine::main!(crate = "engine");
