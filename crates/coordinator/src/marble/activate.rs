//! One activation, step by step, with MarbleRun's gRPC status codes:
//!
//! | step | refusal |
//! |---|---|
//! | the Coordinator accepts Marbles (state 3) | `FailedPrecondition` |
//! | the TLS handshake proved a client certificate | `Unauthenticated` |
//! | the Marble type and its package exist; the quote is bound to the certificate and matches the package (and, outside simulation, verifies with its TCB accepted); `MaxActivations` not reached | `PermissionDenied` |
//! | the UUID parses and is not the nil UUID | `InvalidArgument` |
//! | certificate, secrets, templates | `Internal` |
//!
//! Every refusal is logged once for the operator (`warn`, `error` for internal failures) with
//! the Marble type, the UUID and the reason; the Marble gets the reason too, except for
//! internal failures, whose detail stays in the log.
//!
//! Concurrency: activations run in parallel. Only a Marble with `MaxActivations` takes the core
//! mutex, after everything else is done, to check and increment its persisted counter
//! (`activations:<type>`, lower-case hex as in MarbleRun) and commit; the budget therefore
//! holds under any interleaving. As in MarbleRun, the counter counts activations (a restarted
//! Marble counts again) and only for types with `MaxActivations` > 0.

use std::sync::Arc;

use quarry_manifest::Manifest;
use quarry_marble_api::{ActivationReq, Parameters};
use quarry_pki::SystemRandom;
use quarry_store::State;
use time::OffsetDateTime;
use tonic::Code;

use super::MarbleApi;
use super::params::{self, MarbleContext};
use super::verify::{self, QuoteRejection};
use crate::core::{CoordinatorState, keys};

/// Prefix of the activation counters in the state.
pub const ACTIVATIONS_PREFIX: &str = "activations:";

/// A refused activation: the status code, the message for the Marble, and what to log.
#[derive(Debug)]
pub struct Refusal {
    /// The gRPC status code.
    pub code: Code,
    /// The message sent to the Marble.
    pub message: String,
    /// The detail for the log (for internal failures; otherwise the message).
    pub detail: String,
}

impl Refusal {
    fn new(code: Code, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            code,
            detail: message.clone(),
            message,
        }
    }

    fn denied(reason: impl std::fmt::Display) -> Self {
        Self::new(
            Code::PermissionDenied,
            format!("marble verification failed: {reason}"),
        )
    }

    fn internal(public: &str, detail: impl Into<String>) -> Self {
        Self {
            code: Code::Internal,
            message: public.to_owned(),
            detail: detail.into(),
        }
    }
}

/// `activations:<type>`.
pub fn activations_key(marble_type: &str) -> Vec<u8> {
    format!("{ACTIVATIONS_PREFIX}{marble_type}").into_bytes()
}

/// The activation counter of `marble_type` (0 when absent).
pub fn activations(state: &State, marble_type: &str) -> Result<u64, Refusal> {
    let Some(value) = state.get(&activations_key(marble_type)) else {
        return Ok(0);
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| u64::from_str_radix(text, 16).ok())
        .ok_or_else(|| {
            Refusal::internal(
                "activation counter is unreadable",
                format!("sealed state value activations:{marble_type} is not hex"),
            )
        })
}

/// The UUID as MarbleRun's Go `uuid.Parse` reads it (canonical, `urn:uuid:`, braces, or 32 hex
/// digits); `None` for anything else. The nil UUID is returned; callers refuse it.
pub(crate) fn parse_go_uuid(text: &str) -> Option<uuid::Uuid> {
    let text = match text.get(..9) {
        Some(prefix) if text.len() == 45 && prefix.eq_ignore_ascii_case("urn:uuid:") => &text[9..],
        _ => text,
    };
    uuid::Uuid::parse_str(text).ok()
}

