#!/usr/bin/env python3
"""Packs the .NET entry set into a NuGet package, by hand: a .nupkg is a zip (an OPC
package) with the .nuspec at its root and the files at their target paths.

    python3 packaging/nuget/pack.py LIB OUT_DIR [--strip]

LIB is a built libcertadm.so (dotnet/, `cargo build --release` puts it in target/release);
the package gets a copy of it under every name of the dotnet line of
packaging/extra-cdylibs, in runtimes/linux-x64/native/ (the NuGet convention for native
assets of a runtime identifier). The version is the one of Cargo.toml. --strip removes the
debug sections of the copies first (binutils' strip), as a published package would.
Prints the path of the package written, OUT_DIR/certadm-emu.VERSION.nupkg.

Not `nuget pack`: Debian's nuget is NuGet 2.8.7 (2014), which predates the manifest's
license expression (NuGet 4.9 added it); it was not tried. A modern `nuget pack` of the same
manifest with a <files> section (or `dotnet pack`) gives an equivalent package (README,
"C# and PowerShell on Linux").
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NATIVE = "runtimes/linux-x64/native"


def version():
    text = open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8").read()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


def probe_names():
    """lib<NAME>.so and lib<ALIAS>.so of the dotnet line of packaging/extra-cdylibs."""
    path = os.path.join(ROOT, "packaging", "extra-cdylibs")
    for line in open(path, encoding="utf-8"):
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#") and fields[0] == "certadm-emu-dotnet":
            return ["lib%s.so" % n for n in fields[1:]]
    sys.exit("pack.py: no certadm-emu-dotnet line in %s" % path)


CONTENT_TYPES = """<?xml version="1.0" encoding="utf-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
  <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml" />
  <Default Extension="nuspec" ContentType="application/octet" />
  <Default Extension="so" ContentType="application/octet" />
</Types>
"""

RELS = """<?xml version="1.0" encoding="utf-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
  <Relationship Type="http://schemas.microsoft.com/packaging/2010/07/manifest" Target="/certadm-emu.nuspec" Id="R0" />
</Relationships>
"""


def main(argv):
    args = [a for a in argv if a != "--strip"]
    if len(args) != 2:
        sys.exit(__doc__)
    lib, out_dir = args
    if not os.path.isfile(lib):
        sys.exit("pack.py: no library %r" % lib)
    v = version()
    template = open(os.path.join(ROOT, "packaging", "nuget", "certadm-emu.nuspec.in"), encoding="utf-8").read()
    nuspec = template.replace("@VERSION@", v)
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "certadm-emu.%s.nupkg" % v)
    with tempfile.TemporaryDirectory() as tmp:
        payload = os.path.join(tmp, "libcertadm.so")
        if "--strip" in argv:
            subprocess.run(["strip", "--strip-debug", "-o", payload, lib], check=True)
        else:
            shutil.copyfile(lib, payload)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("_rels/.rels", RELS)
            z.writestr("certadm-emu.nuspec", nuspec)
            for name in probe_names():
                info = zipfile.ZipInfo.from_file(payload, "%s/%s" % (NATIVE, name))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o755 << 16  # rwxr-xr-x, as a built library
                with open(payload, "rb") as f:
                    z.writestr(info, f.read())
            z.writestr("[Content_Types].xml", CONTENT_TYPES)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
