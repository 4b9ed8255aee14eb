//! Collateral fetched through the fake PCCS verifies like the collateral file, and the client
//! handles the PCCS's variants and faults.

use std::sync::Arc;
use std::time::Duration;

use quarry_enclave::pccs::{PccsClient, PccsError};
use quarry_enclave::quote::{PckCa, Quote};
use quarry_enclave::verify::{FixedClock, TcbStatus, Verifier, VerifyError};
use quarry_testkit::pccs::{Behaviour, FakePccs};

use crate::fixtures::{VALID_UNTIL, real_collateral, real_quote, sgx_dir};

const INSIDE: i64 = 1_750_340_000;

async fn fake(tls: bool) -> FakePccs {
    let json = std::fs::read(sgx_dir().join("dcap-qvl-sample.collateral.json")).unwrap();
    FakePccs::start(&json, "processor", tls).await.unwrap()
}

fn client(pccs: &FakePccs) -> PccsClient {
    PccsClient::new(&pccs.url(), pccs.ca_pem().map(str::as_bytes))
        .unwrap()
        .with_clock(Arc::new(FixedClock(INSIDE)))
}

fn quote() -> Quote {
    Quote::parse(&real_quote()).unwrap()
}

#[tokio::test]
async fn fetched_collateral_equals_the_file_and_verifies_the_same() {
    for tls in [false, true] {
        let pccs = fake(tls).await;
        let collateral = client(&pccs).collateral_for_quote(&quote()).await.unwrap();
        assert_eq!(
            collateral.as_dcap(),
            real_collateral().as_dcap(),
            "tls {tls}"
        );
        assert_eq!(
            pccs.requests(),
            [
                "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
                "/sgx/certification/v4/tcb?fmspc=00A067110000&update=standard",
                "/sgx/certification/v4/qe/identity?update=standard",
                "/sgx/certification/v4/rootcacrl",
            ]
        );
        let verifier = Verifier::new(Arc::new(FixedClock(INSIDE)));
        let v = verifier.verify(&real_quote(), &collateral).unwrap();
        assert_eq!(v.tcb_status, TcbStatus::ConfigurationAndSWHardeningNeeded);
        assert_eq!(v.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);

        let late = Verifier::new(Arc::new(FixedClock(VALID_UNTIL + 1)));
        let err = late.verify(&real_quote(), &collateral).unwrap_err();
        assert!(
            matches!(err, VerifyError::CollateralExpired { .. }),
            "{err}"
        );
    }
}

#[tokio::test]
async fn https_without_the_pccs_ca_fails() {
    let pccs = fake(true).await;
    let untrusting = PccsClient::new(&pccs.url(), None).unwrap();
    let err = untrusting.collateral_for_quote(&quote()).await.unwrap_err();
    assert!(matches!(err, PccsError::Request { .. }), "{err}");
}

#[tokio::test]
async fn accepts_the_v3_tcb_header_name() {
    let pccs = fake(false).await;
    pccs.set_behaviour(Behaviour {
        v3_tcb_header: true,
        ..Behaviour::default()
    });
    let collateral = client(&pccs).collateral_for_quote(&quote()).await.unwrap();
    assert_eq!(collateral.as_dcap(), real_collateral().as_dcap());
}

#[tokio::test]
async fn missing_issuer_chain_is_named() {
    let pccs = fake(false).await;
    pccs.set_behaviour(Behaviour {
        omit_issuer_chains: true,
        ..Behaviour::default()
    });
    let err = client(&pccs)
        .collateral_for_quote(&quote())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("header SGX-PCK-CRL-Issuer-Chain is missing"),
        "{err}"
    );
}

#[tokio::test]
async fn tampered_tcb_info_is_kept_verbatim_and_fails_verification() {
    let pccs = fake(false).await;
    pccs.set_behaviour(Behaviour {
        tamper_tcb_info: true,
        ..Behaviour::default()
    });
    let collateral = client(&pccs).collateral_for_quote(&quote()).await.unwrap();
    assert!(collateral.tcb_info().contains("\"version\":4"));
    let err = Verifier::new(Arc::new(FixedClock(INSIDE)))
        .verify(&real_quote(), &collateral)
        .unwrap_err();
    assert!(matches!(err, VerifyError::Dcap(_)), "{err}");
}

