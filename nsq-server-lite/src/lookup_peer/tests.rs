//! Tests of the lookup peers.
