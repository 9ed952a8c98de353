# Local stand-ins for Pub/Sub, GCS and a gcsfuse mount, built from pinned Go modules.
# Included by the top-level Makefile (`include mk/emulators.mk`); also usable alone:
#   make -f mk/emulators.mk emulators gcsfuse
# Everything (module cache, build cache, binaries) lives under the ignored .cache/,
# so nothing outside the repo is needed and a second run is a no-op.

# ---- version pins -----------------------------------------------------------
# pstest (cloud.google.com/go/pubsub/v2) is pinned in tests/emulators/pstest/go.mod + go.sum.
FAKE_GCS_SERVER_VERSION ?= v1.56.1
# v3.11.5 and later declare `go 1.26.9`/`go 1.27.x`; v3.11.4 is the newest that builds
# with the machine's Go 1.26.8 without fetching another toolchain (GOTOOLCHAIN=local).
GCSFUSE_VERSION ?= v3.11.4
# -----------------------------------------------------------------------------

# Keep the including Makefile's default goal even if it includes this file at its top.
EMU_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)
EMU_IS_TOP := $(if $(filter 1,$(words $(MAKEFILE_LIST))),yes)

GO ?= go
EMU_ROOT := $(abspath $(dir $(abspath $(lastword $(MAKEFILE_LIST))))..)
EMU_CACHE := $(EMU_ROOT)/.cache
EMU_BIN := $(EMU_CACHE)/bin
EMU_STAMPS := $(EMU_CACHE)/stamps
EMU_PSTEST_SRC := $(EMU_ROOT)/tests/emulators/pstest

# Only the Go commands below see these (no global export into the including Makefile).
# -modcacherw keeps `rm -rf .cache` working for non-root users; -buildvcs=false skips git
# stamping (the repo may be a fresh clone owned by someone else); GOTOOLCHAIN=local
# forbids downloading a newer Go; checksums are verified against sum.golang.org, which
# the go command reaches through GOPROXY's /sumdb/ endpoint.
EMU_GOENV := GOPATH=$(EMU_CACHE)/go/path GOMODCACHE=$(EMU_CACHE)/go/mod \
	GOCACHE=$(EMU_CACHE)/go/build GOBIN=$(EMU_BIN) GOFLAGS="-modcacherw -buildvcs=false" \
	GOTOOLCHAIN=local CGO_ENABLED=0

PSTEST_SERVER := $(EMU_BIN)/pstest-server
FAKE_GCS_SERVER := $(EMU_BIN)/fake-gcs-server
GCSFUSE := $(EMU_BIN)/gcsfuse

.PHONY: emulators gcsfuse system-deps emulators-clean FORCE

emulators: $(PSTEST_SERVER) $(FAKE_GCS_SERVER)

gcsfuse: $(GCSFUSE)

system-deps:
	bash $(EMU_ROOT)/scripts/install-system-deps.sh

# One file per pinned binary holding the version it was built at. The recipe always runs
# but rewrites the file only when the pin changed, so make rebuilds exactly then (in
# either direction: a downgrade rebuilds too, which a plain timestamp stamp would miss).
$(EMU_STAMPS)/%.version: FORCE
	@mkdir -p $(@D)
	@echo '$(EMU_VERSION_$*)' | cmp -s - $@ || echo '$(EMU_VERSION_$*)' > $@

EMU_VERSION_fake-gcs-server = $(FAKE_GCS_SERVER_VERSION)
EMU_VERSION_gcsfuse = $(GCSFUSE_VERSION)

FORCE:

# A first build downloads and compiles a few hundred Go modules: say so once, keep go's own
# output (hundreds of `go: downloading` lines) in a log, and show its end only if it fails.
EMU_LOGS := $(EMU_CACHE)/build-logs
define emu_build
	@mkdir -p $(EMU_BIN) $(EMU_LOGS)
	@echo "building $(notdir $@) from pinned Go modules into .cache/bin (once; a few minutes" \
		"the first time; log: .cache/build-logs/$(notdir $@).log)"
	@( $(1) ) > $(EMU_LOGS)/$(notdir $@).log 2>&1 || \
		{ tail -n 40 $(EMU_LOGS)/$(notdir $@).log; echo "building $(notdir $@) failed"; exit 1; }
endef

$(PSTEST_SERVER): $(EMU_PSTEST_SRC)/main.go $(EMU_PSTEST_SRC)/go.mod $(EMU_PSTEST_SRC)/go.sum
	$(call emu_build,cd $(EMU_PSTEST_SRC) && $(EMU_GOENV) $(GO) build -mod=readonly -trimpath -o $@ .)

$(FAKE_GCS_SERVER): $(EMU_STAMPS)/fake-gcs-server.version
	$(call emu_build,$(EMU_GOENV) $(GO) install -trimpath github.com/fsouza/fake-gcs-server@$(FAKE_GCS_SERVER_VERSION))
	@touch $@

$(GCSFUSE): $(EMU_STAMPS)/gcsfuse.version
	$(call emu_build,$(EMU_GOENV) $(GO) install -trimpath \
		-ldflags "-X github.com/googlecloudplatform/gcsfuse/v3/common.gcsfuseVersion=$(GCSFUSE_VERSION:v%=%)" \
		github.com/googlecloudplatform/gcsfuse/v3@$(GCSFUSE_VERSION))
	@touch $@

emulators-clean:
	rm -f $(PSTEST_SERVER) $(FAKE_GCS_SERVER) $(GCSFUSE)
	rm -rf $(EMU_STAMPS)

ifneq ($(EMU_IS_TOP),yes)
.DEFAULT_GOAL := $(EMU_SAVED_DEFAULT_GOAL)
endif
