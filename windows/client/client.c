/*
 * client.exe: a Windows backup-and-restore client of Certificate Services, written from
 * the documented procedures ("Backing Up Certificate Services", "Restoring Certificate
 * Services from Backup"; spec §8.1 and §8.3), that loads certadm.dll at run time
 * (LoadLibrary + GetProcAddress with the FN* typedefs of certbcli.h).
 *
 * Build (MinGW-w64):
 *   x86_64-w64-mingw32-gcc -std=c11 -O2 -municode -I include -o client.exe \
 *       windows/client/client.c
 *
 * Usage:
 *   client.exe [--map UNCPREFIX=LOCALDIR]... SERVER BACKUPDIR full
 *   client.exe [--map UNCPREFIX=LOCALDIR]... SERVER BACKUPDIR incremental
 *   client.exe [--map UNCPREFIX=LOCALDIR]... SERVER FULLDIR restore [INCDIR...]
 *
 *   full         CSBACKUP_TYPE_FULL into BACKUPDIR\DataBase: certbkxp.dat (the database
 *                locations), the database, the logs; then the logs are truncated.
 *   incremental  CSBACKUP_TYPE_LOGS_ONLY into BACKUPDIR\DataBase: the logs.
 *   restore      (the service must be stopped; it is shut down if it is online) copies
 *                the database and logs of the full set FULLDIR into the locations saved
 *                in its certbkxp.dat and registers it (CSRESTORE_TYPE_FULL), then does
 *                the same for each incremental set INCDIR in order (restore type 0, logs
 *                only). Starting the service afterwards runs the recovery.
 *
 * Restore files and the CA's directories: the locations are UNC paths
 * (\\HOST\C$\Windows\System32\CertLog\...). On real Windows they are used directly (the
 * administrative share of the CA's machine). Under Wine, or whenever the share is not
 * reachable, give a translation with --map (or CERTADM_EMU_PATH_MAP, entries separated by
 * ';'): every path that starts with UNCPREFIX (case-insensitive, e.g. \\ca01.contoso.test\C$)
 * is rewritten to LOCALDIR followed by the rest of the path in lower case (the emulator
 * keeps a machine's files under lower-case host names: see the HostPath control call). The
 * certadm-emu test asks the server for the host directory of C:\ (HostPath) and passes its
 * Wine name (Z:\...).
 *
 * Exit status: 0 on success, 1 on a failure (the failing call and its HRESULT on stderr),
 * 2 on a usage error.
 */
#define _CERTBCLI_DEFINED /* no dllimport: the functions are resolved at run time */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "certbcli.h"

#define READ_BUFFER_SIZE 524288 /* the 512 KiB of the Microsoft sample */
#define BACKUP_SUBDIR L"DataBase"
#define LOCATIONS_FILE L"certbkxp.dat"

/* ------------------------------------------------------------------ certadm.dll */

static FNCERTSRVISSERVERONLINEW *pIsServerOnline;
static FNCERTSRVBACKUPPREPAREW *pBackupPrepare;
static FNCERTSRVBACKUPGETDATABASENAMESW *pBackupGetDatabaseNames;
static FNCERTSRVBACKUPGETDYNAMICFILELISTW *pBackupGetDynamicFileList;
static FNCERTSRVBACKUPOPENFILEW *pBackupOpenFile;
static FNCERTSRVBACKUPREAD *pBackupRead;
static FNCERTSRVBACKUPCLOSE *pBackupClose;
static FNCERTSRVBACKUPGETBACKUPLOGSW *pBackupGetBackupLogs;
static FNCERTSRVBACKUPTRUNCATELOGS *pBackupTruncateLogs;
static FNCERTSRVBACKUPEND *pBackupEnd;
static FNCERTSRVBACKUPFREE *pBackupFree;
static FNCERTSRVRESTOREGETDATABASELOCATIONSW *pRestoreGetDatabaseLocations;
static FNCERTSRVRESTOREPREPAREW *pRestorePrepare;
static FNCERTSRVRESTOREREGISTERW *pRestoreRegister;
static FNCERTSRVRESTOREREGISTERCOMPLETE *pRestoreRegisterComplete;
static FNCERTSRVRESTOREEND *pRestoreEnd;
static FNCERTSRVSERVERCONTROLW *pServerControl;

