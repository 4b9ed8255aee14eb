//! Activating a Marble over the Marble API from a test: a simulated quote with the identity of
//! the tests' package, and the premain's client over real TLS. Shared by the Marble API tests and
//! the tests of endpoints that Marbles call with the certificate they received.

use std::sync::Arc;

use quarry_enclave::Enclave;
use quarry_enclave::simulation::{Simulation, SimulationSettings};
use quarry_marble_api::{ActivationReq, Parameters};
use quarry_premain::client::{ServerTrust, activate_once, client_config};
use quarry_premain::identity::MarbleIdentity;
use quarry_testkit::coordinator::Coordinator;

/// The MRSIGNER of the simulated quotes (package `pkg` of the tests' manifests).
pub(crate) const SIGNER: &str = "abababababababababababababababababababababababababababababababab";

/// The premain's client over real TLS, with a quote made here.
pub(crate) struct Client {
    pub(crate) addr: String,
    pub(crate) runtime: tokio::runtime::Runtime,
}

impl Client {
    pub(crate) fn new(c: &mut Coordinator) -> Self {
        Self {
            addr: c.service().addr("marble_api").to_string(),
            runtime: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    pub(crate) fn send(
        &self,
        identity: &MarbleIdentity,
        quote: Vec<u8>,
        marble_type: &str,
        uuid: &str,
    ) -> Result<Parameters, tonic::Status> {
        let tls = Arc::new(client_config(identity, &ServerTrust::Unverified).unwrap());
        let request = ActivationReq {
            quote,
            csr: identity.csr_der().to_vec(),
            marble_type: marble_type.to_owned(),
            uuid: uuid.to_owned(),
        };
        self.runtime
            .block_on(activate_once(&self.addr, tls, request))
    }
}

/// A simulated quote with the tests' identity (MRSIGNER [`SIGNER`], ISVPRODID 3, ISVSVN 2).
pub(crate) fn simulated_quote(report_data: &[u8; 64]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = SimulationSettings::new(dir.path());
    settings.identity.mrsigner = hex::decode(SIGNER).unwrap().try_into().unwrap();
    settings.identity.isv_prod_id = 3;
    settings.identity.isv_svn = 2;
    let sim = Simulation::new(settings).unwrap();
    quarry_enclave::quote::with_open_enclave_header(&sim.quote(report_data).unwrap())
}
