# The README's two commands: `make mount` (mount the default volfile) and `make test`.
# Both install what is missing first (Debian packages, npm packages, the build). Run as root.
VOLFILE ?= volfiles/default.vol
MOUNTPOINT ?= /mnt/xlstack

.PHONY: mount test bench build deps

mount: build
	mkdir -p $(MOUNTPOINT)
	node dist/src/cli/main.js mount $(VOLFILE) $(MOUNTPOINT)

test: build
	npx jest

bench: build
	@command -v fio >/dev/null && command -v bindfs >/dev/null || (apt-get update && apt-get install -y fio bindfs)
	bench/run.sh

build: deps build/Release/posix_sys.node build/Release/fuse_dev.node
	npm run build

build/Release/posix_sys.node build/Release/fuse_dev.node &: xlators/storage/posix/sys.c src/fuse/kernel/dev.c binding.gyp
	npm run build:native

# fuse + libfuse2: FUSE itself; attr: getfattr/setfattr, which the tests use.
deps: node_modules/.package-lock.json
	@dpkg -s fuse libfuse2 attr >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y fuse libfuse2 attr)

node_modules/.package-lock.json: package.json package-lock.json binding.gyp
	npm ci
