//! Checks that docs/FORMAT.md and the constants in format.rs agree.
