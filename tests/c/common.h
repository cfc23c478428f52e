/*
 * Helpers shared by the C test programs of certadm-emu in tests/c.
 * Include it first: it selects POSIX 2008 + XSI before the system headers.
 *
 * Every helper is `static inline` so a program that uses only some of them still
 * compiles cleanly with -Wall -Wextra -Werror -pedantic.
 *
 * Environment set by tests/tools/c_clients.rs (both optional when run by hand):
 *   CERTEMU_TEST_DIR  a scratch directory for backup files (else one is made with mkdtemp)
 *   CERTEMU_LIB       the path of libcertadm_emu.so (for the dlopen program)
 */
#ifndef CERTEMU_TEST_COMMON_H
#define CERTEMU_TEST_COMMON_H

#define _XOPEN_SOURCE 700

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "certbcli.h"
#include "certemu.h"

/* ---------------------------------------------------------------- checks */

static int g_failures = 0;

#ifdef CERTEMU_TEST_DYNAMIC
/* Programs that load the library with dlopen set these (or leave them NULL). */
static HRESULT (*g_last_error)(char **) = NULL;
static HRESULT (*g_free_string)(char *) = NULL;
#else
#define g_last_error certemu_last_error
#define g_free_string certemu_free_string
#endif

/* Prints the emulator's explanation of the last failure on this thread. */
static inline void report_last_error(void)
{
    char *msg = NULL;
#ifdef CERTEMU_TEST_DYNAMIC
    if (g_last_error == NULL) {
        return;
    }
#endif
    if (g_last_error(&msg) == S_OK && msg != NULL) {
        fprintf(stderr, "      last error: %s\n", msg);
        g_free_string(msg);
    }
}

/* Evaluates `call` once and compares its HRESULT with `expected`. */
#define EXPECT_HR(expected, call)                                                              \
    do {                                                                                       \
        HRESULT hr_got_ = (call);                                                              \
        HRESULT hr_want_ = (expected);                                                         \
        if (hr_got_ != hr_want_) {                                                             \
            fprintf(stderr, "%s:%d: %s\n    returned 0x%08" PRIX32 ", expected 0x%08" PRIX32 "\n", \
                    __FILE__, __LINE__, #call, (uint32_t)hr_got_, (uint32_t)hr_want_);         \
            report_last_error();                                                               \
            g_failures++;                                                                      \
        }                                                                                      \
    } while (0)

#define EXPECT_OK(call) EXPECT_HR(S_OK, call)

/* Like EXPECT_OK, but a failure ends the program (later steps depend on this one). */
#define REQUIRE_OK(call)                                                                       \
    do {                                                                                       \
        HRESULT hr_got_ = (call);                                                              \
        if (hr_got_ != S_OK) {                                                                 \
            fprintf(stderr, "%s:%d: %s\n    returned 0x%08" PRIX32 ", required S_OK\n",        \
                    __FILE__, __LINE__, #call, (uint32_t)hr_got_);                             \
            report_last_error();                                                               \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

#define EXPECT(cond)                                                                           \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);               \
            g_failures++;                                                                      \
        }                                                                                      \
    } while (0)

#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: required %s\n", __FILE__, __LINE__, #cond);               \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

/* Ends main: 0 if every check passed. */
static inline int finish(const char *program)
{
    if (g_failures != 0) {
        fprintf(stderr, "%s: %d check(s) failed\n", program, g_failures);
        return 1;
    }
    printf("%s: all checks passed\n", program);
    return 0;
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

/* ---------------------------------------------------------------- UTF-16 strings */

static inline size_t wlen(const WCHAR *s)
{
    size_t n = 0;
    while (s[n] != 0) {
        n++;
    }
    return n;
}

static inline int wcmp(const WCHAR *a, const WCHAR *b)
{
    while (*a != 0 && *a == *b) {
        a++;
        b++;
    }
    return (int)*a - (int)*b;
}

/* UTF-8 -> NUL-terminated UTF-16 (malloc'd). */
static inline WCHAR *w_from_utf8(const char *s)
{
    size_t n = strlen(s);
    WCHAR *out = (WCHAR *)xmalloc((n + 1) * sizeof(WCHAR));
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p != 0) {
        uint32_t cp;
        if (p[0] < 0x80) {
            cp = p[0];
            p += 1;
        } else if ((p[0] & 0xE0) == 0xC0 && p[1] != 0) {
            cp = ((uint32_t)(p[0] & 0x1F) << 6) | (uint32_t)(p[1] & 0x3F);
            p += 2;
        } else if ((p[0] & 0xF0) == 0xE0 && p[1] != 0 && p[2] != 0) {
            cp = ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) |
                 (uint32_t)(p[2] & 0x3F);
            p += 3;
        } else if ((p[0] & 0xF8) == 0xF0 && p[1] != 0 && p[2] != 0 && p[3] != 0) {
            cp = ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) |
                 ((uint32_t)(p[2] & 0x3F) << 6) | (uint32_t)(p[3] & 0x3F);
            p += 4;
        } else {
            cp = 0xFFFD;
            p += 1;
        }
        if (cp >= 0x10000) {
            cp -= 0x10000;
            out[o++] = (WCHAR)(0xD800 + (cp >> 10));
            out[o++] = (WCHAR)(0xDC00 + (cp & 0x3FF));
        } else {
            out[o++] = (WCHAR)cp;
        }
    }
    out[o] = 0;
    return out;
}

