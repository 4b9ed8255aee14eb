//! The Marble's quote: from the enclave backend `quarry-enclave` selects (Gramine's
//! `/dev/attestation`, or the simulation with `QUARRY_INSECURE_SIMULATION=1`), over the report
//! data that binds the TLS certificate, with the Open Enclave header MarbleRun's Coordinator
//! expects in front.
//!
//! When no backend is available, the quote is empty and a warning says so: MarbleRun's Marbles
//! do the same, and only a Coordinator in simulation accepts an empty quote.
//!
//! The premain needs no seal key, so the simulation's key file goes to a temporary directory
//! that is removed as soon as the quote is made.

use std::path::Path;

use quarry_enclave::gramine::DEFAULT_ROOT;

/// A quote over `report_data` with the Open Enclave header, or an empty quote when no enclave
/// backend can make one. `env` looks up environment variables.
pub fn make_quote(report_data: &[u8; 64], env: &dyn Fn(&str) -> Option<String>) -> Vec<u8> {
    make_quote_at(Path::new(DEFAULT_ROOT), report_data, env)
}

/// [`make_quote`] with the attestation root at `attestation_root` (tests point it elsewhere).
pub fn make_quote_at(
    attestation_root: &Path,
    report_data: &[u8; 64],
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<u8> {
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            tracing::warn!(%error, "no temporary directory for the enclave backend: sending an empty quote");
            return Vec::new();
        }
    };
    let quote = quarry_enclave::select(attestation_root, scratch.path(), env)
        .and_then(|enclave| enclave.quote(report_data));
    match quote {
        Ok(quote) => quarry_enclave::quote::with_open_enclave_header(&quote),
        Err(error) => {
            tracing::warn!(
                error = %error_chain(&error),
                "no quote could be made: sending an empty quote, which only a coordinator in \
                 simulation accepts"
            );
            Vec::new()
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_enclave::quote::Quote;

    #[test]
    fn simulation_quote_binds_the_report_data() {
        let root = tempfile::tempdir().unwrap();
        let absent = root.path().join("no-attestation");
        let env = |k: &str| match k {
            "QUARRY_INSECURE_SIMULATION" => Some("1".to_owned()),
            "QUARRY_INSECURE_SIM_ISVPRODID" => Some("7".to_owned()),
            _ => None,
        };
        let data = [0x5a; 64];
        let quote = make_quote_at(&absent, &data, &env);
        let parsed = Quote::parse(&quote).unwrap();
        assert!(parsed.open_enclave_header);
        assert_eq!(parsed.report_body.report_data, data);
        assert_eq!(parsed.report_body.isv_prod_id, 7);
    }

    #[test]
    fn no_backend_means_an_empty_quote() {
        let root = tempfile::tempdir().unwrap();
        let absent = root.path().join("no-attestation");
        assert!(make_quote_at(&absent, &[0; 64], &|_| None).is_empty());
    }
}