#[tokio::test]
async fn unknown_platform_and_server_errors_carry_the_status() {
    let pccs = fake(false).await;
    let err = client(&pccs)
        .collateral([0, 0x90, 0x6e, 0xd5, 0, 0], PckCa::Processor)
        .await;
    let err = err.unwrap_err();
    assert!(
        matches!(err, PccsError::Status { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("tcb?fmspc=00906ED50000"), "{err}");

    pccs.set_behaviour(Behaviour {
        fail_with: Some(429),
        ..Behaviour::default()
    });
    let err = client(&pccs)
        .collateral_for_quote(&quote())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PccsError::Status { status: 429, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn cache_keeps_exact_bodies_and_serves_while_valid() {
    let pccs = fake(false).await;
    let cache = tempfile::tempdir().unwrap();
    let cached_client = || client(&pccs).with_cache(cache.path());

    let first = cached_client()
        .collateral_for_quote(&quote())
        .await
        .unwrap();
    let entry = cache.path().join("00A067110000-processor");
    let tcb_body = std::fs::read_to_string(entry.join("tcb.json")).unwrap();
    assert!(
        tcb_body.starts_with("{\"tcbInfo\":{\"id\":\"SGX\""),
        "{tcb_body}"
    );
    assert!(tcb_body.contains(real_collateral().tcb_info()));
    assert_eq!(pccs.requests().len(), 4);

    // Fresh entry: no request at all.
    let second = cached_client()
        .collateral_for_quote(&quote())
        .await
        .unwrap();
    assert_eq!(second, first);
    assert_eq!(pccs.requests().len(), 4);

    // Due for refresh but the PCCS fails: the still-valid entry is used.
    pccs.set_behaviour(Behaviour {
        fail_with: Some(503),
        ..Behaviour::default()
    });
    let stale = cached_client()
        .with_refresh_age(Duration::ZERO)
        .collateral_for_quote(&quote())
        .await
        .unwrap();
    assert_eq!(stale, first);
    assert_eq!(pccs.requests().len(), 5);

    // Outside the validity the cached entry is no use and the failure shows.
    let err = cached_client()
        .with_clock(Arc::new(FixedClock(VALID_UNTIL + 1)))
        .collateral_for_quote(&quote())
        .await
        .unwrap_err();
    assert!(
        matches!(err, PccsError::Status { status: 503, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn from_env_reads_url_and_ca_file() {
    let pccs = fake(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("pccs-ca.pem");
    std::fs::write(&ca_file, pccs.ca_pem().unwrap()).unwrap();
    let url = pccs.url();
    let ca = ca_file.to_str().unwrap().to_owned();
    let env = move |k: &str| match k {
        "QUARRY_PCCS_URL" => Some(url.clone()),
        "QUARRY_PCCS_CA_FILE" => Some(ca.clone()),
        _ => None,
    };
    let client = PccsClient::from_env(&env).unwrap().unwrap();
    assert_eq!(client.base_url(), format!("https://{}", pccs.addr()));
    client.collateral_for_quote(&quote()).await.unwrap();
    assert!(PccsClient::from_env(&|_| None).unwrap().is_none());
}

#[tokio::test]
async fn an_endless_body_is_refused_at_the_limit_without_waiting_for_its_end() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A PCCS that announces a 10 GB body, sends a little more than the client's 1 MiB limit
    // and then keeps the connection open without sending the rest.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await.unwrap();
        socket
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
            .await
            .unwrap();
        socket
            .write_all(&vec![b'x'; 1024 * 1024 + 4096])
            .await
            .unwrap();
        let _ = done_rx.await;
    });

    let client = PccsClient::new(&url, None)
        .unwrap()
        .with_clock(Arc::new(FixedClock(INSIDE)));
    let err = client.collateral_for_quote(&quote()).await.unwrap_err();
    assert!(matches!(err, PccsError::Body { .. }), "{err}");
    assert!(err.to_string().contains("more than 1048576 bytes"), "{err}");
    drop(done_tx);
    server.await.unwrap();
}
