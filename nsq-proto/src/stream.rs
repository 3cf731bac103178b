//! Stream layers for the mid-stream upgrades: TLS, snappy and deflate.
