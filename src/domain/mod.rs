//! The bottom layer: the words every other layer shares — data classes, permissions, purposes, durations.
//!
//! Nothing here imports another veil module; everything else may import this.

pub mod class;
pub mod duration;
pub mod path;
pub mod permission;
pub mod purpose;

pub use class::{Class, ClassSet};
pub use permission::{Op, Permission};