/// The UUID as MarbleRun's Go `uuid.Parse` reads it, refusing the nil UUID, as the activation's
/// error.
pub fn parse_uuid(text: &str) -> Result<uuid::Uuid, Refusal> {
    let invalid = |why: &str| {
        Refusal::new(
            Code::InvalidArgument,
            format!("invalid UUID {text:?}: {why}"),
        )
    };
    let uuid = parse_go_uuid(text).ok_or_else(|| invalid("not a uuid"))?;
    if uuid.is_nil() {
        return Err(invalid("the nil UUID is not a marble identity"));
    }
    Ok(uuid)
}

impl MarbleApi {
    /// Activates: see the module documentation. `peer` is the leaf certificate the TLS
    /// handshake proved.
    pub async fn activate(
        &self,
        peer: Option<Vec<u8>>,
        request: ActivationReq,
    ) -> Result<Parameters, Refusal> {
        let core = &self.core;
        if core.state() != CoordinatorState::AcceptingMarbles {
            return Err(Refusal::new(
                Code::FailedPrecondition,
                format!(
                    "cannot accept marbles in current state: {}",
                    core.state().message()
                ),
            ));
        }
        let peer =
            peer.ok_or_else(|| Refusal::new(Code::Unauthenticated, "no tls client certificate"))?;
        let snapshot = core.snapshot();
        let ca = core.ca();
        let manifest = self.manifest(&snapshot)?;

        let marble_type = request.marble_type.as_str();
        let marble = manifest
            .marbles
            .get(marble_type)
            .ok_or_else(|| Refusal::denied("unknown marble type requested"))?;
        let package = keys::package(&snapshot, &marble.package)
            .map_err(|e| Refusal::internal("sealed state", e.to_string()))?
            .ok_or_else(|| Refusal::denied(format!("package {} not found", marble.package)))?;
        let simulation = core.enclave().is_simulation();
        match verify::check_binding_and_package(&request.quote, &peer, &marble.package, &package) {
            Ok(parsed) if !simulation => verify::check_signature_and_tcb(
                &request.quote,
                &parsed,
                &package,
                self.collateral.as_ref(),
                &self.verifier,
            )
            .await
            .map_err(Refusal::denied)?,
            Ok(_) => {}
            Err(QuoteRejection::Empty) if simulation => {
                tracing::warn!(
                    marble_type = ?marble_type,
                    uuid = ?request.uuid,
                    "insecure simulation: accepting a marble with an empty quote"
                );
            }
            Err(rejection) => return Err(Refusal::denied(rejection)),
        }
        if marble.max_activations > 0
            && activations(&snapshot, marble_type)? >= marble.max_activations
        {
            return Err(Refusal::denied(format!(
                "reached maximum number of {} activations for marble type {marble_type}",
                marble.max_activations
            )));
        }
        let uuid = parse_uuid(&request.uuid)?;

        let work = {
            let manifest = Arc::clone(&manifest);
            let snapshot = Arc::clone(&snapshot);
            let ca = Arc::clone(&ca);
            let marble_type = marble_type.to_owned();
            let csr = request.csr.clone();
            move || build(&manifest, &snapshot, &ca, &marble_type, uuid, &csr)
        };
        let parameters = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| Refusal::internal("activation failed", e.to_string()))??;

        if marble.max_activations > 0 {
            let core = Arc::clone(&self.core);
            let marble_type = marble_type.to_owned();
            let max = marble.max_activations;
            tokio::task::spawn_blocking(move || count_activation(&core, &ca, &marble_type, max))
                .await
                .map_err(|e| Refusal::internal("activation failed", e.to_string()))??;
        }
        Ok(parameters)
    }

    /// The decoded manifest of `state`, cached while the raw bytes stay the same.
    fn manifest(&self, state: &State) -> Result<Arc<Manifest>, Refusal> {
        let raw = keys::manifest(state)
            .ok_or_else(|| Refusal::new(Code::FailedPrecondition, "no manifest has been set"))?;
        let mut cache = self
            .manifest_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((bytes, manifest)) = cache.as_ref()
            && bytes.as_slice() == raw
        {
            return Ok(Arc::clone(manifest));
        }
        let document = quarry_manifest::ManifestDocument::from_json(raw.to_vec())
            .map_err(|e| Refusal::internal("stored manifest is invalid", e.to_string()))?;
        let manifest = Arc::new(document.manifest().clone());
        *cache = Some((raw.to_vec(), Arc::clone(&manifest)));
        Ok(manifest)
    }
}

