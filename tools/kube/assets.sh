#!/usr/bin/env bash
# Builds kube-apiserver and etcd from their Go modules (tools/kube/
# apiserver and tools/kube/etcd), or takes them from the cache, and prints
# the directory holding them: the KUBEBUILDER_ASSETS of the Kubernetes
# provider tests (make test-kubernetes). No download site is needed, only
# the Go module proxy.
#
# The binaries are cached by version in $RG_K8S_CACHE/<kubernetes>-<etcd>/
# (default /var/cache/rustygate-k8s); delete it to build afresh. A cold
# build of kube-apiserver takes about 4.5 minutes on 2 cores and 2.4 GB of
# memory; etcd about 45 s.
#
# Environment (all optional):
#   RG_K8S_CACHE   the cache (default /var/cache/rustygate-k8s)
#   GO             the go command (default go)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GO=${GO:-go}
CACHE=${RG_K8S_CACHE:-/var/cache/rustygate-k8s}

modver() { # modver DIR MODULE: the version DIR/go.mod requires of MODULE
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"
}

KUBE=$(modver "$HERE/apiserver" k8s.io/kubernetes)
ETCD=$(modver "$HERE/etcd" go.etcd.io/etcd/server/v3)
DIR=$CACHE/$KUBE-etcd$ETCD
mkdir -p "$DIR"

log() { printf '==> %s\n' "$*" >&2; }

build_kube() {
	local minor=${KUBE#v1.}
	minor=${minor%%.*}
	local ld="-s -w"
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$KUBE -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
	done
	# kubectl is not built: the tests apply objects with client-go, and
	# envtest needs only the API server and etcd.
	log "building kube-apiserver $KUBE (cold: about 4.5 min on 2 cores)"
	(cd "$HERE/apiserver" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "$ld" \
		-o "$DIR/.tmp/" k8s.io/kubernetes/cmd/kube-apiserver)
}

build_etcd() {
	log "building etcd $ETCD"
	(cd "$HERE/etcd" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-s -w" -o "$DIR/.tmp/etcd" .)
}

start=$SECONDS
mkdir -p "$DIR/.tmp"
[ -x "$DIR/kube-apiserver" ] || build_kube
[ -x "$DIR/etcd" ] || build_etcd
# Renamed into place only once complete: an interrupted build leaves no
# half-written binary for the next run to trust.
for b in kube-apiserver etcd; do
	[ -f "$DIR/.tmp/$b" ] && mv "$DIR/.tmp/$b" "$DIR/$b"
done
rmdir "$DIR/.tmp" 2>/dev/null || true
log "kubernetes test assets in $DIR ($((SECONDS - start)) s)"
echo "$DIR"
