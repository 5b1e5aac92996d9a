# smelt — set-up, build and test. On a fresh Debian machine:
#   make image   # installs what it needs, builds smelt, the base images and examples/minimal.yml
#   make test    # runs every test (unit, registry, boot)

TARGET      := x86_64-unknown-linux-gnu
SMELT       := target/$(TARGET)/release/smelt
IMAGES      := kernel busybox runc init getty poweroff boot

.PHONY: image deps build images examples test lint bench clean-out

image: deps build images examples

deps:
	scripts/deps.sh

build:
	cargo build --release --locked --workspace

# Each recipe fills a directory; smelt packs it into a one-layer OCI image
# in the local store, tagged with the package version and :latest.
images: build
	scripts/images.sh $(SMELT) $(IMAGES)

examples: build
	$(SMELT) build -o out examples/minimal.yml

test: build
	cargo test --release --locked --workspace -- --test-threads=2

lint:
	cargo fmt --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

bench: build
	scripts/bench.sh

clean-out:
	rm -rf out
