//! Integration tests: statsd.
