//! Integration tests of the emulator: the real binary on loopback, driven over HTTPS.