/* NUL-terminated UTF-16 -> UTF-8 (malloc'd). */
static inline char *utf8_from_w(const WCHAR *w)
{
    size_t n = wlen(w);
    char *out = (char *)xmalloc(n * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = w[i];
        if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < n && w[i + 1] >= 0xDC00 && w[i + 1] < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)w[i + 1] - 0xDC00);
            i++;
        }
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xC0 | (cp >> 6));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out[o++] = (char)(0xE0 | (cp >> 12));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        } else {
            out[o++] = (char)(0xF0 | (cp >> 18));
            out[o++] = (char)(0x80 | ((cp >> 12) & 0x3F));
            out[o++] = (char)(0x80 | ((cp >> 6) & 0x3F));
            out[o++] = (char)(0x80 | (cp & 0x3F));
        }
    }
    out[o] = 0;
    return out;
}

/* ---------------------------------------------------------------- wszz lists */

/* Number of entries of a double-NUL list. */
static inline int list_count(const WCHAR *list)
{
    int n = 0;
    for (const WCHAR *p = list; *p != 0; p += wlen(p) + 1) {
        n++;
    }
    return n;
}

/* Bytes of a double-NUL list, counting every entry's NUL and the final NUL (spec §4). */
static inline DWORD list_bytes(const WCHAR *list)
{
    const WCHAR *p = list;
    while (*p != 0) {
        p += wlen(p) + 1;
    }
    return (DWORD)((size_t)(p - list + 1) * sizeof(WCHAR));
}

/* The entry at `index` (type character included), or NULL. */
static inline const WCHAR *list_entry(const WCHAR *list, int index)
{
    int i = 0;
    for (const WCHAR *p = list; *p != 0; p += wlen(p) + 1) {
        if (i++ == index) {
            return p;
        }
    }
    return NULL;
}

/* The entry whose type character is `type`, or NULL. */
static inline const WCHAR *list_find(const WCHAR *list, WCHAR type)
{
    for (const WCHAR *p = list; *p != 0; p += wlen(p) + 1) {
        if (p[0] == type) {
            return p;
        }
    }
    return NULL;
}

/* The last path component of a Windows path (after the last backslash). */
static inline const char *win_basename(const char *path)
{
    const char *b = strrchr(path, '\\');
    return b != NULL ? b + 1 : path;
}

/* ---------------------------------------------------------------- files */

static inline char *path_join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = (char *)xmalloc(n);
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static inline int mkdir_p(const char *path)
{
    char *tmp = (char *)xmalloc(strlen(path) + 1);
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p != 0; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                free(tmp);
                return -1;
            }
            *p = '/';
        }
    }
    int rc = (mkdir(tmp, 0700) != 0 && errno != EEXIST) ? -1 : 0;
    free(tmp);
    return rc;
}

