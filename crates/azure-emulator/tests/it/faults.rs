//! Fault injection: forced statuses that run out, outages, short token lifetimes, faults set
//! at start.

use serde_json::{Value, json};

use crate::common::{Emu, b64url, jwt_parts, testdata};

fn quote_body() -> Value {
    let quote = std::fs::read(testdata("sgx/dcap-qvl-sample.quote")).unwrap();
    json!({ "quote": b64url(&quote) })
}

#[tokio::test]
async fn forced_status_applies_the_given_number_of_times() {
    let emu = Emu::start(&[]);
    let r = emu
        .client
        .post(emu.url("/_emulator/faults"))
        .json(&json!({"route": "/attest/SgxEnclave", "method": "POST", "status": 503, "times": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    for _ in 0..2 {
        let (status, body) = emu.attest(&quote_body()).await;
        assert_eq!(status, 503);
        assert_eq!(body["error"]["code"], "EmulatedFault");
    }
    let (status, _) = emu.attest(&quote_body()).await;
    assert_eq!(status, 200);
    let listing = emu.get_json("/_emulator/faults").await;
    assert_eq!(listing["faults"], json!([]));
}

#[tokio::test]
async fn outage_drops_the_connection() {
    let emu = Emu::start(&[]);
    let r = emu
        .client
        .put(emu.url("/_emulator/faults"))
        .json(&json!({"faults": [{"route": "/certs", "outage": true}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let err = emu.client.get(emu.url("/certs")).send().await.unwrap_err();
    assert!(!err.is_status(), "{err}");

    let r = emu
        .client
        .delete(emu.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    emu.get_json("/certs").await;
}

#[tokio::test]
async fn short_token_lifetime_from_the_start() {
    let fault = r#"{"route":"/{tenant}/oauth2/v2.0/token","token_lifetime_secs":5}"#;
    let maa_fault = r#"{"route":"/attest/{*rest}","token_lifetime_secs":7,"times":1}"#;
    let emu = Emu::start(&["--fault", fault, "--fault", maa_fault]);
    let (app, password, _) = emu.create_sp("short");
    let (status, body) = emu
        .token_request(&[
            ("client_id", &app),
            ("client_secret", &password),
            ("grant_type", "client_credentials"),
            ("scope", "https://managedhsm.azure.net/.default"),
        ])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 5);
    let (_, claims) = jwt_parts(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        5
    );

    let (_, body) = emu.attest(&quote_body()).await;
    let (_, claims) = jwt_parts(body["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7
    );
    let (_, body) = emu.attest(&quote_body()).await;
    let (_, claims) = jwt_parts(body["token"].as_str().unwrap());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        28_800
    );
}

#[tokio::test]
async fn bad_fault_specifications_are_refused() {
    let emu = Emu::start(&[]);
    let r = emu
        .client
        .post(emu.url("/_emulator/faults"))
        .body(r#"{"route":"no-slash","status":503}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-slash")
    );
}
