#!/usr/bin/env bash
# Builds target/debian/rme_<version>_<arch>.deb: the release binary, then the man
# pages and shell completions the binary generates from its own CLI definition
# (so they cannot drift from it), then cargo-deb with the [package.metadata.deb]
# of Cargo.toml. Needs `cargo install cargo-deb`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
rme=target/release/rme
rm -rf target/assets
mkdir -p target/assets/man target/assets/completions
"$rme" man --out-dir target/assets/man
gzip -9n target/assets/man/*.1
"$rme" completions bash > target/assets/completions/rme.bash
"$rme" completions zsh > target/assets/completions/_rme
"$rme" completions fish > target/assets/completions/rme.fish
cargo deb --no-build "$@"
