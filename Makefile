# The README's two commands: `make mount` (mount the default volfile) and `make test`.
# Both install what is missing first (Debian packages, npm packages, the build, and the
# `xlstack` and `mount.xlstack` commands). Run as root.
VOLFILE ?= volfiles/default.vol
MOUNTPOINT ?= /mnt/xlstack
PREFIX ?= /usr/local
NODE := $(shell command -v node)

.PHONY: mount test conformance bench build deps install

mount: install
	mkdir -p $(MOUNTPOINT)
	node dist/src/cli/main.js mount $(VOLFILE) $(MOUNTPOINT)

# jest (unit, integration on real mounts, races), then POSIX conformance on the kernel transport.
test: install
	npx jest
	test/conformance/run.sh kernel

# pjdfstest (POSIX conformance) on a local posix volfile, with each transport.
conformance: install
	test/conformance/run.sh kernel fuse-native

# `xlstack` on the PATH, and the helper that lets mount(8) and /etc/fstab mount volfiles.
install: build
	chmod 755 dist/src/cli/main.js
	ln -sf $(CURDIR)/dist/src/cli/main.js $(PREFIX)/bin/xlstack
	sed -e 's|@NODE@|$(NODE)|' -e 's|@XLSTACK@|$(CURDIR)/dist/src/cli/main.js|' bin/mount.xlstack.in >/sbin/mount.xlstack.new
	chmod 755 /sbin/mount.xlstack.new && mv /sbin/mount.xlstack.new /sbin/mount.xlstack

# fio and bindfs, and curl, gcc and libfuse3-dev for libfuse3's passthrough_ll (libfuse3-dev needs
# only libfuse3-3: it never replaces an installed fuse or fuse3).
bench: build
	@command -v fio >/dev/null && command -v bindfs >/dev/null && command -v gcc >/dev/null && command -v curl >/dev/null && pkg-config --exists fuse3 2>/dev/null || \
	  (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends fio bindfs gcc pkg-config libfuse3-dev curl ca-certificates)
	bench/run.sh

build: deps build/Release/posix_sys.node build/Release/fuse_dev.node
	npm run build

build/Release/posix_sys.node build/Release/fuse_dev.node &: xlators/storage/posix/sys.c src/fuse/kernel/dev.c binding.gyp
	npm run build:native

# The kernel transport needs only /dev/fuse as root. fuse-native needs libfuse2 and a
# fusermount: Debian's fuse3 and fuse both provide one and replace each other, so whichever
# is installed is used, and fuse3 is installed only when neither is. attr (getfattr,
# setfattr) and openssl (throwaway TLS certificates) for the tests.
deps: node_modules/.package-lock.json
	@dpkg -s libfuse2 attr openssl >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y libfuse2 attr openssl)
	@dpkg -s fuse3 >/dev/null 2>&1 || dpkg -s fuse >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y fuse3)

node_modules/.package-lock.json: package.json package-lock.json binding.gyp
	npm ci
