#!/usr/bin/env bash
# Builds the Debian package: dist-deb/blksnap-manager_<version>_<arch>.deb
#
#   npm run package:deb                 (compiles with tsc first)
#   bash scripts/package-deb.sh [--out DIR]
#
# Uses only Debian's own tools (dpkg-deb with --root-owner-group, so no
# fakeroot is needed) and what `npm ci` put in node_modules: the production
# dependencies are copied from there (`npm ls --omit=dev`), so the build
# needs no network. The files the package ships are in packaging/; see
# docs/operations.md for what goes where on the installed system.
set -euo pipefail

die() { echo "package-deb: $*" >&2; exit 1; }

out_dir=dist-deb
while [ $# -gt 0 ]; do
	case "$1" in
	--out) [ $# -ge 2 ] || die "--out needs a directory"; out_dir=$2; shift 2 ;;
	--out=*) out_dir=${1#--out=}; shift ;;
	-h | --help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
	*) die "unknown argument: $1 (usage: package-deb.sh [--out DIR])" ;;
	esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

for tool in dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev gzip:gzip node:nodejs npm:npm; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || die "${tool%%:*} not found (apt-get install ${tool#*:})"
done
for file in dist/lib/cli/main.js dist/lib/config/index.js bin/blksnap docs/blksnap.8 packaging/control.in; do
	[ -e "$file" ] || die "$file is missing (run \`npm run package:deb\`, which compiles first)"
done

name=$(node -p 'require("./package.json").name')
version=$(node -p 'require("./package.json").version')
arch=$(dpkg --print-architecture)
node_arch=$(node -p 'process.arch')
maintainer=$(node -p 'const a = require("./package.json").author; (typeof a === "string" ? a : a && a.email ? `${a.name} <${a.email}>` : "") || "blksnap manager team <blksnap-manager@example.org>"')
homepage=$(node -p 'require("./package.json").homepage || ""')

# The Debian changelog is kept by hand; it must describe this version.
changelog_version=$(sed -n '1s/^[^ ]* (\([^)]*\)).*/\1/p' packaging/changelog)
[ "$changelog_version" = "$version" ] ||
	die "packaging/changelog starts with version ${changelog_version:-?} but package.json says $version: add a changelog entry"
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(date -d "$(sed -n 's/^ -- .*>  //p' packaging/changelog | head -n 1)" +%s)
	export SOURCE_DATE_EPOCH
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/blksnap-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
app=$root/usr/lib/$name
mkdir -p "$app" "$root/usr/bin" "$root/DEBIAN"

# --- the application ------------------------------------------------------
cp -a bin "$app/bin"
# Compiled code only: no tests, source maps or declarations (the sources
# they point to are not shipped).
mkdir -p "$app/dist"
(cd dist && find . -type f -name '*.js' ! -path './test/*' ! -path './scripts/*' -print0 | tar --null -T - -cf -) |
	tar -C "$app/dist" -xf -
node -e '
	const p = require("./package.json");
	const keep = ["name", "version", "description", "license", "private", "main", "bin", "engines", "dependencies"];
	process.stdout.write(JSON.stringify(Object.fromEntries(keep.filter((k) => k in p).map((k) => [k, p[k]])), null, 2) + "\n");
' >"$app/package.json"

# Production dependencies, copied as npm laid them out (nested
# node_modules included). `npm ls` fails when node_modules does not match
# package-lock.json: then run `npm ci` first.
npm ls --omit=dev --all --parseable >"$stage/deps" 2>"$stage/deps.err" ||
	die "node_modules does not match package-lock.json (npm ls: $(head -n 1 "$stage/deps.err")); run npm ci"
