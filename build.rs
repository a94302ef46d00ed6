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
}
