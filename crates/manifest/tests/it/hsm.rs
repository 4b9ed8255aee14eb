//! The `AzureHSMSealing` gate: valid with the seed document's standalone variables, invalid
//! (naming what is missing) without them.

use std::collections::BTreeMap;

use quarry_common::EnvFile;
use quarry_manifest::{CheckError, EmptyEnvironment, missing_hsm_variables};

use crate::support::{check_in, data, violations};

/// The standalone snippet of the HSM documentation, preceded by the assignments that the
/// documentation makes with `jq` and `az`.
pub(crate) const SEED_ENV: &str = r#"
client_id=00000000-1111-2222-3333-444444444444
client_secret='s3cr3t~value'
tenant_id=55555555-6666-7777-8888-999999999999
vault_url=https://marblerunhsm.managedhsm.azure.net/

# Azure credentials
export EDG_AZURE_CLIENT_ID=${client_id}
export EDG_AZURE_CLIENT_SECRET=${client_secret}
export EDG_AZURE_TENANT_ID=${tenant_id}

# HSM key information
export EDG_AZURE_HSM_KEY_NAME="marblerun-skr-key"
export EDG_AZURE_HSM_KEY_VERSION="" # Optionally, set to use a specific key version
export EDG_AZURE_HSM_VAULT_URL=${vault_url}

# MAA URL. Make sure this matches the location of your deployment, and the value you set in the key policy
export EDG_MAA_URL="https://shareduks.uks.attest.azure.net"
"#;

fn manifest() -> serde_json::Value {
    serde_json::from_str(&data("hsm-sealing.json")).unwrap()
}

#[test]
fn valid_with_the_seed_variables() {
    let env = EnvFile::parse_isolated(SEED_ENV).unwrap();
    let report = check_in(&manifest(), &env);
    assert!(report.is_valid(), "{:?}", report.violations);
}

#[test]
fn invalid_without_them_naming_each_missing_variable() {
    let report = check_in(&manifest(), &EmptyEnvironment);
    assert_eq!(
        violations(&report),
        [("Config.FeatureGates[0]".to_owned(), "C22")]
    );
    let CheckError::MissingHsmEnvironment(missing) = &report.violations[0].error else {
        panic!("{:?}", report.violations);
    };
    assert_eq!(
        missing,
        &[
            "EDG_MAA_URL",
            "EDG_AZURE_HSM_VAULT_URL",
            "EDG_AZURE_HSM_KEY_NAME",
            "EDG_AZURE_CLIENT_ID",
            "EDG_AZURE_TENANT_ID",
            "EDG_AZURE_CLIENT_SECRET (or EDG_AZURE_AUTHORITY_HOST and EDG_AZURE_FEDERATED_TOKEN_FILE)",
        ]
    );
}

fn seed_map() -> BTreeMap<String, String> {
    let env = EnvFile::parse_isolated(SEED_ENV).unwrap();
    env.iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn each_required_variable_is_named_when_missing_or_empty() {
    for name in quarry_manifest::check::HSM_REQUIRED_VARIABLES {
        let mut env = seed_map();
        env.remove(name);
        assert_eq!(missing_hsm_variables(&env), [name]);
        env.insert(name.to_owned(), String::new());
        assert_eq!(missing_hsm_variables(&env), [name]);
    }
}

#[test]
fn a_federated_token_replaces_the_client_secret() {
    let mut env = seed_map();
    env.remove("EDG_AZURE_CLIENT_SECRET");
    env.insert(
        "EDG_AZURE_FEDERATED_TOKEN_FILE".into(),
        "/var/run/token".into(),
    );
    assert_eq!(
        missing_hsm_variables(&env),
        ["EDG_AZURE_CLIENT_SECRET (or EDG_AZURE_AUTHORITY_HOST)"]
    );
    env.insert(
        "EDG_AZURE_AUTHORITY_HOST".into(),
        "https://login.example/".into(),
    );
    assert!(missing_hsm_variables(&env).is_empty());
    env.remove("EDG_AZURE_FEDERATED_TOKEN_FILE");
    assert_eq!(
        missing_hsm_variables(&env),
        ["EDG_AZURE_CLIENT_SECRET (or EDG_AZURE_FEDERATED_TOKEN_FILE)"]
    );
}

#[test]
fn the_gate_name_is_case_insensitive_and_other_gates_need_no_environment() {
    let mut m = manifest();
    m["Config"]["FeatureGates"] = serde_json::json!(["azurehsmsealing"]);
    assert_eq!(check_in(&m, &EmptyEnvironment).violations.len(), 1);
    m["Config"]["FeatureGates"] = serde_json::json!(["SignQuoteEndpoint"]);
    assert!(check_in(&m, &EmptyEnvironment).is_valid());
}

#[test]
fn any_lookup_function_is_an_environment() {
    let seed = seed_map();
    let lookup = |name: &str| seed.get(name).cloned();
    assert!(missing_hsm_variables(&lookup).is_empty());
    let report = check_in(&manifest(), &lookup);
    assert!(report.is_valid(), "{:?}", report.violations);
    let nothing = |_: &str| None;
    assert_eq!(missing_hsm_variables(&nothing).len(), 6);
}

#[test]
fn an_env_file_without_the_variables_is_reported() {
    let env = EnvFile::parse_isolated("EDG_MAA_URL=https://maa.example\n").unwrap();
    assert_eq!(missing_hsm_variables(&env).len(), 5);
    assert!(!missing_hsm_variables(&env).contains(&"EDG_MAA_URL".to_owned()));
}
