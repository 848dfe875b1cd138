//! Integration tests: otlp.
