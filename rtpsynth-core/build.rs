//! Compiles the relay offload's BPF program (bpf/relay_offload.bpf.c) with
//! clang, for src/offload.rs to embed. Without clang the crate still builds:
//! the object is left empty and the offload reports, when asked for, that it
//! was built without it.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("relay_offload.bpf.o");
    for input in [
        "bpf/relay_offload.bpf.c",
        "bpf/relay_offload.h",
        "bpf/udp_rewrite.h",
    ] {
        println!("cargo::rerun-if-changed={input}");
    }
    // The kernel's UAPI headers include <asm/types.h>, which Debian keeps
    // under the target's multiarch directory.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let built = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I{multiarch}"))
        .args(["-c", "bpf/relay_offload.bpf.c", "-o"])
        .arg(&out)
        .status();
    match built {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("clang failed to compile bpf/relay_offload.bpf.c ({status})"),
        Err(e) => {
            println!(
                "cargo::warning=relay offload left out: clang not found ({e}); scripts/setup.sh installs it"
            );
            std::fs::write(&out, b"").expect("writing the empty object");
        }
    }
}
