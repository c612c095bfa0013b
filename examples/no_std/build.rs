//! Links the C library explicitly on musl.
//!
//! On musl targets the `libc` crate asks for the C library only when it is
//! built as part of `std`, and leaves the linking to `std` otherwise; a
//! `no_std` binary must ask for it itself. It goes in as a late link
//! argument, after every Rust library, because musl's `libc.a` is a static
//! archive and the linker resolves archives in command-line order.
//! glibc, macOS and the BSDs need nothing here: the `libc` crate links them.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "musl") {
        println!("cargo::rustc-link-arg-bins=-lc");
    }
}
