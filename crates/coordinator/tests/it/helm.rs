//! The Helm chart in `charts/quarry`, rendered by a real Helm (fetched by
//! `scripts/fetch-helm.sh`) and checked object by object.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The Helm binary, fetched once per test run into `target/tools`.
fn helm() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let root = workspace_root();
        let tools = root.join("target/tools");
        let status = Command::new("bash")
            .arg(root.join("scripts/fetch-helm.sh"))
            .arg(&tools)
            .status()
            .expect("running scripts/fetch-helm.sh");
        assert!(status.success(), "scripts/fetch-helm.sh failed: {status}");
        tools.join("helm")
    })
}

fn chart() -> PathBuf {
    workspace_root().join("charts/quarry")
}

/// Renders the chart with `values` (YAML) and returns its objects, or Helm's error text.
fn render(values: &str) -> Result<Vec<Value>, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.yaml");
    std::fs::write(&file, values).unwrap();
    let out = Command::new(helm())
        .args(["template", "quarry"])
        .arg(chart())
        .args(["--namespace", "quarry", "-f"])
        .arg(&file)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("helm output parses as YAML");
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn coordinator(objects: &[Value]) -> &Value {
    let sts = find(objects, "StatefulSet", "quarry-coordinator").expect("coordinator StatefulSet");
    &sts["spec"]["template"]["spec"]["containers"][0]
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
}

fn env_names(container: &Value) -> Vec<String> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The seed document's Helm snippet, unchanged.
const SEED_VALUES: &str = r#"
coordinator:
    azureCredentials:
        clientID: ${client_id}
        tenantID: ${tenant_id}
        clientSecret: ${client_secret}
        # Optionally, set "secretName" to the name of a pre-configured secret
        # containing AZURE_CLIENT_ID, AZURE_TENANT_ID, and AZURE_CLIENT_SECRET
        # secretName: ""
    hsm:
        keyName: "marblerun-skr-key"
        vaultURL: ${vault_url}
        # Make sure this matches the location of your deployment, and the value you set in the key policy
        maaURL: "https://shareduks.uks.attest.azure.net"
        # Optionally, set to use a specific key version
        keyVersion: ""
"#;

