# shellcheck shell=bash
# Helpers shared by the ci/*.sh scripts. Source it; do not run it.
# Kept to bash 3.2 and POSIX tools so it also works on macOS and FreeBSD.

# Make cargo-installed tools (cargo, rustup, cargo-hack) visible even when the
# caller's PATH does not have them, e.g. a fresh login shell on a CI machine.
ci_cargo_bin="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
case ":${PATH}:" in
    *":${ci_cargo_bin}:"*) ;;
    *) PATH="${ci_cargo_bin}:${PATH}" ;;
esac
export PATH
unset ci_cargo_bin

# Print a section header.
say() {
    printf '\n==> %s\n' "$*"
}

# Echo a command, then run it.
run() {
    printf '+ %s\n' "$*"
    "$@"
}

have() {
    command -v "$1" >/dev/null 2>&1
}

# Run a command as root: directly when we already are root, else via sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Install the rust-std of every target given, unless it is already there.
ensure_rust_targets() {
    local installed t
    if ! have rustup; then
        echo "rustup not found: cannot install targets: $*" >&2
        return 1
    fi
    installed="$(rustup target list --installed)"
    for t in "$@"; do
        if printf '%s\n' "${installed}" | grep -qx "${t}"; then
            echo "rust target ${t}: already installed"
        else
            run rustup target add "${t}"
        fi
    done
}

# Install rustup components (clippy, rustfmt, ...). `rustup component add` is
# idempotent; without rustup (e.g. a distro-packaged toolchain) just check that
# cargo can run the tool.
ensure_rust_components() {
    local c
    if have rustup; then
        run rustup component add "$@"
        return
    fi
    for c in "$@"; do
        case "${c}" in
            clippy) cargo clippy --version >/dev/null 2>&1 ;;
            rustfmt) cargo fmt --version >/dev/null 2>&1 ;;
            *) false ;;
        esac || {
            echo "rustup not found and component ${c} is missing" >&2
            return 1
        }
    done
}

# Install cargo-hack from crates.io unless it already answers.
ensure_cargo_hack() {
    if cargo hack --version >/dev/null 2>&1; then
        echo "cargo-hack: $(cargo hack --version)"
    else
        run cargo install cargo-hack --locked
    fi
}
