#!/usr/bin/env bash
# The ngtcp2 engine on libngtcp2 1.x, on a machine whose system library is 0.12 (Debian bookworm):
# Debian's own 1.x packages from bookworm-backports (1.11.0, the version trixie ships) are fetched
# with apt into a scratch directory and extracted there (nothing is installed: the system keeps
# 0.12), the engine and its ASan/UBSan build are compiled against them (native/build-ngtcp2.mjs
# --out), and then:
#   1. test/quic-engine.test.ts on the 1.x engine, and on its ASan/UBSan build;
#   2. the packet fuzzer, 25 000 packets, on the ASan/UBSan build;
#   3. the QUIC and WebTransport suites (npm test -- --engine ngtcp2 --engine-suites).
#
#   scripts/test-ngtcp2-1x.sh                 Debian's bookworm-backports packages (needs apt)
#   scripts/test-ngtcp2-1x.sh --prefix DIR    a libngtcp2 1.x (with libngtcp2_crypto_gnutls) installed in DIR
#
# .ci/run runs it after npm test. Exits non-zero when a step fails or the engine is not on 1.x.
set -euo pipefail
cd "$(dirname "$0")/.."
NODE=node_modules/.bin/node
work=$(mktemp -d /tmp/moq-ngtcp2-1x.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ "${1:-}" = "--prefix" ]; then
	[ -n "${2:-}" ] || { echo "test-ngtcp2-1x: --prefix needs a directory" >&2; exit 2; }
	pcdir=$(dirname "$(find "$2" -name libngtcp2.pc | head -1)")
else
	# A private apt configuration: the backports list, its own package lists and cache in $work.
	mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs" "$work/root"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" >"$work/sources.list"
	apt=(apt-get -qq -o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Debug::NoLocking=1)
	"${apt[@]}" update
	(cd "$work/debs" && "${apt[@]}" download libngtcp2-16 libngtcp2-crypto-gnutls8 libngtcp2-dev libngtcp2-crypto-gnutls-dev 2>&1 |
		grep -v "unsandboxed" || true)
	for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done
	pcdir=$(dirname "$(find "$work/root" -name libngtcp2.pc | head -1)")
	# The packages' .pc files say prefix=/usr: point them at the extracted tree.
	sed -i "s|^prefix=/usr\$|prefix=$work/root/usr|" "$pcdir"/libngtcp2*.pc
fi
[ -f "$pcdir/libngtcp2.pc" ] || { echo "test-ngtcp2-1x: no libngtcp2.pc found" >&2; exit 1; }
export PKG_CONFIG_PATH="$pcdir"
version=$(pkg-config --modversion libngtcp2)
echo "test-ngtcp2-1x: libngtcp2 $version from $pcdir"
case "$version" in 1.*) ;; *) echo "test-ngtcp2-1x: expected libngtcp2 1.x, found $version" >&2; exit 1 ;; esac

plain="$work/ngtcp2-1x.node"
sanitized="$work/ngtcp2-1x-sanitized.node"
"$NODE" native/build-ngtcp2.mjs --out "$plain"
"$NODE" native/build-ngtcp2.mjs --sanitize --out "$sanitized"
loaded=$("$NODE" -e 'console.log(require(process.argv[1]).ngtcp2Version)' "$plain")
[ "$loaded" = "$version" ] || { echo "test-ngtcp2-1x: the engine loads libngtcp2 $loaded, not $version" >&2; exit 1; }

echo "test-ngtcp2-1x: 1. test/quic-engine.test.ts, plain and under ASan/UBSan"
MOQ_NGTCP2_ADDON="$plain" npm test -- --engine ngtcp2 test/quic-engine.test.ts
asan=$(gcc -print-file-name=libasan.so)
MOQ_NGTCP2_ADDON="$sanitized" LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "$NODE" test/quic-engine.test.ts

echo "test-ngtcp2-1x: 2. the packet fuzzer under ASan/UBSan"
MOQ_NGTCP2_ADDON="$sanitized" npm run --silent fuzz:quic -- --sanitize --packets 25000 --seed 1

echo "test-ngtcp2-1x: 3. the QUIC and WebTransport suites"
MOQ_NGTCP2_ADDON="$plain" npm test -- --engine ngtcp2 --engine-suites
echo "test-ngtcp2-1x: libngtcp2 $version passed"
