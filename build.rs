//! Short names for the platform families, so that the code says
//! `#[cfg(linux_kernel)]` rather than the same `any(...)` in many places.
//! Only `src/sys/` uses them: everything above it is platform-free.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for name in ["linux_kernel", "apple", "freebsd", "kqueue"] {
        println!("cargo::rustc-check-cfg=cfg({name})");
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let vendor = std::env::var("CARGO_CFG_TARGET_VENDOR").unwrap_or_default();
    let linux_kernel = os == "linux" || os == "android";
    let apple = vendor == "apple";
    let freebsd = os == "freebsd";
    for (name, on) in [
        ("linux_kernel", linux_kernel),
        ("apple", apple),
        ("freebsd", freebsd),
        ("kqueue", apple || freebsd),
    ] {
        if on {
            println!("cargo::rustc-cfg={name}");
        }
    }
}
