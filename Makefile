# A thin front for cargo and the `hallows` tool. Everything real lives in Rust.

ARCH ?= aarch64
# `make run` runs the flagship system's scripted scenario (docs/demo.md):
# `hallows demo` boots it, drives it from inside and with curl,
# redis-cli, kcat and psql, checks everything and prints a summary.
# ARCH=x86_64 runs its x86_64 twin (QEMU microvm, TCG, AMD SVM): the
# same scenario less the dashboard, whose checks are reported as skipped
# (docs/demo.md#x86_64).
FLAGSHIP = $(if $(filter x86_64,$(ARCH)),vmm-config/examples/flagship-x86_64.toml,vmm-config/examples/flagship.toml)
PRIMES = $(if $(filter x86_64,$(ARCH)),vmm-config/examples/demo-x86_64.toml,vmm-config/examples/demo.toml)
MANIFEST ?= $(FLAGSHIP)
# ACCEL=kvm (x86_64): QEMU with KVM and the host CPU, for a developer's
# machine with nested virtualization; refused where /dev/kvm cannot host it.
ACCEL ?= tcg
CARGO ?= cargo
# Not --quiet: building hallows itself shows (cargo's progress), and so do
# the steps of building and booting a system (hallows's own lines). V=1
# passes cargo's whole output through (hallows --verbose).
HALLOWS = $(CARGO) run --package hallows -- $(if $(V),--verbose)
# ARCH given on the command line (or in the environment) must match the
# manifest's board: hallows refuses a mismatch instead of booting the board.
HALLOWS_ARCH = $(if $(filter command line environment,$(origin ARCH)),$(ARCH))
APT_PACKAGES = qemu-system-arm qemu-system-x86 qemu-efi-aarch64 ovmf bochs bochs-term bochsbios vgabios curl wrk gdb-multiarch redis-tools kcat postgresql-client python3-venv gcc libc6-dev
TARGETS = aarch64-unknown-none aarch64-unknown-none-softfloat x86_64-unknown-none aarch64-unknown-linux-musl aarch64-unknown-uefi x86_64-unknown-uefi

.PHONY: bench
.PHONY: all deps run run-primes serve test loom lint check inspect build sim clean store-crash bench-store bench-http bench-nagini run-todo run-dashboard soak crash-log bench-log bench-olap run-olap
# The Python clients the log partition's tests drive (kafka-python), and
# DuckDB with tpchgen-cli, against which the OLAP engine's TPC-H test checks.
VENV = target/venv

all: test

# Install what a fresh machine lacks: QEMU and Bochs with its terminal
# display (Debian packages, without the recommended block plugins that
# conflict with backported qemu-utils), the network clients the tests use
# (curl, wrk), gdb-multiarch (`hallows run --gdb`), the bare-metal Rust targets and components,
# aarch64-unknown-linux-musl (the Linux partition's programs), and Debian's
# arm64 kernel and busybox for Linux partitions with their initramfs
# (`hallows linux initramfs`: apt-verified packages, into target/linux,
# nothing installed; offline once cached).
deps:
	@if ! command -v qemu-system-aarch64 >/dev/null 2>&1 || ! command -v qemu-system-x86_64 >/dev/null 2>&1 || \
		! command -v curl >/dev/null 2>&1 || ! command -v wrk >/dev/null 2>&1 || \
		! command -v gdb-multiarch >/dev/null 2>&1 || ! command -v kcat >/dev/null 2>&1 || \
		! [ -f /usr/share/AAVMF/AAVMF_CODE.fd ] || ! [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || \
		! command -v redis-cli >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1 || \
		! command -v psql >/dev/null 2>&1 || \
		! command -v cc >/dev/null 2>&1 || \
		! python3 -c 'import ensurepip' >/dev/null 2>&1 || \
		! dpkg -s bochs-term bochsbios vgabios >/dev/null 2>&1; then \
		echo "installing QEMU, its UEFI firmware (AAVMF, OVMF), Bochs, curl, wrk, gdb-multiarch, redis-tools, kcat, postgresql-client and python3-venv"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	@installed="$$(rustup target list --installed)"; \
	for t in $(TARGETS); do \
		echo "$$installed" | grep -qx "$$t" || rustup target add "$$t"; \
	done
	@rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src llvm-tools
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@[ -x $(VENV)/bin/python ] && $(VENV)/bin/python -c 'import kafka' 2>/dev/null || \
		{ echo "creating $(VENV) with kafka-python"; python3 -m venv $(VENV) && $(VENV)/bin/pip install -q 'kafka-python>=2.1'; }
	@$(VENV)/bin/python -c 'import duckdb' 2>/dev/null && [ -x $(VENV)/bin/tpchgen-cli ] || \
		{ echo "installing duckdb and tpchgen-cli into $(VENV) (the OLAP engine's reference and TPC-H data)"; $(VENV)/bin/pip install -q duckdb tpchgen-cli; }
	@$(HALLOWS) linux initramfs

# The flagship's scenario (`hallows demo`), about three minutes from boot
# to summary; exits 0 when every check passed. Another MANIFEST= boots
# that system instead and returns when every partition is done.
run: deps
ifeq ($(MANIFEST),$(FLAGSHIP))
	HALLOWS_ARCH=$(HALLOWS_ARCH) HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) demo $(MANIFEST)
