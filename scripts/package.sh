#!/usr/bin/env bash
# Builds the Debian package target/debian/assetd_VERSION_ARCH.deb from the
# release binary, with Debian's own dpkg-deb on a staged tree.
#
#   scripts/package.sh                              # builds the binary first if stale
#   ASSETD_BINARY=path/to/assetd scripts/package.sh # package that binary as it is
#
# Why not cargo-deb: it is not packaged in Debian 12, so every fresh CI
# machine would compile it (`cargo install cargo-deb`: minutes of compile
# on two cores) to do what dpkg-deb, on every Debian system, does from a
# staged tree in a second. The metadata lives in debian/ instead of
# Cargo.toml.
#
# VERSION is Cargo.toml's (a `-` becomes `~`, so 1.0.0-rc.1 sorts before
# 1.0.0); debian/changelog must have an entry for it. ARCH is dpkg's.
# The man pages, completions and schemas come from the binary itself
# (`assetd generate-man`, `assetd completions`, `assetd schema`), so they
# cannot drift from it. Needs: dpkg-dev (dpkg-shlibdeps), binutils (strip).
set -euo pipefail
# A binary named relative to where the caller stands.
if [ -n "${ASSETD_BINARY:-}" ]; then ASSETD_BINARY=$(realpath "$ASSETD_BINARY"); fi
cd "$(dirname "$0")/.."

die() { echo "package.sh: FAIL: $*" >&2; exit 1; }

for tool in dpkg-deb dpkg-shlibdeps dpkg-parsechangelog strip gzip; do
    command -v "$tool" >/dev/null 2>&1 \
        || die "$tool is missing (apt-get install -y --no-install-recommends dpkg-dev binutils)"
done

version=$(awk -F'"' '/^\[/ { section = $0 } section == "[package]" && /^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml [package]"
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)

changelog_version=$(dpkg-parsechangelog -l debian/changelog -S Version)
[ "$changelog_version" = "$deb_version" ] \
    || die "debian/changelog is at $changelog_version, Cargo.toml at $version: add a changelog entry for $deb_version"
# File dates in the package: the changelog entry's, so that two builds of
# one version make the same package.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l debian/changelog -S Timestamp)
export SOURCE_DATE_EPOCH
maintainer=$(dpkg-parsechangelog -l debian/changelog -S Maintainer)

binary=${ASSETD_BINARY:-target/release/assetd}
if [ -z "${ASSETD_BINARY:-}" ]; then
    # The suite's release build is reused; a build happens only when the
    # binary is missing or older than a source.
    if [ ! -x "$binary" ] || [ -n "$(find src Cargo.toml Cargo.lock -newer "$binary" -print -quit)" ]; then
        echo "package.sh: building $binary" >&2
        cargo build --release --locked --bin assetd
    fi
fi
[ -x "$binary" ] || die "$binary is not an executable"

out_dir=target/debian
stage=$out_dir/stage
deb=$out_dir/assetd_${deb_version}_${arch}.deb
rm -rf "$stage" "$deb"
umask 022
mkdir -p "$stage/DEBIAN"

# install -D: parents 0755; files with the modes given.
install -D -m 0755 "$binary" "$stage/usr/bin/assetd"
# As dh_strip does: no debug symbols or .comment in the shipped binary.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/usr/bin/assetd"
assetd=$stage/usr/bin/assetd

# The unit, as the repository has it, running the packaged binary.
unit=$stage/lib/systemd/system/assetd.service
install -D -m 0644 systemd/assetd.service "$unit"
sed -i 's|^ExecStart=/usr/local/bin/assetd |ExecStart=/usr/bin/assetd |' "$unit"
grep -q '^ExecStart=/usr/bin/assetd run ' "$unit" || die "systemd/assetd.service: no ExecStart=/usr/local/bin/assetd run ... to point at /usr/bin/assetd"
grep -q '^EnvironmentFile=-/etc/assetd/assetd.env$' "$unit" || die "systemd/assetd.service does not read /etc/assetd/assetd.env"

# Configuration: the flags (a conffile, 0600: it may hold secret values
# that manifests read with fromEnv), the manifests directory, the state.
install -D -m 0600 debian/assetd.env "$stage/etc/assetd/assetd.env"
install -d -m 0755 "$stage/etc/assetd/manifests"
install -d -m 0700 "$stage/var/lib/assetd"

