#!/bin/sh
# Installs certadm-emu into a prefix, or removes what an earlier run installed there.
#
#   packaging/install.sh [--prefix DIR]            build (cargo build --release) and install
#   packaging/install.sh --prefix DIR --lib FILE --bin FILE
#                                                   install these built files, no build
#   packaging/install.sh --prefix DIR --uninstall  remove every file listed in the manifest
#
# Layout (docs/INSTALL.md; VERSION and the soname come from Cargo.toml, see docs/ABI.md):
#   bin/certadm-emu
#   include/certbcli.h, include/certemu.h
#   lib/libcertadm_emu.so.VERSION                  the library (soname libcertadm_emu.so.ABI)
#   lib/libcertadm_emu.so.ABI -> ...so.VERSION     what programs load (ABI: MAJOR, or 0.MINOR)
#   lib/libcertadm_emu.so -> ...so.ABI             what -lcertadm_emu links
#   lib/pkgconfig/certadm-emu.pc
#   lib/cmake/certadm-emu/certadm-emuConfig.cmake, certadm-emuConfigVersion.cmake
#   lib/lib<NAME>.so                               each extra cdylib of packaging/extra-cdylibs
#   lib/lib<ALIAS>.so -> lib<NAME>.so              and its aliases there (the .NET names)
#   share/certadm-emu/install-manifest.txt         what was installed, for --uninstall
#
# Options:
#   --prefix DIR      where to install (default /usr/local); written into the .pc file
#   --lib FILE        an already built libcertadm_emu.so (skips building it)
#   --bin FILE        an already built certadm-emu executable (skips building it)
#   --extra-lib FILE  an already built extra cdylib, installed as lib/<its file name>
#                     (repeatable; given any, packaging/extra-cdylibs is not built)
#   --no-build        never run cargo: fail unless --lib, --bin (and the --extra-lib of
#                     packaging/extra-cdylibs) are given
#   --uninstall       remove what the manifest lists (and the directories install created)
#   -q, --quiet       print only errors
# Environment: DESTDIR (staged install: files go to $DESTDIR$PREFIX, the .pc file still
# says PREFIX), CARGO (the cargo to run), CARGO_BUILD_FLAGS (extra flags for cargo build).
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
prefix=/usr/local
lib=
bin=
extra_libs=
extra_given=no
uninstall=no
no_build=no
quiet=no

die() { echo "install.sh: $*" >&2; exit 1; }
say() { [ "$quiet" = yes ] || echo "$@"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --lib) [ $# -ge 2 ] || die "--lib needs a file"; lib=$2; shift 2 ;;
    --bin) [ $# -ge 2 ] || die "--bin needs a file"; bin=$2; shift 2 ;;
    --extra-lib) [ $# -ge 2 ] || die "--extra-lib needs a file"
      extra_libs="$extra_libs
$2"; extra_given=yes; shift 2 ;;
    --no-build) no_build=yes; shift ;;
    --uninstall) uninstall=yes; shift ;;
    -q|--quiet) quiet=yes; shift ;;
    -h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
