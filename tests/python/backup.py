#!/usr/bin/env python3
"""A full backup of an emulated CA from Python, through ctypes and the certbcli ABI.

Usage: backup.py [path/to/libcertadm_emu.so]   (or set CERTEMU_LIB)

It creates a CA with certemu_ca_create, runs the documented backup procedure (spec §8.1)
with the certbcli functions into a temporary directory, checks what it wrote against
the CA, then proves the backup: it stops the CA, deletes its files, restores the backup
(spec §8.3) and checks that the recovery brings every certificate back.

WCHAR strings are arrays of c_uint16 (ctypes' c_wchar is 32-bit on Linux). Exit code 0
means every check passed.
"""

import ctypes
import json
import os
import shutil
import sys
import tempfile
from ctypes import (POINTER, Structure, byref, c_char_p, c_int, c_int32, c_int64,
                    c_uint8, c_uint16, c_uint32, c_uint64, c_void_p)

S_OK = 0
CSBACKUP_TYPE_FULL = 1
CSRESTORE_TYPE_FULL = 1
CSCONTROL_SHUTDOWN = 1
CSBFT_LOG = 0x21
CSBFT_LOG_DIR = 0x82
CSBFT_CHECKPOINT_DIR = 0x83
CSBFT_CERTSERVER_DATABASE = 0x44
READ_SIZE = 512 * 1024  # the Microsoft sample's buffer

HRESULT = c_int32
BOOL = c_int
DWORD = c_uint32
HCSBC = c_void_p
PWCHAR = POINTER(c_uint16)


class CSEDB_RSTMAPW(Structure):
    _fields_ = [("pwszDatabaseName", PWCHAR), ("pwszNewDatabaseName", PWCHAR)]


class certemu_options(Structure):
    _fields_ = [
        ("size", c_uint32),
        ("records", c_uint32),
        ("seed", c_uint64),
        ("ca_name", c_char_p),
        ("edb_size", c_uint64),
        ("log_capacity", c_uint32),
        ("reserved", c_uint32),
    ]


class Failure(Exception):
    pass


def hx(hr):
    return "0x%08X" % (hr & 0xFFFFFFFF)