# Man pages, one per command.
pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
"$assetd" generate-man "$pages" >/dev/null || die "assetd generate-man failed"
[ -f "$pages/assetd.1" ] || die "assetd generate-man wrote no assetd.1"
install -d -m 0755 "$stage/usr/share/man/man1"
for page in "$pages"/*.1; do
    gzip -9n <"$page" >"$stage/usr/share/man/man1/${page##*/}.gz"
    chmod 0644 "$stage/usr/share/man/man1/${page##*/}.gz"
done

# Shell completions where each shell looks for a package's.
completion() { # SHELL DEST
    install -d -m 0755 "$(dirname "$2")"
    "$assetd" completions "$1" >"$2" || die "assetd completions $1 failed"
    [ -s "$2" ] || die "assetd completions $1 printed nothing"
    chmod 0644 "$2"
}
completion bash "$stage/usr/share/bash-completion/completions/assetd"
completion zsh "$stage/usr/share/zsh/vendor-completions/_assetd"
completion fish "$stage/usr/share/fish/vendor_completions.d/assetd.fish"

# Schemas (editors), dashboard and alert rules (monitoring).
share=$stage/usr/share/assetd
install -d -m 0755 "$share"
"$assetd" schema >"$share/assetd.schema.json"
"$assetd" schema --kind openfactory >"$share/openfactory.schema.json"
"$assetd" schema --kind compose >"$share/compose.schema.json"
chmod 0644 "$share"/*.schema.json
install -D -m 0644 grafana/assetd.json "$share/grafana/assetd.json"
install -D -m 0644 prometheus/assetd-alerts.yml "$share/prometheus/assetd-alerts.yml"

# Documentation Debian asks for; the lintian overrides, with their reasons.
doc=$stage/usr/share/doc/assetd
install -D -m 0644 debian/copyright "$doc/copyright"
# A native package (no Debian revision): its one changelog is changelog.gz.
gzip -9n <debian/changelog >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"
install -D -m 0644 debian/lintian-overrides "$stage/usr/share/lintian/overrides/assetd"

# Control area.
install -m 0755 debian/postinst debian/prerm debian/postrm "$stage/DEBIAN/"
echo /etc/assetd/assetd.env >"$stage/DEBIAN/conffiles"
chmod 0644 "$stage/DEBIAN/conffiles"

# Depends: the shared libraries the binary links, as Debian's symbols
# files version them. dpkg-shlibdeps wants a debian/control and the binary
# in a package tree debian/PACKAGE/ (with DEBIAN/): a scratch tree beside
# the stage (a hard link).
shlib=$(mktemp -d "$out_dir/shlibdeps.XXXXXX")
trap 'rm -rf "$pages" "$shlib"' EXIT
mkdir -p "$shlib/debian/assetd/DEBIAN" "$shlib/debian/assetd/usr/bin"
printf 'Source: assetd\n\nPackage: assetd\nArchitecture: any\n' >"$shlib/debian/control"
ln "$assetd" "$shlib/debian/assetd/usr/bin/assetd"
depends=$(cd "$shlib" && dpkg-shlibdeps -O -edebian/assetd/usr/bin/assetd | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for $assetd"

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
synopsis=$(awk -F'"' '/^\[/ { section = $0 } section == "[package]" && /^description *=/ { print $2; exit }' Cargo.toml)
cat >"$stage/DEBIAN/control" <<EOF
Package: assetd
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: docker.io | docker-ce
Section: admin
Priority: optional
Description: $synopsis
 assetd makes a Docker engine (containers) or a Docker Swarm (services)
 look like the YAML asset manifests in one directory, and keeps it that
 way: a changed manifest is applied, a deleted one pruned, drift repaired.
 .
 The package installs the daemon's systemd unit without enabling it: put
 the manifests in /etc/assetd/manifests, the flags in
 /etc/assetd/assetd.env, then run systemctl enable --now assetd.
 /usr/share/assetd holds the manifests' JSON Schemas, a Grafana dashboard
 and Prometheus alert rules.
EOF

(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
