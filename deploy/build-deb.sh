#!/usr/bin/env bash
# build-deb.sh: `make deb`. Builds the static binary, stages the files the
# package ships under build/deb/, and runs nfpm (a Go module, through
# `go run`, so nothing prebuilt is downloaded). Writes
# relay_<version>_<arch>.deb into $DEB_OUT (default: the tree's root) and
# prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}
stage=build/deb
rm -rf "$stage" && mkdir -p "$stage/etc" "$stage/doc" "$stage/lib"

# The version: a tag v1.2.3 gives 1.2.3; commits after it 1.2.3+4.gabcdef;
# no tag at all 0.0~git<commit date>.<hash>. Debian versions start with a
# digit, so a bare hash will not do. A dirty tree adds +dirty.
describe=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || true)
if [ -n "$describe" ]; then
	version=$(printf '%s' "${describe#v}" | sed -E 's/-([0-9]+)-g([0-9a-f]+)/+\1.g\2/; s/-dirty$/+dirty/')
else
	version="0.0~git$(git log -1 --format=%cd --date=format:%Y%m%d).$(git rev-parse --short=7 HEAD)"
	[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && version="$version+dirty"
fi
arch=$($GO env GOARCH)

make --no-print-directory build VERSION="$version" OUT="$stage/relay" >/dev/null

# The unit as the package installs it: the binary lives in /usr/bin, and
# the install notes also in /usr/share/doc/relay (comments say so in words;
# Documentation= takes URIs only, systemd ignores anything else with a warning).
sed 's#/usr/local/bin/relay#/usr/bin/relay#g; /^#/s#deploy/INSTALL.md#deploy/INSTALL.md (installed: /usr/share/doc/relay)#; /^Documentation=/s#$# file:/usr/share/doc/relay/INSTALL.md#' \
	deploy/relay.service > "$stage/relay.service"
gzip -9n < deploy/relay.8 > "$stage/relay.8.gz"

# The shipped config is the commented CAYIN example with every listener on
# loopback, so an installed package serves nobody until the admin edits it.
"$stage/relay" example | sed -E 's/^( *listen: *"?)0\.0\.0\.0:/\1127.0.0.1:/; s/^( *listen: *"?)\[::\]:/\1[::1]:/' > "$stage/etc/relay.yaml"
acl=$(sed -nE 's/^ *file: *"?([^" #]+)"?.*/\1/p' "$stage/etc/relay.yaml" | head -n1)
acl=${acl:-relay_hba.conf}
"$stage/relay" example -acl > "$stage/etc/$acl"
if grep -qE '^ *listen: *"?(0\.0\.0\.0|\[::\]):' "$stage/etc/relay.yaml"; then
	echo "build-deb: the packaged config still listens beyond loopback" >&2
	exit 1
fi
"$stage/relay" check -config "$stage/etc/relay.yaml" >/dev/null
mv "$stage/etc/$acl" "$stage/etc/acl"

cp README.md deploy/INSTALL.md "$stage/doc/"
# The keepalived recipe goes to /usr/lib/relay, not /usr/share/doc:
# keepalived runs its scripts from there, and minimal images drop the docs
# (dpkg path-exclude=/usr/share/doc/*).
# A copy stays with the docs too, so that a keepalived.conf copied from an
# older package (naming /usr/share/doc/relay/keepalived/) keeps running
# after an upgrade on a box that has the docs.
[ -d deploy/keepalived ] && mkdir -p "$stage/lib" && cp -r deploy/keepalived "$stage/lib/keepalived" &&
	cp -r deploy/keepalived "$stage/doc/keepalived"
[ -f deploy/grafana/relay.json ] && cp deploy/grafana/relay.json "$stage/doc/grafana-relay.json"

out="${DEB_OUT:-.}/relay_${version}_${arch}.deb"
# nfpm expands variables in the version and arch, not in paths: the ACL's
# name goes into a copy of the package description.
sed "s#\${RELAY_DEB_ACL}#$acl#g" deploy/nfpm.yaml > "$stage/nfpm.yaml"
GOARCH=$arch RELAY_DEB_VERSION=$version \
	$GO run "$NFPM" package --config "$stage/nfpm.yaml" --packager deb --target "$out" >&2
echo "$out"