done
case "$prefix" in
  /*) ;;
  *) die "--prefix must be an absolute path, not '$prefix'" ;;
esac
prefix=${prefix%/}
dest=${DESTDIR:-}$prefix
manifest_rel=share/certadm-emu/install-manifest.txt
manifest=$dest/$manifest_rel

# ----- uninstall ------------------------------------------------------------------------------
# The manifest lists files and links, and (ending in /) the directories install created.
if [ "$uninstall" = yes ]; then
  [ -f "$manifest" ] || die "no $manifest: nothing installed by this script in $dest"
  list=$(cat "$manifest")
  printf '%s\n' "$list" | grep -v '/$' | while IFS= read -r f; do
    if [ -n "$f" ] && { [ -e "$dest/$f" ] || [ -L "$dest/$f" ]; }; then
      rm -f "$dest/$f"
      say "removed $dest/$f"
    fi
  done
  # Deepest first; a directory that holds other files stays.
  printf '%s\n' "$list" | grep '/$' | sort -r | while IFS= read -r d; do
    [ "$d" != ./ ] || d=
    if rmdir "$dest/$d" 2>/dev/null; then say "removed $dest/$d"; fi
  done
  exit 0
fi

# ----- the version: Cargo.toml is the one source ---------------------------------------------
version=$(awk '
  /^\[/ { in_package = ($0 == "[package]") }
  in_package && /^version[ \t]*=/ { gsub(/^version[ \t]*=[ \t]*"|".*$/, ""); print; exit }
' "$root/Cargo.toml")
case "$version" in
  [0-9]*.[0-9]*.[0-9]*) ;;
  *) die "cannot read the version of [package] in $root/Cargo.toml (got '$version')" ;;
esac
major=${version%%.*}
rest=${version#*.}
minor=${rest%%.*}
# The same rule as build.rs (docs/ABI.md): the soname carries MAJOR, or 0.MINOR for 0.x.
if [ "$major" = 0 ]; then abi=0.$minor; else abi=$major; fi
soname=libcertadm_emu.so.$abi
real=libcertadm_emu.so.$version

# ----- build what was not given ---------------------------------------------------------------
cargo=${CARGO:-cargo}
build() { # build ARGS...: prints the cargo messages of the build (JSON)
  # shellcheck disable=SC2086 # CARGO_BUILD_FLAGS is a list of flags
  (cd "$root" && "$cargo" build --release --locked --message-format=json-render-diagnostics \
    ${CARGO_BUILD_FLAGS:-} "$@") || die "cargo build $* failed"
}
artifact() { # artifact PATTERN < messages: the first artifact path that ends with PATTERN
  grep -o "\"[^\"]*$1\"" | head -n 1 | tr -d '"'
}
if [ -z "$lib" ] || [ -z "$bin" ]; then
  [ "$no_build" = no ] || die "--no-build needs --lib and --bin"
  say "building certadm-emu $version (cargo build --release --locked --lib --bin certadm-emu)"
  msgs=$(build --lib --bin certadm-emu)
  [ -n "$lib" ] || lib=$(printf '%s\n' "$msgs" | artifact '/libcertadm_emu\.so')
  [ -n "$bin" ] || bin=$(printf '%s\n' "$msgs" | grep -o '"executable":"[^"]*/certadm-emu"' \
    | head -n 1 | sed 's/^"executable"://; s/"//g')
fi
if [ "$extra_given" = no ] && grep -q '^[^#]' "$root/packaging/extra-cdylibs" 2>/dev/null; then
  [ "$no_build" = no ] || die "--no-build: give the libraries of packaging/extra-cdylibs with --extra-lib"
  # One line per extra cdylib: PACKAGE LIBNAME [ALIAS...] (built with -p PACKAGE --lib;
  # lib/libLIBNAME.so, and a link lib/libALIAS.so for each alias).
  while read -r package name _; do
    case "$package" in ''|'#'*) continue ;; esac
    [ -n "$name" ] || die "packaging/extra-cdylibs: '$package' has no library name"
    say "building $package (lib$name.so)"
    f=$(build -p "$package" --lib | artifact "/lib$name\\.so")
    [ -n "$f" ] || die "cargo built no lib$name.so for $package"
    extra_libs="$extra_libs
$f"
  done < "$root/packaging/extra-cdylibs"
fi
[ -f "$lib" ] || die "no library '$lib'"
[ -f "$bin" ] || die "no executable '$bin'"