while IFS= read -r dep; do
	rel=${dep#"$repo"/}
	[ "$rel" != "$dep" ] && [ -n "$rel" ] || continue
	mkdir -p "$app/$rel"
	# Each package without its own node_modules: nested packages are listed too.
	tar -C "$dep" --exclude=./node_modules -cf - . | tar -C "$app/$rel" -xf -
done <"$stage/deps"

# Trim what Node never loads. koffi ships its C++ sources and a musl build
# next to the glibc one; Debian is glibc. Older koffi (2.x) kept one
# directory per platform under build/koffi: keep only this machine's.
find "$app/node_modules" \( -name '*.d.ts' -o -name '*.d.cts' -o -name '*.d.mts' -o -name '*.map' \
	-o -name '*.cc' -o -name '*.hh' -o -name '*.inc' -o -name '*.c' -o -name '*.h' -o -name 'CMakeLists.txt' \
	-o -iname 'changelog*' -o -iname 'readme*' \) -type f -delete
# Dot files are packaging leftovers of the npm packages (.npmignore, lint configs).
find "$app/node_modules" -name '.*' -prune -exec rm -rf {} +
koffi=$app/node_modules/koffi
if [ -d "$koffi" ]; then
	# cnoke.cjs is koffi's install-time build helper.
	rm -rf "$koffi/vendor" "$koffi/doc" "$koffi/lib/native" "$koffi/cnoke.cjs"
	find "$app/node_modules" -type d \( -path '*/@koromix/koffi-*/musl_*' -o -path '*/koffi/build/koffi/*' \) \
		! -name "linux_$node_arch" -prune -exec rm -rf {} +
fi
find "$app/node_modules" -depth -type d -empty -delete
node -e 'const k = require(process.argv[1]); if (typeof k.load !== "function") process.exit(1)' "$koffi" ||
	die "koffi does not load from the package tree (after trimming $koffi)"

# V8 code cache of the packaged modules (bin/code-cache.js): the installed
# tree is read-only at run time, so it is made here, by the node that runs
# the package where possible (V8 ignores a cache made by another build).
cache_node=/usr/bin/node
[ -x "$cache_node" ] || cache_node=node
"$cache_node" "$app/bin/code-cache.js" "$app" >/dev/null || die "could not build the V8 code cache of $app"

mkdir -p "$app/libexec"
install -m 0755 packaging/blksnap-backup-job "$app/libexec/blksnap-backup-job"

# /usr/bin/blksnap runs Debian's node explicitly: root's cron and systemd
# have their own PATH, and a node elsewhere in it must not be picked.
cat >"$root/usr/bin/blksnap" <<EOF
#!/bin/sh
exec /usr/bin/node /usr/lib/$name/bin/blksnap "\$@"
EOF

# --- documentation, completion, configuration, units -----------------------
mkdir -p "$root/usr/share/man/man8" "$root/usr/share/doc/$name" "$root/usr/share/bash-completion/completions"
gzip -9n <docs/blksnap.8 >"$root/usr/share/man/man8/blksnap.8.gz"
gzip -9n <packaging/changelog >"$root/usr/share/doc/$name/changelog.gz"
for doc in operations.md repository-format.md; do
	if [ -f "docs/$doc" ]; then install -m 0644 "docs/$doc" "$root/usr/share/doc/$name/$doc"; fi
done
node packaging/make-copyright.js "$app" "$maintainer" >"$root/usr/share/doc/$name/copyright"

# Completion from the packaged copy itself: proves it starts, and the
# script matches the commands this version has.
node "$app/bin/blksnap" completion >"$root/usr/share/bash-completion/completions/blksnap" 2>"$stage/completion.err" ||
	die "\`blksnap completion\` failed: $(head -n 3 "$stage/completion.err")"
grep -q 'complete' "$root/usr/share/bash-completion/completions/blksnap" ||
	die "\`blksnap completion\` printed no bash completion script"

install -D -m 0644 packaging/blksnap.conf "$root/etc/blksnap/blksnap.conf"
install -D -m 0644 packaging/blksnap-backup@.service "$root/lib/systemd/system/blksnap-backup@.service"
install -D -m 0644 packaging/blksnap-backup@.timer "$root/lib/systemd/system/blksnap-backup@.timer"
install -D -m 0644 packaging/tmpfiles.conf "$root/usr/lib/tmpfiles.d/$name.conf"

# --- permissions: the same whatever the umask or npm's tarballs said --------
find "$root" -type d -exec chmod 0755 {} +
find "$root" -type f -exec chmod 0644 {} +
chmod 0755 "$root/usr/bin/blksnap" "$app/bin/blksnap" "$app/libexec/blksnap-backup-job"
# Files that start with #! are scripts (npm packages' commands, and some
# modules that can also run on their own): they keep an execute bit.
(cd "$app" && find node_modules -type f \( -name '*.js' -o -name '*.cjs' -o -name '*.mjs' -o -path '*/bin/*' \) -print0 |
	xargs -0 -r awk 'FNR == 1 && /^#!/ { printf "%s%c", FILENAME, 0 } { nextfile }' | xargs -0 -r chmod 0755)

# Libraries the native code (koffi.node) links against, as dpkg-shlibdeps
# derives them from the symbols it uses (the N-API symbols come from node).
mkdir -p "$stage/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$name" "$name" >"$stage/shlibs/debian/control"
mapfile -d '' natives < <(find "$app" -type f -name '*.node' -print0)
shlibs_depends=
if [ ${#natives[@]} -gt 0 ]; then
	shlibs_depends=$(cd "$stage/shlibs" && dpkg-shlibdeps --warnings=0 -O "${natives[@]/#/-e}" | sed -n 's/^shlibs:Depends=//p')
	[ -n "$shlibs_depends" ] || die "dpkg-shlibdeps found no library dependencies for ${natives[*]}"
fi

# --- control area ---------------------------------------------------------
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$root/DEBIAN/"
echo /etc/blksnap/blksnap.conf >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"
(cd "$root" && find . -type f ! -path './DEBIAN/*' ! -path './etc/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
installed_kib=$(du -s -k --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
	-e "s|@INSTALLED_SIZE@|$installed_kib|" -e "s|@HOMEPAGE@|$homepage|" packaging/control.in |
	sed -e "s|, @SHLIBS_DEPENDS@|${shlibs_depends:+, $shlibs_depends}|" |
	{ if [ -z "$homepage" ]; then grep -v '^Homepage: $'; else cat; fi; } >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/control"

mkdir -p "$out_dir"
deb="$out_dir/${name}_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb ($(du -k "$deb" | cut -f1) KiB, installed $installed_kib KiB)"
