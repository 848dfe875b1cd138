//! Integration tests: fail2ban_live.
