//! PEM values (users' certificates, recovery keys) are read as Go's `pem.Decode` reads them,
//! which MarbleRun uses: a blank line, spaces or tabs inside the base64 body are accepted, an END
//! line of another type is not.

use quarry_manifest::pem::{parse_recovery_key, parse_user_certificate};
use serde_json::json;

use crate::support::{alice_pem, assert_valid, assert_violations, base, recovery_pem};

/// `pem` with a blank line after its second body line and every body line indented by a tab.
fn loosened(pem: &str) -> String {
    let mut out = String::new();
    for (i, line) in pem.lines().enumerate() {
        if line.starts_with("-----") {
            out.push_str(line);
        } else {
            out.push('\t');
            out.push_str(line);
        }
        out.push('\n');
        if i == 2 {
            out.push('\n');
        }
    }
    out
}

#[test]
fn blank_lines_and_indentation_in_a_body_are_accepted() {
    let cert = loosened(&alice_pem());
    assert!(cert.contains("\n\n\t"), "{cert}");
    assert_eq!(
        parse_user_certificate(&cert).unwrap(),
        parse_user_certificate(&alice_pem()).unwrap()
    );
    let key = loosened(&recovery_pem());
    assert_eq!(
        parse_recovery_key(&key).unwrap(),
        parse_recovery_key(&recovery_pem()).unwrap()
    );

    let mut m = base();
    m["Users"] = json!({"alice": {"Certificate": cert}});
    m["RecoveryKeys"] = json!({"k": key});
    assert_valid(&m);
}

#[test]
fn an_end_line_of_another_type_is_refused() {
    let cert = alice_pem().replace("-----END CERTIFICATE-----", "-----END KEY-----");
    let mut m = base();
    m["Users"] = json!({"alice": {"Certificate": cert}});
    assert_violations(&m, &[(r#"Users["alice"].Certificate"#, "P1")]);
}
