//! Project automation: `cargo xtask e2e | bench | ci`.

fn main() {}
