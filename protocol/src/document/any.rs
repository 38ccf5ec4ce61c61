//! (being written) The `Document` enum over every document type.

/// Any document (being written).
#[derive(Debug, Clone)]
pub enum Document {}
