//! The projection runtime (being written).