static inline int write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    size_t w = fwrite(data, 1, len, f);
    int rc = fclose(f);
    return (w == len && rc == 0) ? 0 : -1;
}

/* Reads a whole file (malloc'd, *len set); NULL if it cannot be read. */
static inline unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = (unsigned char *)xmalloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            unsigned char *nb = (unsigned char *)realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static inline int copy_file(const char *from, const char *to)
{
    size_t len = 0;
    unsigned char *data = read_file(from, &len);
    if (data == NULL) {
        return -1;
    }
    int rc = write_file(to, data, len);
    free(data);
    return rc;
}

static inline long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static inline int rm_rf_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void rm_rf(const char *path)
{
    nftw(path, rm_rf_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory for this program's files (free with free(); remove with rm_rf). */
static inline char *scratch_dir(const char *name)
{
    const char *base = getenv("CERTEMU_TEST_DIR");
    if (base != NULL && *base != 0) {
        char *d = path_join(base, name);
        if (mkdir_p(d) != 0) {
            fprintf(stderr, "cannot create %s\n", d);
            exit(2);
        }
        return d;
    }
    char tmpl[] = "/tmp/certemu-c-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (d == NULL) {
        fprintf(stderr, "mkdtemp failed\n");
        exit(2);
    }
    (void)name;
    char *r = (char *)xmalloc(strlen(d) + 1);
    strcpy(r, d);
    return r;
}

/* ---------------------------------------------------------------- the CA */

/* Creates a CA with a unique name, `records` certificates and `log_capacity`
 * transactions per log generation; *server receives its UTF-16 name (owned by the CA). */
static inline certemu_ca *make_ca(uint32_t records, uint32_t log_capacity, const WCHAR **server)
{
    certemu_options o;
    certemu_ca *ca = NULL;
    REQUIRE_OK(certemu_options_init(&o));
    o.records = records;
    o.log_capacity = log_capacity;
    REQUIRE_OK(certemu_ca_create(NULL, &o, &ca));
    REQUIRE_OK(certemu_ca_server_name_w(ca, server));
    return ca;
}

/* The report of the CA (free with certemu_free_string). */
static inline char *report(const certemu_ca *ca)
{
    char *json = NULL;
    REQUIRE_OK(certemu_ca_report(ca, &json));
    REQUIRE(json != NULL);
    return json;
}

/* A top-level number of the report; -1 if absent or not a number. */
static inline long long report_num(const certemu_ca *ca, const char *key)
{
    char *json = report(ca);
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    long long v = -1;
    if (p != NULL) {
        p += strlen(pat);
        if ((*p >= '0' && *p <= '9') || *p == '-') {
            v = strtoll(p, NULL, 10);
        }
    }
    certemu_free_string(json);
    return v;
}

/* True if the report holds `"key":value` verbatim (value as JSON text, e.g. "true"). */
static inline int report_has(const certemu_ca *ca, const char *key, const char *value)
{
    char *json = report(ca);
    char pat[256];
    snprintf(pat, sizeof pat, "\"%s\":%s", key, value);
    int found = strstr(json, pat) != NULL;
    certemu_free_string(json);
    return found;
}

/* Expects `"key":value` in the report; prints the report if it is not there. */
#define EXPECT_REPORT(ca, key, value)                                                          \
    do {                                                                                       \
        if (!report_has((ca), (key), (value))) {                                               \
            char *json_ = report(ca);                                                          \
            fprintf(stderr, "%s:%d: expected \"%s\":%s in the report: %s\n", __FILE__,       \
                    __LINE__, (key), (value), json_);                                          \
            certemu_free_string(json_);                                                        \
            g_failures++;                                                                      \
        }                                                                                      \
    } while (0)

/* ---------------------------------------------------------------- a compact backup */

#define READ_BUFFER_SIZE 524288 /* the 512 KiB of the Microsoft sample */

/* Copies the listed file `name` (type character stripped) into `dir`: OpenFile, Read
 * until a short read, Close. Returns the bytes copied, -1 on failure. */
static inline long long copy_listed_file(HCSBC hbc, const WCHAR *name, const char *dir,
                                         unsigned char *buf)
{
    LARGE_INTEGER size;
    HRESULT hr = CertSrvBackupOpenFile(hbc, name, 0, &size);
    if (hr != S_OK) {
        fprintf(stderr, "CertSrvBackupOpenFileW: 0x%08" PRIX32 "\n", (uint32_t)hr);
        report_last_error();
        return -1;
    }
    char *uname = utf8_from_w(name);
    char *dest = path_join(dir, win_basename(uname));
    FILE *f = fopen(dest, "wb");
    long long total = 0;
    for (;;) {
        DWORD got = 0;
        hr = CertSrvBackupRead(hbc, buf, READ_BUFFER_SIZE, &got);
        if (hr != S_OK) {
            fprintf(stderr, "CertSrvBackupRead: 0x%08" PRIX32 "\n", (uint32_t)hr);
            report_last_error();
            total = -1;
            break;
        }
        if (f != NULL && got > 0 && fwrite(buf, 1, got, f) != got) {
            total = -1;
            break;
        }
        total += got;
        if (got < READ_BUFFER_SIZE) {
            break;
        }
    }
    if (f == NULL || fclose(f) != 0) {
        total = -1;
    }
    if (total >= 0 && total != size.QuadPart) {
        fprintf(stderr, "%s: read %lld bytes, OpenFile said %lld\n", uname, total,
                (long long)size.QuadPart);
        total = -1;
    }
    if (CertSrvBackupClose(hbc) != S_OK) {
        total = -1;
    }
    free(dest);
    free(uname);
    return total;
}

/* Runs the documented backup procedure (spec §8.1) into `dir`/DataBase: a full backup
 * (with certbkxp.dat) or a logs-only one, truncating the logs if asked. Returns S_OK or
 * the first failing HRESULT. */
static inline HRESULT backup_set(const WCHAR *server, const char *dir, int full, int truncate)
{
    char *db_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    unsigned char *buf = (unsigned char *)xmalloc(READ_BUFFER_SIZE);
    WCHAR *locs = NULL, *dbs = NULL, *logs = NULL, *dyn = NULL;
    DWORD cb = 0;
    HCSBC hbc = NULL;
    BOOL online = FALSE;
    HRESULT hr;
    if (mkdir_p(db_dir) != 0) {
        hr = E_FAIL;
        goto out;
    }
    hr = CertSrvIsServerOnline(server, &online);
    if (hr != S_OK || !online) {
        hr = hr != S_OK ? hr : E_FAIL;
        goto out;
    }
    hr = CertSrvBackupPrepare(server, 0, full ? CSBACKUP_TYPE_FULL : CSBACKUP_TYPE_LOGS_ONLY,
                              &hbc);
    if (hr != S_OK) {
        goto out;
    }
    if (full) {
        hr = CertSrvRestoreGetDatabaseLocations(hbc, &locs, &cb);
        if (hr != S_OK) {
            goto end;
        }
        char *dat = path_join(db_dir, CERTEMU_BACKUP_LOCATIONS_FILE);
        int w = write_file(dat, locs, cb);
        free(dat);
        if (w != 0) {
            hr = E_FAIL;
            goto end;
        }
        hr = CertSrvBackupGetDatabaseNames(hbc, &dbs, &cb);
        if (hr != S_OK) {
            goto end;
        }
        for (const WCHAR *p = dbs; *p != 0; p += wlen(p) + 1) {
            if (copy_listed_file(hbc, p + 1, db_dir, buf) < 0) {
                hr = E_FAIL;
                goto end;
            }
        }
    }
    hr = CertSrvBackupGetBackupLogs(hbc, &logs, &cb);
    if (hr != S_OK) {
        goto end;
    }
    for (const WCHAR *p = logs; *p != 0; p += wlen(p) + 1) {
        if (copy_listed_file(hbc, p + 1, db_dir, buf) < 0) {
            hr = E_FAIL;
            goto end;
        }
    }
    if (truncate) {
        hr = CertSrvBackupTruncateLogs(hbc);
        if (hr != S_OK) {
            goto end;
        }
    }
    hr = CertSrvBackupGetDynamicFileList(hbc, &dyn, &cb);
end: {
    HRESULT hr_end = CertSrvBackupEnd(hbc);
    if (hr == S_OK) {
        hr = hr_end;
    }
}
out:
    CertSrvBackupFree(locs);
    CertSrvBackupFree(dbs);
    CertSrvBackupFree(logs);
    CertSrvBackupFree(dyn);
    free(buf);
    free(db_dir);
    return hr;
}

/* The lowest and highest log generation among the edbXXXXX.log files of `dir`/DataBase
 * (0 and 0 if none). */
static inline void log_range(const char *dir, ULONG *low, ULONG *high)
{
    char *db_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    DIR *d = opendir(db_dir);
    *low = 0;
    *high = 0;
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            unsigned long g = 0;
            char tail[8] = {0};
            if (strncmp(e->d_name, "edb", 3) == 0 && strlen(e->d_name) > 7 &&
                sscanf(e->d_name + 3, "%lx%7s", &g, tail) == 2 && strcmp(tail, ".log") == 0 &&
                g > 0) {
                if (*low == 0 || g < *low) {
                    *low = (ULONG)g;
                }
                if (g > *high) {
                    *high = (ULONG)g;
                }
            }
        }
        closedir(d);
    }
    free(db_dir);
}