#[test]
fn chart_passes_helm_lint() {
    for values in ["", SEED_VALUES] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("values.yaml");
        std::fs::write(&file, values).unwrap();
        let out = Command::new(helm())
            .arg("lint")
            .arg(chart())
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm lint: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn seed_values_render_every_standalone_variable() {
    let objects = render(SEED_VALUES).unwrap();
    let container = coordinator(&objects);

    let secret = find(&objects, "Secret", "quarry-azure-credentials").expect("credentials Secret");
    assert_eq!(secret["stringData"]["AZURE_CLIENT_ID"], "${client_id}");
    assert_eq!(secret["stringData"]["AZURE_TENANT_ID"], "${tenant_id}");
    assert_eq!(
        secret["stringData"]["AZURE_CLIENT_SECRET"],
        "${client_secret}"
    );

    for (var, key) in [
        ("EDG_AZURE_CLIENT_ID", "AZURE_CLIENT_ID"),
        ("EDG_AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET"),
        ("EDG_AZURE_TENANT_ID", "AZURE_TENANT_ID"),
    ] {
        let from = &env(container, var).unwrap_or_else(|| panic!("{var} missing"))["valueFrom"];
        assert_eq!(
            from["secretKeyRef"]["name"], "quarry-azure-credentials",
            "{var}"
        );
        assert_eq!(from["secretKeyRef"]["key"], key, "{var}");
    }
    let value =
        |var: &str| env(container, var).unwrap_or_else(|| panic!("{var} missing"))["value"].clone();
    assert_eq!(value("EDG_AZURE_HSM_KEY_NAME"), "marblerun-skr-key");
    assert_eq!(value("EDG_AZURE_HSM_KEY_VERSION"), "");
    assert_eq!(value("EDG_AZURE_HSM_VAULT_URL"), "${vault_url}");
    assert_eq!(
        value("EDG_MAA_URL"),
        "https://shareduks.uks.attest.azure.net"
    );
}

#[test]
fn secret_name_renders_env_from_that_secret() {
    let objects = render(
        "coordinator:\n  azureCredentials:\n    secretName: my-sp\n  hsm:\n    keyName: k\n    vaultURL: https://h.managedhsm.azure.net\n    maaURL: https://m.attest.azure.net\n",
    )
    .unwrap();
    assert!(find(&objects, "Secret", "quarry-azure-credentials").is_none());
    let container = coordinator(&objects);
    for (var, key) in [
        ("EDG_AZURE_CLIENT_ID", "AZURE_CLIENT_ID"),
        ("EDG_AZURE_TENANT_ID", "AZURE_TENANT_ID"),
        ("EDG_AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET"),
    ] {
        let reference = &env(container, var).unwrap()["valueFrom"]["secretKeyRef"];
        assert_eq!(reference["name"], "my-sp", "{var}");
        assert_eq!(reference["key"], key, "{var}");
    }
}

#[test]
fn defaults_render_without_hsm_variables() {
    let objects = render("").unwrap();
    let container = coordinator(&objects);
    let names = env_names(container);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("EDG_AZURE") || n == "EDG_MAA_URL"),
        "unexpected Azure variables: {names:?}"
    );
    assert!(find(&objects, "Secret", "quarry-azure-credentials").is_none());
    assert_eq!(
        env(container, "EDG_COORDINATOR_CLIENT_ADDR").unwrap()["value"],
        ":4433"
    );
    assert_eq!(
        env(container, "EDG_COORDINATOR_MESH_ADDR").unwrap()["value"],
        ":2001"
    );
    assert_eq!(
        env(container, "EDG_COORDINATOR_SEAL_DIR").unwrap()["value"],
        "/coordinator/data/"
    );
    assert_eq!(env(container, "OE_SIMULATION").unwrap()["value"], "0");
    assert_eq!(
        container["resources"]["limits"]["sgx.intel.com/epc"],
        "10Mi"
    );

    // MarbleRun's service names and ports.
    let client = find(&objects, "Service", "coordinator-client-api").unwrap();
    assert_eq!(client["spec"]["ports"][0]["port"], 4433);
    let mesh = find(&objects, "Service", "coordinator-mesh-api").unwrap();
    assert_eq!(mesh["spec"]["ports"][0]["port"], 2001);

    // One replica with a persistent seal directory, probed on the status endpoint.
    let sts = find(&objects, "StatefulSet", "quarry-coordinator").unwrap();
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "seal-dir"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["httpGet"]["path"], "/api/v2/status",
            "{probe}"
        );
        assert_eq!(container[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    assert!(find(&objects, "ServiceAccount", "quarry-coordinator").is_some());
}

#[test]
fn simulation_switch_sets_the_insecure_variables_and_drops_sgx_resources() {
    let objects = render(
        "coordinator:\n  simulation: true\n  simulationIdentity:\n    mrsigner: 43361affedeb75affee9baec7e054a5e14883213e5a121b67d74a0e12e9d2b7a\n    securityVersion: 2\n",
    )
    .unwrap();
    let container = coordinator(&objects);
    assert_eq!(env(container, "OE_SIMULATION").unwrap()["value"], "1");
    assert_eq!(
        env(container, "QUARRY_INSECURE_SIMULATION").unwrap()["value"],
        "1"
    );
    assert_eq!(
        env(container, "QUARRY_INSECURE_SIM_ISVSVN").unwrap()["value"],
        "2"
    );
    assert!(
        container["resources"]["limits"]
            .get("sgx.intel.com/epc")
            .is_none()
    );
}

#[test]
fn azure_device_plugin_and_workload_identity() {
    let objects = render(
        "tee:\n  plugin: azure\ncoordinator:\n  azureCredentials:\n    clientID: c\n    tenantID: t\n    workloadIdentity:\n      enabled: true\n",
    )
    .unwrap();
    let container = coordinator(&objects);
    assert_eq!(
        container["resources"]["limits"]["kubernetes.azure.com/sgx_epc_mem_in_MiB"],
        10
    );
    assert!(
        container["resources"]["limits"]
            .get("sgx.intel.com/epc")
            .is_none()
    );
    assert!(env(container, "EDG_AZURE_CLIENT_SECRET").is_none());
    assert_eq!(
        env(container, "EDG_AZURE_FEDERATED_TOKEN_FILE").unwrap()["value"],
        "/var/run/secrets/azure/tokens/azure-identity-token"
    );
    assert!(env(container, "EDG_AZURE_AUTHORITY_HOST").is_some());
    let sts = find(&objects, "StatefulSet", "quarry-coordinator").unwrap();
    assert_eq!(
        sts["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    let sa = find(&objects, "ServiceAccount", "quarry-coordinator").unwrap();
    assert_eq!(
        sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
        "c"
    );
}

#[test]
fn unsupported_values_fail_the_render_with_a_message() {
    let cases = [
        (
            "coordinator:\n  distributed: true\n",
            "distributed mode is not supported",
        ),
        ("coordinator:\n  replicas: 3\n", "exactly one Coordinator"),
        ("tee:\n  plugin: amd\n", "tee.plugin"),
        (
            "coordinator:\n  azureCredentials:\n    secretName: s\n    clientID: c\n",
            "either secretName or",
        ),
        ("coordinator:\n  hsm:\n    keyName: k\n", "coordinator.hsm"),
    ];
    for (values, expected) in cases {
        let err = render(values).expect_err(values);
        assert!(err.contains(expected), "{values:?}: {err}");
    }
}

#[test]
fn quoted_false_flags_are_false_and_other_strings_fail() {
    let objects = render(
        "coordinator:\n  distributed: \"false\"\n  azureCredentials:\n    clientID: c\n    tenantID: t\n    clientSecret: s\n    workloadIdentity:\n      enabled: \"false\"\nserviceAccount:\n  create: \"false\"\n",
    )
    .unwrap();
    let container = coordinator(&objects);
    assert!(env(container, "EDG_AZURE_CLIENT_SECRET").is_some());
    assert!(env(container, "EDG_AZURE_FEDERATED_TOKEN_FILE").is_none());
    assert!(find(&objects, "ServiceAccount", "quarry-coordinator").is_none());
    let sts = find(&objects, "StatefulSet", "quarry-coordinator").unwrap();
    assert!(
        sts["spec"]["template"]["metadata"]["labels"]
            .get("azure.workload.identity/use")
            .is_none()
    );
    for name in ["distributed", "simulation"] {
        let err = render(&format!("coordinator:\n  {name}: \"yes\"\n")).unwrap_err();
        assert!(
            err.contains(&format!("coordinator.{name}: expected true or false")),
            "{err}"
        );
    }
}

#[test]
fn incomplete_inline_credentials_fail_the_render() {
    let cases = [
        (
            "coordinator:\n  azureCredentials:\n    clientID: c\n",
            "tenantID, clientSecret missing",
        ),
        (
            "coordinator:\n  azureCredentials:\n    clientID: c\n    tenantID: t\n",
            "clientSecret missing",
        ),
        (
            "coordinator:\n  azureCredentials:\n    workloadIdentity:\n      enabled: true\n",
            "clientID, tenantID missing",
        ),
    ];
    for (values, expected) in cases {
        let err = render(values).expect_err(values);
        assert!(err.contains(expected), "{values:?}: {err}");
    }
    // With secretName the chart does not know the ids: no empty workload identity annotations.
    let objects = render(
        "coordinator:\n  azureCredentials:\n    secretName: s\n    workloadIdentity:\n      enabled: true\n",
    )
    .unwrap();
    let sa = find(&objects, "ServiceAccount", "quarry-coordinator").unwrap();
    assert!(
        sa["metadata"]
            .get("annotations")
            .is_none_or(|a| a.get("azure.workload.identity/client-id").is_none()),
        "{sa:?}"
    );
}

#[test]
fn ports_must_be_port_numbers_and_an_empty_hostname_adds_no_empty_name() {
    for (values, expected) in [
        (
            "coordinator:\n  clientServerPort: \"\"\n",
            "coordinator.clientServerPort: expected a port number",
        ),
        (
            "coordinator:\n  meshServerPort: 70000\n",
            "coordinator.meshServerPort: expected a port number",
        ),
        (
            "coordinator:\n  prometheusPort: abc\n",
            "coordinator.prometheusPort: expected a port number",
        ),
    ] {
        let err = render(values).expect_err(values);
        assert!(err.contains(expected), "{values:?}: {err}");
    }
    let objects = render(
        "coordinator:\n  hostname: \"\"\n  clientServerPort: \"4433\"\n  prometheusPort: 9090\n",
    )
    .unwrap();
    let container = coordinator(&objects);
    let names = env(container, "EDG_COORDINATOR_DNS_NAMES").unwrap()["value"]
        .as_str()
        .unwrap();
    assert!(names.split(',').all(|n| !n.is_empty()), "{names}");
    assert_eq!(
        env(container, "EDG_COORDINATOR_CLIENT_ADDR").unwrap()["value"],
        ":4433"
    );
    assert_eq!(container["ports"][0]["containerPort"], 4433);
}
