//! Integration tests of the manifest crate: every check with a passing and a failing case
//! (written from the MarbleRun reference), decoding of the shapes MarbleRun users write, the
//! `AzureHSMSealing` environment rule, update rules, and properties of the decoder.

mod checks;
mod decoding;
mod hsm;
mod pem_text;
mod props;
mod support;
mod updates;
