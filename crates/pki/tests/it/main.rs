//! Integration tests of `quarry-pki`. Certificates are checked field by field with
//! x509-parser and, where a second implementation matters, with the `openssl` command-line
//! tool (chains, recovery-secret decryption, signatures, HKDF).

mod ca;
mod derivation;
mod marble;
mod recovery;
mod secret_certs;
mod shamir;
mod support;