else
	HALLOWS_ARCH=$(HALLOWS_ARCH) HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) run $(MANIFEST)
endif

# The three-partition demo that counts primes (docs/first-system.md).
run-primes: deps
	HALLOWS_ARCH=$(HALLOWS_ARCH) HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) run $(PRIMES)

# Boot MANIFEST and keep it up for clients on the host (docs/deploy.md#make-serve):
# waits until each forwarded service answers, prints the curl / redis-cli /
# kcat / psql command for each (and the VNC address of a display); Ctrl-C
# stops every partition through the hypervisor and prints their summary.
serve: deps
	HALLOWS_ARCH=$(HALLOWS_ARCH) HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) serve $(MANIFEST)

# The Basilisk demo (docs/basilisk.md): the todo API on port 8080 of the
# host, its records on the store partition's disk
# (target/hallows/disks/todo/store.img, kept between runs).
run-todo: deps
	HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) run vmm-config/examples/todo.toml

# The Nagini dashboard on a VNC display (127.0.0.1, port printed); docs/nagini.md.
run-dashboard: deps
	HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) run vmm-config/examples/dashboard.toml --display vnc

build: deps
	HALLOWS_ARCH=$(HALLOWS_ARCH) $(HALLOWS) build $(MANIFEST)

check:
	$(HALLOWS) check $(MANIFEST)

inspect:
	$(HALLOWS) inspect $(MANIFEST)

# Host tests (every portable crate), the QEMU and Bochs integration tests,
# the loom models of the channel protocol, and clippy (which enforces a
# SAFETY comment on every unsafe block).
test: deps
	$(CARGO) test
	$(MAKE) --no-print-directory loom
	$(MAKE) --no-print-directory lint

# Clippy, warnings as errors: the host crates, then the hypervisor and the
# guest runtime for each bare-metal target, into their own target directory.
lint:
	CARGO_TARGET_DIR=target/clippy $(CARGO) clippy --all-targets -- -D warnings
	for t in x86_64-unknown-none aarch64-unknown-none-softfloat; do \
		for p in hallows-hv hallows-rt hallows-net; do \
			CARGO_TARGET_DIR=target/clippy $(CARGO) clippy -p $$p --target $$t -- -D warnings || exit 1; \
		done; \
	done
	# Nagini (a framework library) must build without std for both guest ISAs.
	for t in aarch64-unknown-none x86_64-unknown-none; do \
		CARGO_TARGET_DIR=target/clippy $(CARGO) clippy -p nagini --target $$t -- -D warnings || exit 1; \
	done
	for t in aarch64-unknown-uefi x86_64-unknown-uefi; do \
		CARGO_TARGET_DIR=target/clippy $(CARGO) clippy -p hallows-uefi --target $$t -- -D warnings || exit 1; \
	done

# The store's long crash campaign (make test runs 3 kills and 2 corrupted
# images): QEMU killed 60 times under a write load from the host and booted
# again on the same disk, every acknowledged write checked; then 20 images
# with random bytes flipped, nothing wrong served. About 15 minutes.
STORE_KILLS ?= 60
STORE_FLIPS ?= 20
store-crash: deps
	STORE_KILLS=$(STORE_KILLS) STORE_FLIPS=$(STORE_FLIPS) $(CARGO) test -p hallows-tests --test store acknowledged -- --nocapture

# The OLAP engine against DuckDB on TPC-H Q1/3/5/6/10/12/14/19 (host, release
# build, both on OLAP_THREADS threads, best of 5 runs each, data generated
# by tpchgen-cli at scale factor OLAP_SF). docs/olap.md has figures.
OLAP_SF ?= 0.1
OLAP_THREADS ?= 2
OLAP_DATA = target/olap-tpch-$(OLAP_SF)
OLAP_QUERIES = 1 3 5 6 10 12 14 19
bench-olap: deps
	@[ -f $(OLAP_DATA)/lineitem.tbl ] || $(VENV)/bin/tpchgen-cli -s $(OLAP_SF) --output-dir $(OLAP_DATA)
	$(CARGO) build --release -p hallows-olap --features std --bins
	target/release/hallows-olap-load --out $(OLAP_DATA).img --tpch $(OLAP_DATA)
	@for q in $(OLAP_QUERIES); do printf 'hallows-olap q%-2s ' $$q; \
		target/release/hallows-olap-query --disk $(OLAP_DATA).img --threads $(OLAP_THREADS) --time --repeat 5 \
			-f guests/frameworks/olap/queries/tpch/q$$q.sql 2>&1 >/dev/null | tail -1; done
	@REPEAT=5 THREADS=$(OLAP_THREADS) $(VENV)/bin/python guests/frameworks/olap/tests/duckdb_run.py $(OLAP_DATA) \
		$(foreach q,$(OLAP_QUERIES),guests/frameworks/olap/queries/tpch/q$(q).sql) | \
		awk '/^#query/ { printf "duckdb       %s %.3f ms\n", $$2, $$3 * 1000 }'