/* Step 8 of the restore scenario (spec §8.3) for the full backup in `dir`: copies its
 * .edb and edbXXXXX.log files to the host paths of the locations saved in its
 * certbkxp.dat. The CA must be stopped. Returns 0 on success. */
static inline int restore_files(certemu_ca *ca, const char *dir)
{
    char *db_dir = path_join(dir, CERTEMU_BACKUP_SUBDIR);
    char *dat = path_join(db_dir, CERTEMU_BACKUP_LOCATIONS_FILE);
    size_t len = 0;
    unsigned char *bytes = read_file(dat, &len);
    int rc = -1;
    char *edb = NULL, *edb_host = NULL, *logs_host = NULL, *from = NULL;
    if (bytes == NULL || len < 2 || len % 2 != 0) {
        goto out;
    }
    WCHAR *list = (WCHAR *)xmalloc(len + 2);
    memcpy(list, bytes, len);
    list[len / 2] = 0;
    const WCHAR *db = list_find(list, CSBFT_CERTSERVER_DATABASE);
    const WCHAR *logdir = list_find(list, CSBFT_LOG_DIR);
    if (db != NULL && logdir != NULL) {
        edb = utf8_from_w(db + 1);
        char *logdir_u = utf8_from_w(logdir + 1);
        if (certemu_ca_host_path(ca, edb, &edb_host) == S_OK &&
            certemu_ca_host_path(ca, logdir_u, &logs_host) == S_OK) {
            from = path_join(db_dir, win_basename(edb));
            rc = copy_file(from, edb_host);
            DIR *d = opendir(db_dir);
            struct dirent *e;
            while (rc == 0 && d != NULL && (e = readdir(d)) != NULL) {
                size_t n = strlen(e->d_name);
                if (strncmp(e->d_name, "edb", 3) == 0 && n > 7 &&
                    strcmp(e->d_name + n - 4, ".log") == 0) {
                    char *src = path_join(db_dir, e->d_name);
                    char *dst = path_join(logs_host, e->d_name);
                    rc = copy_file(src, dst);
                    free(src);
                    free(dst);
                }
            }
            if (d != NULL) {
                closedir(d);
            }
        }
        free(logdir_u);
    }
    free(list);
out:
    certemu_free_string(edb_host);
    certemu_free_string(logs_host);
    free(from);
    free(edb);
    free(bytes);
    free(dat);
    free(db_dir);
    return rc;
}

#endif /* CERTEMU_TEST_COMMON_H */
