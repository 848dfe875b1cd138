//! Integration tests: remote_write.
