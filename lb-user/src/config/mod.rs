//! Configuration (`lb.toml`). Being written.