# The library must carry the soname of this version (it was built from another one otherwise).
if command -v readelf >/dev/null 2>&1; then
  found=$(LC_ALL=C readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  [ "$found" = "$soname" ] || die "$lib has soname '$found', not $soname (built from another version?)"
fi

# ----- install --------------------------------------------------------------------------------
installed=
created=
note() { installed="$installed
$1"; }
mkdirs() { # mkdirs REL...: creates each directory under $dest, remembering the ones it made
  if [ ! -d "$dest" ]; then
    mkdir -p "$dest"
    created="$created
./"
  fi
  for d in "$@"; do
    path=
    for part in $(echo "$d" | tr '/' ' '); do
      path=${path:+$path/}$part
      if [ ! -d "$dest/$path" ]; then
        mkdir -p "$dest/$path"
        created="$created
$path/"
      fi
    done
  done
}
put() { # put MODE SRC REL: installs SRC as $dest/REL (a new file: running programs keep theirs)
  install -m "$1" "$2" "$dest/$3"
  note "$3"
  say "installed $dest/$3"
}
link() { # link TARGET REL: the symbolic link $dest/REL -> TARGET
  ln -sfn "$1" "$dest/$2"
  note "$2"
  say "installed $dest/$2 -> $1"
}
subst() { # subst TEMPLATE OUT: the template with @VERSION@, @PREFIX@, ... replaced
  sed -e "s|@VERSION@|$version|g" -e "s|@PREFIX@|$prefix|g" -e "s|@SONAME@|$soname|g" \
      -e "s|@ABI@|$abi|g" -e "s|@LIBFILE@|$real|g" "$1" > "$2"
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdirs bin include lib/pkgconfig lib/cmake/certadm-emu share/certadm-emu

put 755 "$bin" bin/certadm-emu
put 644 "$root/include/certbcli.h" include/certbcli.h
put 644 "$root/include/certemu.h" include/certemu.h
put 755 "$lib" "lib/$real"
link "$real" "lib/$soname"
link "$soname" lib/libcertadm_emu.so
subst "$root/packaging/certadm-emu.pc.in" "$tmp/certadm-emu.pc"
put 644 "$tmp/certadm-emu.pc" lib/pkgconfig/certadm-emu.pc
for f in certadm-emuConfig.cmake certadm-emuConfigVersion.cmake; do
  subst "$root/packaging/cmake/$f.in" "$tmp/$f"
  put 644 "$tmp/$f" "lib/cmake/certadm-emu/$f"
done
printf '%s\n' "$extra_libs" | while IFS= read -r f; do
  [ -n "$f" ] || continue
  [ -f "$f" ] || die "no extra library '$f'"
  case "$(basename "$f")" in
    libcertadm_emu.so*) die "extra library '$f' has the name of the main library" ;;
  esac
  base=$(basename "$f")
  install -m 755 "$f" "$dest/lib/$base"
  say "installed $dest/lib/$base"
  echo "lib/$base" >> "$tmp/extra"
  # The aliases of packaging/extra-cdylibs' line whose LIBNAME names this file.
  for alias in $(awk -v base="$base" '
      $1 !~ /^#/ && NF >= 2 && "lib" $2 ".so" == base { for (i = 3; i <= NF; i++) print $i }
    ' "$root/packaging/extra-cdylibs" 2>/dev/null); do
    case "$alias" in
      */*|certadm_emu*) die "packaging/extra-cdylibs: bad alias '$alias' for $base" ;;
    esac
    ln -sfn "$base" "$dest/lib/lib$alias.so"
    say "installed $dest/lib/lib$alias.so -> $base"
    echo "lib/lib$alias.so" >> "$tmp/extra"
  done
done
[ ! -f "$tmp/extra" ] || installed="$installed
$(cat "$tmp/extra")"

# The manifest: every file of this and earlier installs into this prefix (an upgrade keeps the
# older library files, as make install does, and --uninstall removes them all).
{ cat "$manifest" 2>/dev/null || true; printf '%s\n' "$installed" "$created"; echo "$manifest_rel"; } \
  | grep -v '^$' | sort -u > "$tmp/manifest"
install -m 644 "$tmp/manifest" "$manifest"

say "certadm-emu $version installed in $dest (soname $soname)"
if [ -z "${DESTDIR:-}" ]; then
  case "$prefix" in
    /usr|/usr/local)
      if [ "$(id -u)" = 0 ] && command -v ldconfig >/dev/null 2>&1; then ldconfig; fi ;;
    *)
      say "note: programs linked with -lcertadm_emu find the library with LD_LIBRARY_PATH=$prefix/lib"
      say "      (CMake projects get an rpath to $prefix/lib in their build tree)" ;;
  esac
fi
