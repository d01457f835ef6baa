//! Test harness: starts real warren processes on loopback.
