//! Embeds the eBPF object built by `cargo xtask build-ebpf`, so the one
//! `sentinel` binary is all a user installs.
use std::path::PathBuf;

fn main() {
    let object = std::env::var_os("SENTINEL_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../sentinel-ebpf/target/bpfel-unknown-none/release/sentinel-ebpf")
        });
    println!("cargo:rerun-if-env-changed=SENTINEL_EBPF_OBJECT");
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    if let Err(e) = std::fs::copy(&object, out.join("sentinel-ebpf.o")) {
        panic!(
            "the eBPF object {} is missing ({e}): run `cargo xtask build-ebpf` first",
            object.display()
        );
    }
}
