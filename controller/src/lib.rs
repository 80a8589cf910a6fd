//! skein-controller (placeholder until its issue lands).
