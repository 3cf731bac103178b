//! nsqlookupd: the V1 TCP registration protocol and the HTTP API types.
