# Nubis: `make up` runs the all-in-one cloud; `make test` runs every test.
SHELL := /bin/bash
CARGO ?= cargo
TINY_IMAGE_DIR ?= $(CURDIR)/target/tiny-image
DATA_DIR ?= $(CURDIR)/.nubis

.PHONY: up test deps build release tiny-image lint unit-tests bench clean install

## Install missing packages, build, and run the all-in-one cloud.
up: deps release
	./target/release/nubis up --data-dir $(DATA_DIR)

## Install missing packages, build, and run every test (PostgreSQL included).
test: deps tiny-image lint
	scripts/schemathesis.sh --install
	scripts/openstack-venv.sh >/dev/null
	scripts/with-postgres.sh $(CARGO) test --workspace
	@echo "make test: all tests passed"

deps:
	scripts/install-deps.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --bin nubis

## The tiny CirrOS-like guest the tests boot (kernel, initrd, disk).
tiny-image: deps
	images/tiny/build.sh $(TINY_IMAGE_DIR)

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Control-plane overhead: POST /v1/servers -> QEMU running, against QEMU started directly;
## then placement and listing at scale over 10,000 SIMULATED hosts (crates/sim).
bench: deps tiny-image
	$(CARGO) bench --bench create_to_running
	$(CARGO) bench --bench bandwidth
	$(CARGO) bench --bench placement_scale
	$(CARGO) bench --bench openstack_overhead

clean:
	$(CARGO) clean

## Install the release binary, the systemd units and the data directory.
## Enables and starts nothing. DESTDIR stages into a directory; NUBIS_BIN
## installs an already built binary instead of building the release one.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SYSTEMD_UNIT_DIR ?= /etc/systemd/system
STATE_DIR ?= /var/lib/nubis
install: $(if $(NUBIS_BIN),,release)
	install -D -m 0755 $(or $(NUBIS_BIN),target/release/nubis) $(DESTDIR)$(BINDIR)/nubis
	install -d -m 0755 $(DESTDIR)$(SYSTEMD_UNIT_DIR) $(DESTDIR)$(STATE_DIR)
	for unit in nubis.service nubis-agent.service; do \
		sed -e 's|/usr/local/bin/nubis|$(BINDIR)/nubis|g' -e 's|/var/lib/nubis|$(STATE_DIR)|g' \
			packaging/systemd/$$unit > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit && \
		chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/$$unit || exit 1; \
	done
	@echo "Installed. To run: systemctl daemon-reload && systemctl enable --now nubis"

## Fault injection, long: 300 rounds of kill -9 at random in both modes.
.PHONY: soak
soak: deps tiny-image
	scripts/soak.sh