# The OLAP partition under QEMU (docs/olap.md#the-partition): TPC-H at
# scale factor OLAP_RUN_SF generated by tpchgen-cli, loaded into an image
# (lineitem sorted by ship date), and vmm-config/examples/olap.toml booted
# on it; psql -h 127.0.0.1 -p 15432 reaches it until Ctrl-C.
OLAP_RUN_SF ?= 0.01
OLAP_RUN_DATA = target/olap-tpch-$(OLAP_RUN_SF)
run-olap: deps
	@[ -f $(OLAP_RUN_DATA)/lineitem.tbl ] || $(VENV)/bin/tpchgen-cli -s $(OLAP_RUN_SF) --output-dir $(OLAP_RUN_DATA)
	$(CARGO) build --release -p hallows-olap --features std --bin hallows-olap-load
	target/release/hallows-olap-load --out $(OLAP_RUN_DATA).img --tpch $(OLAP_RUN_DATA) --sort lineitem=l_shipdate
	HALLOWS_ACCEL=$(ACCEL) $(HALLOWS) run vmm-config/examples/olap.toml --disk olap=$(OLAP_RUN_DATA).img

# The store engine against redb and SQLite at equal durability (host,
# criterion): point reads, strict-durability writes, range scans.
bench-store:
	$(CARGO) bench -p hallows-store-bench --bench engines

# Basilisk's HTTP stack against axum on the same routes and payloads
# (docs/basilisk.md#benchmarks): instructions per request under callgrind,
# then requests/s and latency under wrk over loopback; then the todo API in
# QEMU: wrk, and guest instructions per request (hallows net-cost).
# Issue 23: RustHallows against Linux on the same emulated machine, every
# comparison tools/bench/compare-* in turn, then docs/benchmarks.md
# (tools/bench/README.md). Under 60 minutes on a fresh machine.
bench: deps
	tools/bench/run-all

bench-http: deps
	@command -v valgrind >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq --no-install-recommends valgrind; }
	$(CARGO) build --release -p hallows-http-bench
	guests/frameworks/http/bench/callgrind.sh
	guests/frameworks/http/bench/wrk.sh
	guests/frameworks/http/bench/qemu.sh

# Nagini's frame costs on the host (docs/nagini.md#figures): instructions and
# heap allocations per dashboard frame under callgrind and DHAT.
bench-nagini: deps
	@command -v valgrind >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq --no-install-recommends valgrind; }
	guests/frameworks/nagini/bench/callgrind.sh

# Loom model-checks the ring protocol; its own target directory keeps the
# --cfg loom build from invalidating the normal one.
loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test -p hallows-ring --release --test loom

# The supervision soak (docs/supervision.md): a producer -> relay ->
# consumer chain whose relay restarts every 2 s, beside a hostile partition
# storming hypercalls and doorbells, for SOAK_SECONDS (default 30 minutes);
# checks the restart contract and the hypervisor's memory, prints the
# figures. Not part of `make test`, which runs a 20-second version.
SOAK_SECONDS ?= 1800
soak: deps
	SOAK_SECONDS=$(SOAK_SECONDS) $(CARGO) test -p hallows-tests --test supervision soak_long -- --ignored --nocapture

-include schedulers/Makefile.fragment

# The log partition's long crash campaign: QEMU killed 50 times during a
# produce load and booted again on the same disk (make test runs 3 kills).
crash-log: deps
	HALLOWS_LOG_KILLS=$${HALLOWS_LOG_KILLS:-50} $(CARGO) test -p hallows-tests --test log killed -- --nocapture

# The log's benchmarks (docs/log.md): on the host, the engine's flushed
# append throughput against the raw sequential write throughput of the same
# file; in QEMU, produce and consume throughput from the host, and guest
# instructions per produced batch (every instruction traced: a few minutes).
bench-log: deps
	$(CARGO) run --release -p hallows-log --features std --bin hallows-log-bench
	$(CARGO) test -p hallows-tests --test log bench -- --ignored --nocapture
	$(CARGO) run -p hallows -- net-cost tests/systems/log-stats.toml --requests 200 --warm-up 24 --path kafka:P8:cost --top 25

clean:
	$(CARGO) clean
