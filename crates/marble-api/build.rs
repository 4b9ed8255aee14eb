//! Generates the gRPC code for `proto/coordinator.proto` with a vendored `protoc`, so building
//! needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/coordinator.proto"],
        &["proto"],
    )?;
    println!("cargo:rerun-if-changed=proto/coordinator.proto");
    Ok(())
}
