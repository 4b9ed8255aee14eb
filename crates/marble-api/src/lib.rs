//! The Marble activation protocol (`rpc.Marble/Activate`), shared by the Coordinator and the
//! premain launcher.
//!
//! The messages keep MarbleRun's PascalCase field names in the `.proto`, so the wire format is
//! identical; prost turns them into snake_case Rust fields (`marble_type`, `uuid`, `csr`).

#![allow(missing_docs, unreachable_pub)] // generated code

/// Generated types and services of package `rpc`.
pub mod rpc {
    tonic::include_proto!("rpc");
}

pub use rpc::{ActivationReq, ActivationResp, Parameters};

/// The full gRPC method path of activation.
pub const ACTIVATE_PATH: &str = "/rpc.Marble/Activate";

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn activation_request_uses_marbleruns_field_numbers() {
        let request = ActivationReq {
            quote: vec![1],
            csr: vec![2],
            marble_type: "a".into(),
            uuid: "b".into(),
        };
        // Field 1 Quote, 2 CSR, 3 MarbleType, 4 UUID, each length-delimited.
        let expected = [0x0a, 1, 1, 0x12, 1, 2, 0x1a, 1, b'a', 0x22, 1, b'b'];
        assert_eq!(request.encode_to_vec(), expected);
        assert_eq!(ActivationReq::decode(&expected[..]).unwrap(), request);
    }

    #[test]
    fn parameters_round_trip() {
        let mut params = Parameters::default();
        params
            .files
            .insert("/dev/attestation/secret".into(), vec![0, 255]);
        params.env.insert("KEY".into(), b"value".to_vec());
        params.argv = vec!["app".into(), "--flag".into()];
        let response = ActivationResp {
            parameters: Some(params),
        };
        let bytes = response.encode_to_vec();
        assert_eq!(ActivationResp::decode(bytes.as_slice()).unwrap(), response);
    }
}
