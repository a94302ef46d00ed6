fn main() {
    gst_plugin_version_helper::info();

    // The plugin's origin as gst-inspect-1.0 shows it: the repository Cargo.toml names, else what
    // GStreamer's own builds say when they have none.
    let repository = std::env::var("CARGO_PKG_REPOSITORY").unwrap_or_default();
    let origin = if repository.is_empty() {
        "Unknown package origin".to_string()
    } else {
        repository
    };
    println!("cargo:rustc-env=PACKAGE_ORIGIN={origin}");

    // Where the Debian package (`scripts/package-deb.sh`, cargo-deb with multiarch) puts its own
    // ONNX Runtime: /usr/lib/<Debian multiarch tuple>/gstreamer1.0-asyncdetect.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let tuple = match arch.as_str() {
        "x86" => "i386-linux-gnu".to_string(),
        "arm" => "arm-linux-gnueabihf".to_string(),
        "powerpc64" => "powerpc64le-linux-gnu".to_string(),
        other => format!("{other}-linux-gnu"),
    };
    println!("cargo:rustc-env=PACKAGED_ORT_DIR=/usr/lib/{tuple}/gstreamer1.0-asyncdetect");

    // The KServe v2 gRPC client (remote inference), generated from the protocol's description by
    // a protobuf compiler written in Rust: no protoc to install.
    println!("cargo:rerun-if-changed=proto/kserve_v2.proto");
    let descriptors = match protox::compile(["proto/kserve_v2.proto"], ["proto"]) {
        Ok(descriptors) => descriptors,
        Err(e) => panic!("proto/kserve_v2.proto: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)
    {
        panic!("generating the KServe v2 client: {e}");
    }
}
