//! Compiles proto/ (remote-write 1.0 messages) with prost-build, using the
//! protoc shipped inside the protoc-bin-vendored crate: nothing is downloaded.

fn main() -> std::io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(std::io::Error::other)?;
    println!("cargo:rerun-if-changed=proto");
    prost_build::Config::new()
        .protoc_executable(protoc)
        .compile_protos(&["proto/remote.proto"], &["proto"])
}