static int resolve(HMODULE m, const char *name, FARPROC *out)
{
    *out = GetProcAddress(m, name);
    if (*out == NULL) {
        fprintf(stderr, "certadm.dll does not export %s\n", name);
        return -1;
    }
    return 0;
}

#define RESOLVE(var, name)                                                                   \
    do {                                                                                     \
        FARPROC f_;                                                                          \
        if (resolve(m, name, &f_) != 0) {                                                    \
            return -1;                                                                       \
        }                                                                                    \
        memcpy(&var, &f_, sizeof var);                                                       \
    } while (0)

static int load_certadm(void)
{
    HMODULE m = LoadLibraryW(L"certadm.dll");
    if (m == NULL) {
        fprintf(stderr, "LoadLibrary(certadm.dll) failed: error %lu\n",
                (unsigned long)GetLastError());
        return -1;
    }
    RESOLVE(pIsServerOnline, "CertSrvIsServerOnlineW");
    RESOLVE(pBackupPrepare, "CertSrvBackupPrepareW");
    RESOLVE(pBackupGetDatabaseNames, "CertSrvBackupGetDatabaseNamesW");
    RESOLVE(pBackupGetDynamicFileList, "CertSrvBackupGetDynamicFileListW");
    RESOLVE(pBackupOpenFile, "CertSrvBackupOpenFileW");
    RESOLVE(pBackupRead, "CertSrvBackupRead");
    RESOLVE(pBackupClose, "CertSrvBackupClose");
    RESOLVE(pBackupGetBackupLogs, "CertSrvBackupGetBackupLogsW");
    RESOLVE(pBackupTruncateLogs, "CertSrvBackupTruncateLogs");
    RESOLVE(pBackupEnd, "CertSrvBackupEnd");
    RESOLVE(pBackupFree, "CertSrvBackupFree");
    RESOLVE(pRestoreGetDatabaseLocations, "CertSrvRestoreGetDatabaseLocationsW");
    RESOLVE(pRestorePrepare, "CertSrvRestorePrepareW");
    RESOLVE(pRestoreRegister, "CertSrvRestoreRegisterW");
    RESOLVE(pRestoreRegisterComplete, "CertSrvRestoreRegisterComplete");
    RESOLVE(pRestoreEnd, "CertSrvRestoreEnd");
    RESOLVE(pServerControl, "CertSrvServerControlW");
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static HRESULT failed(const char *what, HRESULT hr)
{
    fprintf(stderr, "%s failed: 0x%08lX\n", what, (unsigned long)(DWORD)hr);
    return hr;
}

static HRESULT last_error(const char *what, const wchar_t *path)
{
    DWORD e = GetLastError();
    fprintf(stderr, "%s %ls failed: error %lu\n", what, path ? path : L"", (unsigned long)e);
    return HRESULT_FROM_WIN32(e ? e : ERROR_GEN_FAILURE);
}

static wchar_t *wjoin(const wchar_t *a, const wchar_t *b)
{
    size_t la = wcslen(a), lb = wcslen(b);
    wchar_t *r = (wchar_t *)malloc((la + lb + 2) * sizeof(wchar_t));
    if (r == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(r, a, la * sizeof(wchar_t));
    size_t n = la;
    if (n > 0 && r[n - 1] != L'\\' && r[n - 1] != L'/') {
        r[n++] = L'\\';
    }
    memcpy(r + n, b, (lb + 1) * sizeof(wchar_t));
    return r;
}

static wchar_t *wdup(const wchar_t *s)
{
    return wjoin(L"", s);
}

static const wchar_t *wbasename(const wchar_t *p)
{
    const wchar_t *b = p;
    for (const wchar_t *q = p; *q; q++) {
        if (*q == L'\\' || *q == L'/') {
            b = q + 1;
        }
    }
    return b;
}

/* Creates a directory and its parents. */
static int mkdir_p(const wchar_t *dir)
{
    wchar_t *d = wdup(dir);
    size_t n = wcslen(d);
    /* Skip the root: "C:\", "\\server\share\", "Z:\". */
    size_t start = 0;
    if (n >= 2 && d[0] == L'\\' && d[1] == L'\\') {
        int seps = 0;
        for (start = 2; start < n && seps < 2; start++) {
            if (d[start] == L'\\') {
                seps++;
            }
        }
    } else if (n >= 3 && d[1] == L':') {
        start = 3;
    }
    for (size_t i = start; i <= n; i++) {
        if (i == n || d[i] == L'\\' || d[i] == L'/') {
            wchar_t c = d[i];
            d[i] = 0;
            if (d[0] != 0 && !CreateDirectoryW(d, NULL) &&
                GetLastError() != ERROR_ALREADY_EXISTS) {
                DWORD attr = GetFileAttributesW(d);
                if (attr == INVALID_FILE_ATTRIBUTES || !(attr & FILE_ATTRIBUTE_DIRECTORY)) {
                    last_error("CreateDirectory", d);
                    free(d);
                    return -1;
                }
            }
            d[i] = c;
        }
    }
    free(d);
    return 0;
}

static int write_whole_file(const wchar_t *path, const void *data, DWORD n)
{
    HANDLE f = CreateFileW(path, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL,
                           NULL);
    if (f == INVALID_HANDLE_VALUE) {
        last_error("CreateFile", path);
        return -1;
    }
    DWORD w = 0;
    BOOL ok = WriteFile(f, data, n, &w, NULL) && w == n;
    CloseHandle(f);
    if (!ok) {
        last_error("WriteFile", path);
        return -1;
    }
    return 0;
}

static void *read_whole_file(const wchar_t *path, DWORD *len)
{
    HANDLE f = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING,
                           FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) {
        last_error("CreateFile", path);
        return NULL;
    }
    DWORD size = GetFileSize(f, NULL);
    unsigned char *p = (unsigned char *)malloc((size_t)size + 2);
    DWORD got = 0;
    if (p == NULL || !ReadFile(f, p, size, &got, NULL) || got != size) {
        last_error("ReadFile", path);
        free(p);
        CloseHandle(f);
        return NULL;
    }
    CloseHandle(f);
    p[size] = 0;
    p[size + 1] = 0;
    *len = size;
    return p;
}

static size_t list_count(const WCHAR *l)
{
    size_t n = 0;
    for (const WCHAR *p = l; p && *p; p += wcslen(p) + 1) {
        n++;
    }
    return n;
}

/* ------------------------------------------------------------------ path translation */

typedef struct {
    wchar_t *from;
    wchar_t *to;
} Map;

static Map g_maps[16];
static int g_nmaps = 0;

static int add_map(const wchar_t *spec)
{
    const wchar_t *eq = wcschr(spec, L'=');
    if (eq == NULL || eq == spec || eq[1] == 0 || g_nmaps == 16) {
        fprintf(stderr, "bad path map %ls: expected UNCPREFIX=LOCALDIR\n", spec);
        return -1;
    }
    size_t n = (size_t)(eq - spec);
    wchar_t *from = (wchar_t *)calloc(n + 1, sizeof(wchar_t));
    memcpy(from, spec, n * sizeof(wchar_t));
    while (n > 0 && from[n - 1] == L'\\') {
        from[--n] = 0;
    }
    g_maps[g_nmaps].from = from;
    g_maps[g_nmaps].to = wdup(eq + 1);
    g_nmaps++;
    return 0;
}

/* The path where this client reaches the CA's file `p` (a malloc'd copy). */
static wchar_t *translate(const wchar_t *p)
{
    for (int i = 0; i < g_nmaps; i++) {
        size_t n = wcslen(g_maps[i].from);
        if (_wcsnicmp(p, g_maps[i].from, n) == 0 && (p[n] == 0 || p[n] == L'\\')) {
            const wchar_t *rest = p + n;
            while (*rest == L'\\') {
                rest++;
            }
            wchar_t *lower = wdup(rest);
            for (wchar_t *q = lower; *q; q++) {
                *q = (wchar_t)towlower(*q);
            }
            wchar_t *r = wjoin(g_maps[i].to, lower);
            free(lower);
            return r;
        }
    }
    return wdup(p);
}

/* ------------------------------------------------------------------ backup */

static unsigned char g_buffer[READ_BUFFER_SIZE];

/* Steps 7-9: OpenFile, Read until a short read, Close; the file lands in `dir`. */
static HRESULT back_up_file(HCSBC hbc, const WCHAR *name, const wchar_t *dir,
                            long long *bytes)
{
    LARGE_INTEGER size;
    HRESULT hr = pBackupOpenFile(hbc, name, 0, &size);
    if (FAILED(hr)) {
        return failed("CertSrvBackupOpenFile", hr);
    }
    wchar_t *dest = wjoin(dir, wbasename(name));
    HANDLE f = CreateFileW(dest, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL,
                           NULL);
    long long total = 0;
    if (f == INVALID_HANDLE_VALUE) {
        hr = last_error("CreateFile", dest);
    } else {
        for (;;) {
            DWORD got = 0;
            hr = pBackupRead(hbc, g_buffer, sizeof g_buffer, &got);
            if (FAILED(hr)) {
                failed("CertSrvBackupRead", hr);
                break;
            }
            DWORD w = 0;
            if (got > 0 && (!WriteFile(f, g_buffer, got, &w, NULL) || w != got)) {
                hr = last_error("WriteFile", dest);
                break;
            }
            total += got;
            if (got < sizeof g_buffer) {
                break;
            }
        }
        CloseHandle(f);
    }
    HRESULT hr_close = pBackupClose(hbc);
    if (SUCCEEDED(hr) && FAILED(hr_close)) {
        hr = failed("CertSrvBackupClose", hr_close);
    }
    if (SUCCEEDED(hr) && total != size.QuadPart) {
        fprintf(stderr, "%ls: read %lld bytes, OpenFile said %lld\n", name, total,
                (long long)size.QuadPart);
        hr = E_FAIL;
    }
    if (SUCCEEDED(hr)) {
        printf("  %ls: %lld bytes\n", name, total);
    }
    *bytes += total;
    free(dest);
    return hr;
}

static HRESULT backup(const wchar_t *server, const wchar_t *dir, int full)
{
    wchar_t *db_dir = wjoin(dir, BACKUP_SUBDIR);
    WCHAR *locs = NULL, *dbs = NULL, *logs = NULL, *dyn = NULL;
    DWORD cb = 0;
    HCSBC hbc = NULL;
    BOOL online = FALSE;
    long long bytes = 0;
    HRESULT hr;
    if (mkdir_p(db_dir) != 0) {
        hr = E_FAIL;
        goto out;
    }
    /* 3: the CA must be online. */
    hr = pIsServerOnline(server, &online);
    if (FAILED(hr)) {
        failed("CertSrvIsServerOnline", hr);
        goto out;
    }
    if (!online) {
        fprintf(stderr, "Certificate Services on %ls is not online\n", server);
        hr = E_FAIL;
        goto out;
    }
    /* 4 */
    hr = pBackupPrepare(server, 0, full ? CSBACKUP_TYPE_FULL : CSBACKUP_TYPE_LOGS_ONLY, &hbc);
    if (FAILED(hr)) {
        failed("CertSrvBackupPrepare", hr);
        goto out;
    }
    if (full) {
        /* 5: the locations, saved for the restore. */
        hr = pRestoreGetDatabaseLocations(hbc, &locs, &cb);
        if (FAILED(hr)) {
            failed("CertSrvRestoreGetDatabaseLocations", hr);
            goto end;
        }
        wchar_t *dat = wjoin(db_dir, LOCATIONS_FILE);
        int w = write_whole_file(dat, locs, cb);
        free(dat);
        if (w != 0) {
            hr = E_FAIL;
            goto end;
        }
        /* 6-9: the database files. */
        hr = pBackupGetDatabaseNames(hbc, &dbs, &cb);
        if (FAILED(hr)) {
            failed("CertSrvBackupGetDatabaseNames", hr);
            goto end;
        }
        for (const WCHAR *p = dbs; *p; p += wcslen(p) + 1) {
            hr = back_up_file(hbc, p + 1, db_dir, &bytes);
            if (FAILED(hr)) {
                goto end;
            }
        }
    }
    /* 10: the logs. */
    hr = pBackupGetBackupLogs(hbc, &logs, &cb);
    if (FAILED(hr)) {
        failed("CertSrvBackupGetBackupLogs", hr);
        goto end;
    }
    for (const WCHAR *p = logs; *p; p += wcslen(p) + 1) {
        hr = back_up_file(hbc, p + 1, db_dir, &bytes);
        if (FAILED(hr)) {
            goto end;
        }
    }
    /* 11: truncate the logs after a full backup. */
    if (full) {
        hr = pBackupTruncateLogs(hbc);
        if (FAILED(hr)) {
            failed("CertSrvBackupTruncateLogs", hr);
            goto end;
        }
    }
    /* 12-13: the dynamic files are backed up by other means (not by this client). */
    hr = pBackupGetDynamicFileList(hbc, &dyn, &cb);
    if (FAILED(hr)) {
        failed("CertSrvBackupGetDynamicFileList", hr);
        goto end;
    }
    for (const WCHAR *p = dyn; *p; p += wcslen(p) + 1) {
        printf("  dynamic file (not copied): %ls\n", p);
    }
end: {
    /* 14. A session left open blocks every later backup of the CA: try End twice
     * (certadm-emu explore found this client leaving one open when End failed once). */
    HRESULT hr_end = pBackupEnd(hbc);
    if (FAILED(hr_end) && hr_end != (HRESULT)0x80070006) {
        hr_end = pBackupEnd(hbc);
    }
    if (FAILED(hr_end)) {
        failed("CertSrvBackupEnd", hr_end);
        if (SUCCEEDED(hr)) {
            hr = hr_end;
        }
    }
}
out: {
    size_t nlogs = list_count(logs);
    /* 15 */
    pBackupFree(locs);
    pBackupFree(dbs);
    pBackupFree(logs);
    pBackupFree(dyn);
    if (SUCCEEDED(hr)) {
        printf("%s backup of %ls into %ls: %zu log(s), %lld bytes\n",
               full ? "full" : "incremental", server, dir, nlogs, bytes);
    }
}
    free(db_dir);
    return hr;
}

/* ------------------------------------------------------------------ restore */

typedef struct {
    WCHAR *database;   /* 'D' */
    WCHAR *log_dir;    /* 0x82 */
    WCHAR *system_dir; /* 0x83 */
} Locations;

static int read_locations(const wchar_t *set_dir, Locations *l)
{
    memset(l, 0, sizeof *l);
    wchar_t *db_dir = wjoin(set_dir, BACKUP_SUBDIR);
    wchar_t *dat = wjoin(db_dir, LOCATIONS_FILE);
    DWORD len = 0;
    WCHAR *list = (WCHAR *)read_whole_file(dat, &len);
    free(dat);
    free(db_dir);
    if (list == NULL || len < 2 || len % 2 != 0) {
        free(list);
        return -1;
    }
    for (const WCHAR *p = list; *p; p += wcslen(p) + 1) {
        if (p[0] == CSBFT_CERTSERVER_DATABASE) {
            l->database = wdup(p + 1);
        } else if (p[0] == CSBFT_LOG_DIR) {
            l->log_dir = wdup(p + 1);
        } else if (p[0] == CSBFT_CHECKPOINT_DIR) {
            l->system_dir = wdup(p + 1);
        }
    }
    free(list);
    if (l->database == NULL || l->log_dir == NULL || l->system_dir == NULL) {
        fprintf(stderr, "%ls: certbkxp.dat lacks a location\n", set_dir);
        return -1;
    }
    return 0;
}

/* The lowest and highest generation of the edbXXXXX.log files of a set (0, 0 if none). */
static void log_range(const wchar_t *set_dir, ULONG *low, ULONG *high)
{
    wchar_t *db_dir = wjoin(set_dir, BACKUP_SUBDIR);
    wchar_t *pattern = wjoin(db_dir, L"edb*.log");
    *low = 0;
    *high = 0;
    WIN32_FIND_DATAW fd;
    HANDLE h = FindFirstFileW(pattern, &fd);
    if (h != INVALID_HANDLE_VALUE) {
        do {
            wchar_t *end = NULL;
            unsigned long g = wcstoul(fd.cFileName + 3, &end, 16);
            if (g > 0 && end != NULL && _wcsicmp(end, L".log") == 0) {
                if (*low == 0 || g < *low) {
                    *low = (ULONG)g;
                }
                if (g > *high) {
                    *high = (ULONG)g;
                }
            }
        } while (FindNextFileW(h, &fd));
        FindClose(h);
    }
    free(pattern);
    free(db_dir);
}

static int copy_one(const wchar_t *from, const wchar_t *to)
{
    if (!CopyFileW(from, to, FALSE)) {
        last_error("CopyFile", to);
        return -1;
    }
    printf("  copied %ls -> %ls\n", from, to);
    return 0;
}

/* Step 8 for the logs of a set: into the (translated) log directory. */
static int copy_logs(const wchar_t *set_dir, const Locations *l)
{
    wchar_t *db_dir = wjoin(set_dir, BACKUP_SUBDIR);
    wchar_t *pattern = wjoin(db_dir, L"edb*.log");
    wchar_t *to_dir = translate(l->log_dir);
    int copied = 0;
    if (mkdir_p(to_dir) != 0) {
        copied = -1;
        goto out;
    }
    WIN32_FIND_DATAW fd;
    HANDLE h = FindFirstFileW(pattern, &fd);
    if (h != INVALID_HANDLE_VALUE) {
        do {
            wchar_t *from = wjoin(db_dir, fd.cFileName);
            wchar_t *name = wdup(fd.cFileName);
            for (wchar_t *q = name; *q; q++) {
                *q = (wchar_t)towlower(*q);
            }
            wchar_t *to = wjoin(to_dir, name);
            int rc = copy_one(from, to);
            free(from);
            free(name);
            free(to);
            if (rc != 0) {
                copied = -1;
                break;
            }
            copied++;
        } while (FindNextFileW(h, &fd));
        FindClose(h);
    }
out:
    free(to_dir);
    free(pattern);
    free(db_dir);
    return copied;
}

/* Steps 4, 9-10 and 13 for one set. */
static HRESULT register_set(const wchar_t *server, const Locations *l, const wchar_t *set_dir,
                            int full)
{
    ULONG low = 0, high = 0;
    log_range(set_dir, &low, &high);
    if (low == 0) {
        fprintf(stderr, "%ls: no edbXXXXX.log files\n", set_dir);
        return E_FAIL;
    }
    HCSBC hbc = NULL;
    HRESULT hr = pRestorePrepare(server, full ? CSRESTORE_TYPE_FULL : 0, &hbc);
    if (FAILED(hr)) {
        return failed("CertSrvRestorePrepare", hr);
    }
    CSEDB_RSTMAPW map[1];
    map[0].pwszDatabaseName = l->database;
    map[0].pwszNewDatabaseName = l->database; /* restore under the same name */
    hr = pRestoreRegister(hbc, l->system_dir, l->log_dir, full ? map : NULL, full ? 1 : 0,
                          l->log_dir, low, high);
    if (FAILED(hr)) {
        failed("CertSrvRestoreRegister", hr);
        /* Tell the CA the restore failed, so it does not start on a partial set. */
        pRestoreRegisterComplete(hbc, hr);
    } else {
        hr = pRestoreRegisterComplete(hbc, S_OK);
        if (FAILED(hr)) {
            failed("CertSrvRestoreRegisterComplete", hr);
        }
    }
    HRESULT hr_end = pRestoreEnd(hbc);
    if (FAILED(hr_end)) {
        failed("CertSrvRestoreEnd", hr_end);
        if (SUCCEEDED(hr)) {
            hr = hr_end;
        }
    }
    if (SUCCEEDED(hr)) {
        printf("registered %s set %ls: logs %lu..%lu\n", full ? "full" : "incremental", set_dir,
               (unsigned long)low, (unsigned long)high);
    }
    return hr;
}

static HRESULT restore(const wchar_t *server, const wchar_t *full_dir, wchar_t **inc,
                       int ninc)
{
    /* 3: Certificate Services must be stopped. */
    BOOL online = FALSE;
    HRESULT hr = pIsServerOnline(server, &online);
    if (SUCCEEDED(hr)) {
        hr = pServerControl(server, CSCONTROL_SHUTDOWN, NULL, NULL);
        if (FAILED(hr)) {
            return failed("CertSrvServerControl(CSCONTROL_SHUTDOWN)", hr);
        }
        printf("stopped Certificate Services on %ls\n", server);
    } else {
        printf("Certificate Services on %ls is not running (0x%08lX)\n", server,
               (unsigned long)(DWORD)hr);
    }
    /* 5-6: the saved locations. */
    Locations l;
    if (read_locations(full_dir, &l) != 0) {
        return E_FAIL;
    }
    /* 8: the full set's database and logs into place. */
    wchar_t *db_dir = wjoin(full_dir, BACKUP_SUBDIR);
    wchar_t *edb_from = wjoin(db_dir, wbasename(l.database));
    wchar_t *edb_to = translate(l.database);
    wchar_t *edb_to_dir = wdup(edb_to);
    wchar_t *slash = wcsrchr(edb_to_dir, L'\\');
    if (slash != NULL) {
        *slash = 0;
    }
    hr = S_OK;
    if (mkdir_p(edb_to_dir) != 0 || copy_one(edb_from, edb_to) != 0 ||
        copy_logs(full_dir, &l) < 1) {
        hr = E_FAIL;
    }
    free(edb_to_dir);
    free(edb_to);
    free(edb_from);
    free(db_dir);
    if (FAILED(hr)) {
        return hr;
    }
    /* 4, 9-10, 13 */
    hr = register_set(server, &l, full_dir, 1);
    /* 11: each incremental set. */
    for (int i = 0; i < ninc && SUCCEEDED(hr); i++) {
        if (copy_logs(inc[i], &l) < 1) {
            hr = E_FAIL;
            break;
        }
        hr = register_set(server, &l, inc[i], 0);
    }
    free(l.database);
    free(l.log_dir);
    free(l.system_dir);
    if (SUCCEEDED(hr)) {
        printf("restore registered: start Certificate Services to recover\n");
    }
    return hr;
}

/* ------------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr,
            "usage: client.exe [--map UNCPREFIX=LOCALDIR]... SERVER BACKUPDIR full|incremental\n"
            "       client.exe [--map UNCPREFIX=LOCALDIR]... SERVER FULLDIR restore [INCDIR...]\n");
    return 2;
}

int wmain(int argc, wchar_t **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    int i = 1;
    const wchar_t *env = _wgetenv(L"CERTADM_EMU_PATH_MAP");
    if (env != NULL && env[0] != 0) {
        wchar_t *copy = wdup(env);
        wchar_t *t = copy;
        while (t != NULL && *t != 0) {
            wchar_t *semi = wcschr(t, L';');
            if (semi != NULL) {
                *semi = 0;
            }
            if (*t != 0 && add_map(t) != 0) {
                return 2;
            }
            t = semi != NULL ? semi + 1 : NULL;
        }
        free(copy);
    }
    while (i < argc && wcscmp(argv[i], L"--map") == 0) {
        if (i + 1 >= argc || add_map(argv[i + 1]) != 0) {
            return usage();
        }
        i += 2;
    }
    if (argc - i < 3) {
        return usage();
    }
    const wchar_t *server = argv[i];
    const wchar_t *dir = argv[i + 1];
    const wchar_t *mode = argv[i + 2];
    if (load_certadm() != 0) {
        return 1;
    }
    HRESULT hr;
    if (wcscmp(mode, L"full") == 0 && argc - i == 3) {
        hr = backup(server, dir, 1);
    } else if (wcscmp(mode, L"incremental") == 0 && argc - i == 3) {
        hr = backup(server, dir, 0);
    } else if (wcscmp(mode, L"restore") == 0) {
        hr = restore(server, dir, argv + i + 3, argc - i - 3);
    } else {
        return usage();
    }
    if (FAILED(hr)) {
        fprintf(stderr, "client.exe %ls: failed with 0x%08lX\n", mode, (unsigned long)(DWORD)hr);
        return 1;
    }
    return 0;
}
