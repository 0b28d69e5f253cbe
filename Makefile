GO ?= go
# The race detector needs cgo; the shipped binary does not.
TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: test deps vet build peers bench fuzz deb

# make test: install the real FTP peers when missing, vet, then every test with -race.
test: deps vet
	$(GO) test $(TEST_FLAGS) ./...

deps:
	./.ci/install-deps

vet:
	$(GO) vet ./...

# One static binary, written to $(OUT), stamped with $(VERSION) (relay version).
OUT ?= relay
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.stampedVersion=$(VERSION)" -o $(OUT) ./cmd/relay

# The peers the bench compares against (HAProxy, nginx, socat, rinetd, iperf3).
peers:
	./bench/peers.sh

bench:
	$(GO) run ./bench

# A short run of every fuzz target (go test runs one -fuzz target at a time).
# -fuzzminimizetime: go test minimizes every new interesting input for up to
# 60 s by default, and config's FuzzParse (about 0.5 ms an input) then spent
# whole runs minimizing: 20 inputs tried in 60 s, against 200 000 with 5 s.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s -fuzzminimizetime 5s $$pkg || exit 1; \
	  done; \
	done

# The Debian package relay_<version>_<arch>.deb (deploy/build-deb.sh, nfpm).
deb:
	./deploy/build-deb.sh
