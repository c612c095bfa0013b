//! Short names for the platform families, so that the code says
//! `#[cfg(linux_kernel)]` rather than the same `any(...)` in many places.
//! Only `src/sys/` uses them: everything above it is platform-free.
//! `seccomp_sandbox` says whether the sandbox is the real one (see
//! `src/sys/mod.rs`).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for name in [
        "linux_kernel",
        "apple",
        "freebsd",
        "kqueue",
        "seccomp_sandbox",
    ] {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let vendor = std::env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    let linux_kernel = os == "linux" || os == "android";
    let apple = vendor == "apple";
    let freebsd = os == "freebsd";
    // The sandbox's real implementation: feature `sandbox`, a Linux kernel,
    // and an architecture seccompiler compiles filters for. Elsewhere
    // `sys/no_sandbox.rs` refuses every sandbox.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let seccomp_sandbox = std::env::var_os("CARGO_FEATURE_SANDBOX").is_some()
        && linux_kernel
        && matches!(arch.as_str(), "x86_64" | "aarch64" | "riscv64");
    for (name, on) in [
        ("linux_kernel", linux_kernel),
        ("apple", apple),
        ("freebsd", freebsd),
        ("kqueue", apple || freebsd),
        ("seccomp_sandbox", seccomp_sandbox),
    ] {
        if on {
            println!("cargo::rustc-cfg={name}");
        }
    }
}