def load(path):
    lib = ctypes.CDLL(path)
    sig = {
        # certbcli.h
        "CertSrvIsServerOnlineW": (HRESULT, [PWCHAR, POINTER(BOOL)]),
        "CertSrvBackupPrepareW": (HRESULT, [PWCHAR, c_uint32, c_uint32, POINTER(HCSBC)]),
        "CertSrvRestoreGetDatabaseLocationsW": (HRESULT, [HCSBC, POINTER(PWCHAR), POINTER(DWORD)]),
        "CertSrvBackupGetDatabaseNamesW": (HRESULT, [HCSBC, POINTER(PWCHAR), POINTER(DWORD)]),
        "CertSrvBackupGetBackupLogsW": (HRESULT, [HCSBC, POINTER(PWCHAR), POINTER(DWORD)]),
        "CertSrvBackupGetDynamicFileListW": (HRESULT, [HCSBC, POINTER(PWCHAR), POINTER(DWORD)]),
        "CertSrvBackupOpenFileW": (HRESULT, [HCSBC, PWCHAR, DWORD, POINTER(c_int64)]),
        "CertSrvBackupRead": (HRESULT, [HCSBC, c_void_p, DWORD, POINTER(DWORD)]),
        "CertSrvBackupClose": (HRESULT, [HCSBC]),
        "CertSrvBackupTruncateLogs": (HRESULT, [HCSBC]),
        "CertSrvBackupEnd": (HRESULT, [HCSBC]),
        "CertSrvBackupFree": (None, [c_void_p]),
        "CertSrvServerControlW": (HRESULT, [PWCHAR, DWORD, POINTER(DWORD), POINTER(POINTER(c_uint8))]),
        "CertSrvRestorePrepareW": (HRESULT, [PWCHAR, c_uint32, POINTER(HCSBC)]),
        "CertSrvRestoreRegisterW": (HRESULT, [HCSBC, PWCHAR, PWCHAR, POINTER(CSEDB_RSTMAPW), c_int32,
                                              PWCHAR, c_uint32, c_uint32]),
        "CertSrvRestoreRegisterComplete": (HRESULT, [HCSBC, HRESULT]),
        "CertSrvRestoreEnd": (HRESULT, [HCSBC]),
        # certemu.h
        "certemu_options_init": (HRESULT, [POINTER(certemu_options)]),
        "certemu_ca_create": (HRESULT, [c_char_p, POINTER(certemu_options), POINTER(c_void_p)]),
        "certemu_ca_destroy": (HRESULT, [c_void_p]),
        "certemu_ca_server_name_w": (HRESULT, [c_void_p, POINTER(PWCHAR)]),
        "certemu_ca_issue": (HRESULT, [c_void_p, c_uint32]),
        "certemu_ca_revoke": (HRESULT, [c_void_p, c_uint32]),
        "certemu_ca_start": (HRESULT, [c_void_p]),
        "certemu_ca_wipe_files": (HRESULT, [c_void_p]),
        "certemu_ca_host_path": (HRESULT, [c_void_p, c_char_p, POINTER(c_void_p)]),
        "certemu_ca_report": (HRESULT, [c_void_p, POINTER(c_void_p)]),
        "certemu_free_string": (HRESULT, [c_void_p]),
        "certemu_last_error": (HRESULT, [POINTER(c_void_p)]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class Emu:
    def __init__(self, lib):
        self.lib = lib

    def take_string(self, p):
        """A char * returned by certemu, as str; frees it."""
        s = ctypes.string_at(p).decode("utf-8")
        if self.lib.certemu_free_string(p) != S_OK:
            raise Failure("certemu_free_string failed")
        return s

    def last_error(self):
        msg = c_void_p()
        if self.lib.certemu_last_error(byref(msg)) == S_OK and msg.value:
            return self.take_string(msg)
        return "(no message)"

    def check(self, what, hr, want=S_OK):
        if hr != want:
            raise Failure("%s returned %s, expected %s: %s" % (what, hx(hr), hx(want), self.last_error()))

    def report(self, ca):
        p = c_void_p()
        self.check("certemu_ca_report", self.lib.certemu_ca_report(ca, byref(p)))
        return json.loads(self.take_string(p))

    def host_path(self, ca, windows_path):
        p = c_void_p()
        self.check("certemu_ca_host_path(%s)" % windows_path,
                   self.lib.certemu_ca_host_path(ca, windows_path.encode("utf-8"), byref(p)))
        return self.take_string(p)


def wstr(s):
    """A NUL-terminated UTF-16 string as a c_uint16 array."""
    units = list(s.encode("utf-16-le"))
    codes = [units[i] | (units[i + 1] << 8) for i in range(0, len(units), 2)] + [0]
    return (c_uint16 * len(codes))(*codes)


def wstr_at(p):
    """Reads a NUL-terminated UTF-16 string at a POINTER(c_uint16)."""
    n = 0
    while p[n] != 0:
        n += 1
    return ctypes.string_at(ctypes.cast(p, c_void_p), n * 2).decode("utf-16-le")


def parse_list(p, cb):
    """A double-NUL "wszz" list of cb bytes: its raw bytes and its entries."""
    raw = ctypes.string_at(ctypes.cast(p, c_void_p), cb)
    if cb < 2 or cb % 2 or raw[-2:] != b"\0\0":
        raise Failure("list of %d bytes does not end with a NUL" % cb)
    text = raw.decode("utf-16-le")
    entries = text[:-1].split("\0")[:-1] if len(text) > 1 else []
    # cb counts every entry's NUL and the final one (spec §4).
    if cb != 2 * (sum(len(e) + 1 for e in entries) + 1):
        raise Failure("pcbSize %d does not match the list %r" % (cb, entries))
    return raw, entries


def get_list(emu, name, fn, h):
    p = PWCHAR()
    cb = DWORD(0)
    emu.check(name, fn(h, byref(p), byref(cb)))
    raw, entries = parse_list(p, cb.value)
    return p, raw, entries


def copy_file(emu, h, unc, dest_dir, buf):
    size = c_int64(-1)
    emu.check("CertSrvBackupOpenFileW(%s)" % unc, emu.lib.CertSrvBackupOpenFileW(h, wstr(unc), 0, byref(size)))
    dest = os.path.join(dest_dir, unc.rsplit("\\", 1)[-1])
    total = 0
    with open(dest, "wb") as f:
        while True:
            got = DWORD(0)
            emu.check("CertSrvBackupRead", emu.lib.CertSrvBackupRead(h, buf, READ_SIZE, byref(got)))
            f.write(ctypes.string_at(buf, got.value))
            total += got.value
            if got.value < READ_SIZE:
                break
    emu.check("CertSrvBackupClose", emu.lib.CertSrvBackupClose(h))
    if total != size.value or os.path.getsize(dest) != total:
        raise Failure("%s: read %d bytes, OpenFile said %d" % (unc, total, size.value))
    print("  %-70s %8d bytes" % (unc, total))
    return dest


def backup(emu, server, out_dir):
    """Spec §8.1, full backup with truncation; returns (locations bytes, log generations)."""
    lib = emu.lib
    db_dir = os.path.join(out_dir, "DataBase")
    os.makedirs(db_dir)
    online = BOOL(0)
    emu.check("CertSrvIsServerOnlineW", lib.CertSrvIsServerOnlineW(server, byref(online)))
    if not online.value:
        raise Failure("the CA is not online")
    h = HCSBC()
    emu.check("CertSrvBackupPrepareW", lib.CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, byref(h)))
    buf = ctypes.create_string_buffer(READ_SIZE)
    lists = []
    try:
        p, locations, entries = get_list(emu, "CertSrvRestoreGetDatabaseLocationsW",
                                         lib.CertSrvRestoreGetDatabaseLocationsW, h)
        lists.append(p)
        kinds = sorted(ord(e[0]) for e in entries)
        if kinds != sorted([CSBFT_CERTSERVER_DATABASE, CSBFT_LOG_DIR, CSBFT_CHECKPOINT_DIR]):
            raise Failure("unexpected locations %r" % entries)
        with open(os.path.join(db_dir, "certbkxp.dat"), "wb") as f:
            f.write(locations)
        p, _, dbs = get_list(emu, "CertSrvBackupGetDatabaseNamesW", lib.CertSrvBackupGetDatabaseNamesW, h)
        lists.append(p)
        if len(dbs) != 1 or ord(dbs[0][0]) != CSBFT_CERTSERVER_DATABASE or not dbs[0].endswith(".edb"):
            raise Failure("unexpected database list %r" % dbs)
        for e in dbs:
            copy_file(emu, h, e[1:], db_dir, buf)
        p, _, logs = get_list(emu, "CertSrvBackupGetBackupLogsW", lib.CertSrvBackupGetBackupLogsW, h)
        lists.append(p)
        gens = []
        for e in logs:
            if ord(e[0]) != CSBFT_LOG:
                raise Failure("log entry without '!': %r" % e)
            copy_file(emu, h, e[1:], db_dir, buf)
            gens.append(int(e.rsplit("\\", 1)[-1][3:-4], 16))
        emu.check("CertSrvBackupTruncateLogs", lib.CertSrvBackupTruncateLogs(h))
        p, _, dynamic = get_list(emu, "CertSrvBackupGetDynamicFileListW", lib.CertSrvBackupGetDynamicFileListW, h)
        lists.append(p)
        if not dynamic or any(not d.startswith("\\\\") for d in dynamic):
            raise Failure("unexpected dynamic files %r" % dynamic)
    finally:
        emu.check("CertSrvBackupEnd", lib.CertSrvBackupEnd(h))
        for p in lists:  # after End (step 15)
            lib.CertSrvBackupFree(ctypes.cast(p, c_void_p))
    return locations, sorted(gens)


def restore(emu, ca, server, backup_dir, gens):
    """Spec §8.3 for one full set: files to the saved locations, Register, Complete, End."""
    lib = emu.lib
    db_dir = os.path.join(backup_dir, "DataBase")
    with open(os.path.join(db_dir, "certbkxp.dat"), "rb") as f:
        text = f.read().decode("utf-16-le")
    locs = {ord(e[0]): e[1:] for e in text.split("\0") if e}
    database, log_dir = locs[CSBFT_CERTSERVER_DATABASE], locs[CSBFT_LOG_DIR]
    shutil.copyfile(os.path.join(db_dir, database.rsplit("\\", 1)[-1]), emu.host_path(ca, database))
    host_logs = emu.host_path(ca, log_dir)
    for g in gens:
        name = "edb%05X.log" % g
        shutil.copyfile(os.path.join(db_dir, name), os.path.join(host_logs, name))
    h = HCSBC()
    emu.check("CertSrvRestorePrepareW", lib.CertSrvRestorePrepareW(server, CSRESTORE_TYPE_FULL, byref(h)))
    wdb, wlog = wstr(database), wstr(log_dir)
    rstmap = (CSEDB_RSTMAPW * 1)(CSEDB_RSTMAPW(ctypes.cast(wdb, PWCHAR), ctypes.cast(wdb, PWCHAR)))
    emu.check("CertSrvRestoreRegisterW",
              lib.CertSrvRestoreRegisterW(h, wstr(locs[CSBFT_CHECKPOINT_DIR]), wlog, rstmap, 1, wlog,
                                          gens[0], gens[-1]))
    emu.check("CertSrvRestoreRegisterComplete", lib.CertSrvRestoreRegisterComplete(h, S_OK))
    emu.check("CertSrvRestoreEnd", lib.CertSrvRestoreEnd(h))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CERTEMU_LIB")
    if not path:
        print(__doc__)
        return 2
    emu = Emu(load(path))
    lib = emu.lib

    opts = certemu_options()
    emu.check("certemu_options_init", lib.certemu_options_init(byref(opts)))
    if opts.size != ctypes.sizeof(certemu_options):
        raise Failure("certemu_options is %d bytes in the library, %d here"
                      % (opts.size, ctypes.sizeof(certemu_options)))
    opts.records = 20
    opts.log_capacity = 4
    opts.ca_name = "Python Issuing CA".encode("utf-8")
    ca = c_void_p()
    emu.check("certemu_ca_create", lib.certemu_ca_create(None, byref(opts), byref(ca)))
    work = tempfile.mkdtemp(prefix="certemu-python-", dir=os.environ.get("CERTEMU_TEST_DIR"))
    try:
        pserver = PWCHAR()
        emu.check("certemu_ca_server_name_w", lib.certemu_ca_server_name_w(ca, byref(pserver)))
        server = wstr(wstr_at(pserver))
        print("CA %s on %s" % (emu.report(ca)["ca_name"], wstr_at(pserver)))
        emu.check("certemu_ca_issue", lib.certemu_ca_issue(ca, 7))
        emu.check("certemu_ca_revoke", lib.certemu_ca_revoke(ca, 5))

        out = os.path.join(work, "full")
        locations, gens = backup(emu, server, out)
        r = emu.report(ca)
        checks = [
            ("record_count", r["record_count"] == 27),
            ("sessions_open", r["sessions_open"] == 0),
            ("outstanding_buffers", r["outstanding_buffers"] == 0),
            ("backup_in_progress", r["backup_in_progress"] is False),
            ("last_full_backup", r["last_full_backup"] is not None
             and r["last_full_backup"]["high_gen"] == gens[-1]),
            ("truncation", all(g >= gens[0] for g in r["log_generations"])),
        ]
        edb = [f for f in os.listdir(os.path.join(out, "DataBase")) if f.endswith(".edb")]
        checks.append(("edb file", edb == ["Python Issuing CA.edb"]))
        checks.append(("certbkxp.dat", os.path.getsize(os.path.join(out, "DataBase", "certbkxp.dat"))
                       == len(locations)))
        failed = [name for name, ok in checks if not ok]
        if failed:
            raise Failure("after the backup, %s wrong: %s" % (", ".join(failed), json.dumps(r)))
        print("backup checked: logs %d..%d, report %s" % (gens[0], gens[-1], json.dumps(r)))

        # The backup restores: stop, lose the disk, restore, start.
        emu.check("CertSrvServerControlW",
                  lib.CertSrvServerControlW(server, CSCONTROL_SHUTDOWN, None, None))
        emu.check("certemu_ca_wipe_files", lib.certemu_ca_wipe_files(ca))
        restore(emu, ca, server, out, gens)
        emu.check("certemu_ca_start", lib.certemu_ca_start(ca))
        r = emu.report(ca)
        if r["service"] != "running" or r["record_count"] != 27 or r["revoked_count"] != 1 \
                or r["restore_marker_present"] or not r["last_start"]["hard"]:
            raise Failure("after the restore: %s" % json.dumps(r))
        print("restore checked: %d certificates, %d revoked" % (r["record_count"], r["revoked_count"]))

        # Bad arguments get HRESULTs.
        emu.check("CertSrvIsServerOnlineW(NULL)", lib.CertSrvIsServerOnlineW(None, byref(BOOL())),
                  want=-2147467261)  # E_POINTER
        emu.check("CertSrvBackupEnd(forged)", lib.CertSrvBackupEnd(c_void_p(0x12345)),
                  want=-2147024890)  # E_HANDLE
    finally:
        emu.check("certemu_ca_destroy", lib.certemu_ca_destroy(ca))
        shutil.rmtree(work, ignore_errors=True)
    print("backup.py: all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print("backup.py: FAILED: %s" % e, file=sys.stderr)
        sys.exit(1)