/// The Marble's certificate, secrets and rendered parameters (CPU-bound).
fn build(
    manifest: &Manifest,
    state: &State,
    ca: &quarry_pki::CoordinatorCa,
    marble_type: &str,
    uuid: uuid::Uuid,
    csr: &[u8],
) -> Result<Parameters, Refusal> {
    let now = OffsetDateTime::now_utc();
    let uuid = *uuid.as_bytes();
    let credentials = ca
        .issue_marble_certificate(csr, marble_type, &uuid, now, &SystemRandom)
        .map_err(|e| {
            let detail = crate::core::error_chain(&e);
            Refusal::internal(&format!("issuing the marble certificate: {detail}"), detail)
        })?;
    let ctx = MarbleContext {
        manifest,
        state,
        ca,
        credentials: &credentials,
        marble_type,
        uuid: &uuid,
        now,
    };
    let data = params::template_data(&ctx).map_err(|e| {
        let detail = crate::core::error_chain(&e);
        Refusal::internal("generating the marble's secrets", detail)
    })?;
    params::render(&ctx, &data).map_err(|e| {
        // Template problems name paths and encoders, never secret bytes.
        let detail = crate::core::error_chain(&e);
        Refusal::internal(&format!("activation failed: {detail}"), detail)
    })
}

/// Checks the budget again under the core mutex, increments the counter and commits.
fn count_activation(
    core: &crate::core::Core,
    ca: &Arc<quarry_pki::CoordinatorCa>,
    marble_type: &str,
    max: u64,
) -> Result<(), Refusal> {
    let _guard = core.lock();
    if core.state() != CoordinatorState::AcceptingMarbles || !Arc::ptr_eq(&core.ca(), ca) {
        return Err(Refusal::new(
            Code::FailedPrecondition,
            "the coordinator's state changed during activation; activate again",
        ));
    }
    let count = activations(&core.snapshot(), marble_type)?;
    if count >= max {
        return Err(Refusal::denied(format!(
            "reached maximum number of {max} activations for marble type {marble_type}"
        )));
    }
    let mut tx = core.store().begin();
    tx.put(activations_key(marble_type), format!("{:x}", count + 1));
    tx.commit().map_err(|e| {
        Refusal::internal(
            "storing the activation counter",
            crate::core::error_chain(&e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_45_byte_uuid_with_a_character_across_byte_9_is_refused_not_a_panic() {
        // "urn:uuid" then "é" (2 bytes) straddling byte 9, padded to 45 bytes.
        let text = format!("urn:uuid\u{e9}{}", "0".repeat(35));
        assert_eq!(text.len(), 45);
        assert_eq!(parse_uuid(&text).unwrap_err().code, Code::InvalidArgument);
    }

    #[test]
    fn uuids_in_gos_forms_and_nil_refused() {
        let canonical = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        for form in [
            canonical.to_owned(),
            canonical.to_uppercase(),
            format!("urn:uuid:{canonical}"),
            format!("URN:UUID:{canonical}"),
            format!("{{{canonical}}}"),
            canonical.replace('-', ""),
        ] {
            assert_eq!(parse_uuid(&form).unwrap().to_string(), canonical, "{form}");
        }
        for bad in [
            "",
            "not-a-uuid",
            "6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(
                parse_uuid(bad).unwrap_err().code,
                Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
