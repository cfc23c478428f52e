/*
 * certadm.dll, recording edition: a drop-in Certadm.dll for Windows that loads the real
 * one, forwards each of the 18 certbcli calls to it unchanged, and appends one JSON line
 * per call to a file, in the event format of certadm-emu's trace (CERTADM_EMU_TRACE,
 * `certadm-emu demo --trace`, `certadm-emu lint`). A transcript of a real CA, for
 * comparing certadm-emu with it. See windows/README.md ("recorder") and docs/RECORDING.md.
 *
 * Build (MinGW-w64, from the repository root):
 *   x86_64-w64-mingw32-gcc -std=c11 -O2 -shared -I include -o certadm.dll \
 *       windows/recorder/recorder.c windows/recorder/recorder.def
 *
 * Use: put it next to the client's .exe as certadm.dll (the DLL search order finds it
 * before System32); it loads the real one by full path.
 *
 * Environment:
 *   CERTADM_RECORD            the file to append to (created if missing). "%p" in the name
 *                             becomes the process id. Unset or empty: nothing is recorded,
 *                             every call is only forwarded.
 *   CERTADM_RECORD_REAL       full path of the real certadm.dll. Default: the system
 *                             directory (GetSystemDirectoryW) + "\certadm.dll". A path that
 *                             is this recorder itself is refused.
 *   CERTADM_RECORD_ANONYMISE  "1": host names become HOST / host.example (HOST2 ... for
 *                             further hosts) and CA names become CA (CA2 ...), everywhere.
 *
 * What a call sees: exactly what the real DLL gives (HRESULT, out-values, list buffers,
 * the thread's last error). Lists are decoded in place for the record, never copied.
 * When the real DLL cannot be loaded (or is this recorder), every call returns
 * HRESULT_FROM_WIN32 of the LoadLibraryExW error (ERROR_MOD_NOT_FOUND, 0x8007007E, for a
 * missing file or a refused self-load), a function the real DLL does not export returns
 * HRESULT_FROM_WIN32(ERROR_PROC_NOT_FOUND) (0x8007007F); out-parameters are then set to
 * NULL / 0 and CertSrvBackupFree does nothing. The record says why ("message").
 *
 * The file: a first line {"recording": {...}} (the facts a replay needs: format version,
 * computer names, CA name and database directories from the registry, Windows version,
 * the real DLL, the process image, the start time), then one event per call:
 *   {"seq":N,"call":"...","client":N,"args":{...},"hr":"0x%08X","out":{...},"count":1,
 *    "elapsed_ns":N,"hr_name":"..."}
 * with the keys of certadm-emu's trace (src/api/trace.rs, src/api/mod.rs, restore.rs).
 * Handles ("hbc") and list buffers ("buffer", "pv") are opaque sequence numbers (the first
 * handle seen is "0x1"; buffers are numbered separately), never addresses; "client" is the
 * calling thread, numbered from 1. Every read is its own line (count is always 1).
 * Out-values are written for successful calls only. A later process appending to the same
 * file starts a new recording with its own first line.
 *
 * Never in the file: certificate contents, keys, file bytes (reads record sizes only),
 * the contents of pbOut. Only names, sizes, flags, codes and timings.
 */
#define WIN32_LEAN_AND_MEAN
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0600
#endif
#define _CERTBCLI_DEFINED /* our own definitions of the 18 functions, no dllimport */
#include <windows.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <wchar.h>
#include <wctype.h>

#include "certbcli.h"
#include "hresult_names.h"

#define RECORDING_FORMAT 1
#define RECORDER_NAME "certadm-emu recorder 1"

#define HR_MOD_NOT_FOUND ((HRESULT)0x8007007EL)  /* HRESULT_FROM_WIN32(ERROR_MOD_NOT_FOUND) */
#define HR_PROC_NOT_FOUND ((HRESULT)0x8007007FL) /* HRESULT_FROM_WIN32(ERROR_PROC_NOT_FOUND) */

#define MAX_WSTR 32767          /* longest string decoded (units) */
#define MAX_LIST_UNITS 1048576  /* longest list decoded when *pcbSize is unknown */
#define MAX_RSTMAP_DECODED 64   /* restore-map entries decoded */
#define MAX_IDS 4096            /* handles / buffers remembered for their numbers */
#define MIN_NAME 2              /* shorter names are not anonymised (they would hit paths) */

/* ------------------------------------------------------------------ the real DLL */

typedef HRESULT(WINAPI FNTHROUGHFILE)(HCSBC, WCHAR const *, WCHAR const *, CSEDB_RSTMAPW *,
                                      LONG, WCHAR const *, ULONG, ULONG);

static struct {
    FNCERTSRVISSERVERONLINEW *is_server_online;
    FNCERTSRVBACKUPPREPAREW *backup_prepare;
    FNCERTSRVBACKUPGETDATABASENAMESW *get_database_names;
    FNCERTSRVBACKUPGETDYNAMICFILELISTW *get_dynamic_file_list;
    FNCERTSRVBACKUPOPENFILEW *open_file;
    FNCERTSRVBACKUPREAD *read;
    FNCERTSRVBACKUPCLOSE *close;
    FNCERTSRVBACKUPGETBACKUPLOGSW *get_backup_logs;
    FNCERTSRVBACKUPTRUNCATELOGS *truncate_logs;
    FNCERTSRVBACKUPEND *backup_end;
    FNCERTSRVBACKUPFREE *free;
    FNCERTSRVRESTOREGETDATABASELOCATIONSW *get_database_locations;
    FNCERTSRVRESTOREPREPAREW *restore_prepare;
    FNCERTSRVRESTOREREGISTERW *restore_register;
    FNTHROUGHFILE *restore_register_through_file;
    FNCERTSRVRESTOREREGISTERCOMPLETE *register_complete;
    FNCERTSRVRESTOREEND *restore_end;
    FNCERTSRVSERVERCONTROLW *server_control;
} R;

static HMODULE g_self;          /* this recorder */
static HMODULE g_real;          /* the real certadm.dll, or NULL */
static HRESULT g_load_hr;       /* what a call returns when g_real is NULL */
static char g_load_why[160];    /* why it is NULL (ASCII) */
static WCHAR *g_real_path;      /* the path tried */
static const char *g_real_from; /* "system directory" or "CERTADM_RECORD_REAL" */
static char g_missing[18 * 40]; /* exports the real DLL lacks, as a JSON array body */

/* ------------------------------------------------------------------ state */

static CRITICAL_SECTION g_lock; /* the file, the numbering, the name tables, g_out */
static INIT_ONCE g_once = INIT_ONCE_STATIC_INIT;
static DWORD g_tls = TLS_OUT_OF_INDEXES; /* the thread's client number */
static HANDLE g_file = INVALID_HANDLE_VALUE;
static int g_recording;
static int g_anon;
static uint64_t g_seq;
static uint64_t g_next_client;
static LARGE_INTEGER g_qpf;

/* ------------------------------------------------------------------ memory */

static void *mem_realloc(void *p, size_t n)
{
    return p == NULL ? HeapAlloc(GetProcessHeap(), 0, n) : HeapReAlloc(GetProcessHeap(), 0, p, n);
}

static void mem_free(void *p)
{
    if (p != NULL) {
        HeapFree(GetProcessHeap(), 0, p);
    }
}

static WCHAR *wdup_n(const WCHAR *s, size_t n)
{
    WCHAR *r = (WCHAR *)mem_realloc(NULL, (n + 1) * sizeof(WCHAR));
    if (r != NULL) {
        memcpy(r, s, n * sizeof(WCHAR));
        r[n] = 0;
    }
    return r;
}

/* How many of the `want` bytes at p can be read without a fault (committed, readable,
 * not a guard page): client pointers are checked before they are decoded. */
static size_t readable_bytes(const void *p, size_t want)
{
    const char *a = (const char *)p;
    size_t got = 0;
    const DWORD readable = PAGE_READONLY | PAGE_READWRITE | PAGE_WRITECOPY | PAGE_EXECUTE_READ |
                           PAGE_EXECUTE_READWRITE | PAGE_EXECUTE_WRITECOPY;
    while (got < want) {
        MEMORY_BASIC_INFORMATION mbi;
        if (VirtualQuery(a + got, &mbi, sizeof mbi) == 0 || mbi.State != MEM_COMMIT ||
            (mbi.Protect & (PAGE_GUARD | PAGE_NOACCESS)) != 0 || (mbi.Protect & readable) == 0) {
            break;
        }
        got += (size_t)((const char *)mbi.BaseAddress + mbi.RegionSize - (a + got));
    }
    return got < want ? got : want;
}

/* The length of a client string (at most MAX_WSTR units); -1 if it cannot be read. */
static long wstr_len(const WCHAR *s)
{
    size_t avail = readable_bytes(s, (MAX_WSTR + 1) * sizeof(WCHAR)) / sizeof(WCHAR);
    if (avail == 0) {
        return -1;
    }
    size_t n = 0;
    while (n < avail && s[n] != 0) {
        n++;
    }
    return (long)n;
}

/* The units of a list that can be decoded: bounded by *pcbSize (when known) and by what
 * is readable. */
static size_t list_units(const WCHAR *p, size_t cb)
{
    size_t want = cb >= 2 ? cb / 2 : MAX_LIST_UNITS;
    if (want > MAX_LIST_UNITS) {
        want = MAX_LIST_UNITS;
    }
    return readable_bytes(p, want * sizeof(WCHAR)) / sizeof(WCHAR);
}

/* ------------------------------------------------------------------ output line */

static char *g_out;
static size_t g_len, g_cap;
static int g_oom;

static void out_mem(const char *p, size_t n)
{
    if (g_oom) {
        return;
    }
    if (g_len + n > g_cap) {
        size_t cap = g_cap ? g_cap : 4096;
        while (cap < g_len + n) {
            cap *= 2;
        }
        char *q = (char *)mem_realloc(g_out, cap);
        if (q == NULL) {
            g_oom = 1;
            return;
        }
        g_out = q;
        g_cap = cap;
    }
    memcpy(g_out + g_len, p, n);
    g_len += n;
}

static void out_str(const char *s) { out_mem(s, strlen(s)); }
static void out_c(char c) { out_mem(&c, 1); }

static void out_u64(uint64_t v)
{
    char b[24];
    int i = 24;
    do {
        b[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    out_mem(b + i, (size_t)(24 - i));
}

static void out_i64(int64_t v)
{
    if (v < 0) {
        out_c('-');
        out_u64((uint64_t)(-(v + 1)) + 1);
    } else {
        out_u64((uint64_t)v);
    }
}

/* Hex digits of v: at least `width`, upper or lower case. */
static void out_hex(uint64_t v, int width, int upper)
{
    const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char b[16];
    int i = 16;
    do {
        b[--i] = d[v & 15];
        v >>= 4;
    } while (v != 0);
    while (16 - i < width) {
        b[--i] = '0';
    }
    out_mem(b + i, (size_t)(16 - i));
}

/* One code point inside a JSON string. */
static void out_cp(uint32_t c)
{
    char b[6];
    switch (c) {
    case '"': out_str("\\\""); return;
    case '\\': out_str("\\\\"); return;
    case '\n': out_str("\\n"); return;
    case '\r': out_str("\\r"); return;
    case '\t': out_str("\\t"); return;
    default: break;
    }
    if (c < 0x20) {
        out_str("\\u00");
        out_hex(c, 2, 0);
    } else if (c < 0x80) {
        out_c((char)c);
    } else if (c < 0x800) {
        b[0] = (char)(0xC0 | (c >> 6));
        b[1] = (char)(0x80 | (c & 0x3F));
        out_mem(b, 2);
    } else if (c < 0x10000) {
        b[0] = (char)(0xE0 | (c >> 12));
        b[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[2] = (char)(0x80 | (c & 0x3F));
        out_mem(b, 3);
    } else {
        b[0] = (char)(0xF0 | (c >> 18));
        b[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        b[3] = (char)(0x80 | (c & 0x3F));
        out_mem(b, 4);
    }
}

/* An ASCII / UTF-8 C string as a JSON string. */
static void out_jstr(const char *s)
{
    out_c('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c < 0x20) {
            out_cp(c);
        } else {
            out_c((char)c);
        }
    }
    out_c('"');
}

/* ------------------------------------------------------------------ anonymisation */

/* A name to replace and its placeholder. Hosts are numbered by their first DNS label, so
 * CA01 and ca01.contoso.test become HOST and host.example. */
typedef struct {
    WCHAR *w;
    size_t len;
    char ph[32];
    int host; /* host index (1-based) or 0 for a CA name */
} Name;

static Name *g_names;
static size_t g_nnames, g_capnames;
static int g_nhosts, g_ncas;

static int is_word(WCHAR c)
{
    if (c < 0x80) {
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
    }
    return iswalnum(c) != 0;
}

static int ci_equal(const WCHAR *a, size_t na, const WCHAR *b, size_t nb)
{
    return na == nb && CompareStringOrdinal(a, (int)na, b, (int)nb, TRUE) == CSTR_EQUAL;
}

static Name *name_find(const WCHAR *s, size_t n)
{
    for (size_t i = 0; i < g_nnames; i++) {
        if (ci_equal(g_names[i].w, g_names[i].len, s, n)) {
            return &g_names[i];
        }
    }
    return NULL;
}

static void name_add(const WCHAR *s, size_t n, int host, const char *ph)
{
    if (g_nnames == g_capnames) {
        size_t cap = g_capnames ? g_capnames * 2 : 16;
        Name *v = (Name *)mem_realloc(g_names, cap * sizeof(Name));
        if (v == NULL) {
            return;
        }
        g_names = v;
        g_capnames = cap;
    }
    Name *x = &g_names[g_nnames];
    x->w = wdup_n(s, n);
    if (x->w == NULL) {
        return;
    }
    x->len = n;
    x->host = host;
    snprintf(x->ph, sizeof x->ph, "%s", ph);
    g_nnames++;
}

static size_t label_len(const WCHAR *s, size_t n)
{
    size_t i = 0;
    while (i < n && s[i] != '.') {
        i++;
    }
    return i;
}

/* A host name (NetBIOS, DNS or address); `force` > 0 gives it that host number. */
static void learn_host(const WCHAR *s, size_t n, int force)
{
    while (n > 0 && s[n - 1] == '.') {
        n--;
    }
    if (n < MIN_NAME || name_find(s, n) != NULL || ci_equal(s, n, L"localhost", 9)) {
        return;
    }
    size_t ll = label_len(s, n);
    int host = force;
    if (host == 0) {
        for (size_t i = 0; i < g_nnames && host == 0; i++) {
            if (g_names[i].host > 0 &&
                ci_equal(g_names[i].w, label_len(g_names[i].w, g_names[i].len), s, ll)) {
                host = g_names[i].host;
            }
        }
    }
    if (host == 0) {
        host = ++g_nhosts;
    } else if (host > g_nhosts) {
        g_nhosts = host;
    }
    char ph[32];
    char num[12] = "";
    if (host > 1) {
        snprintf(num, sizeof num, "%d", host);
    }
    if (ll < n) {
        snprintf(ph, sizeof ph, "host%s.example", num);
    } else {
        snprintf(ph, sizeof ph, "HOST%s", num);
    }
    name_add(s, n, host, ph);
}

/* A CA name (common or sanitized); `force` > 0 gives it that CA number. */
static void learn_ca(const WCHAR *s, size_t n, int force)
{
    while (n > 0 && s[n - 1] == ' ') {
        n--;
    }
    if (n < MIN_NAME || name_find(s, n) != NULL) {
        return;
    }
    int ca = force > 0 ? force : ++g_ncas;
    if (ca > g_ncas) {
        g_ncas = ca;
    }
    char ph[32];
    if (ca > 1) {
        snprintf(ph, sizeof ph, "CA%d", ca);
    } else {
        snprintf(ph, sizeof ph, "CA");
    }
    name_add(s, n, 0, ph);
}

static int ends_ci(const WCHAR *s, size_t n, const WCHAR *ext)
{
    size_t e = wcslen(ext);
    return n >= e && ci_equal(s + n - e, e, ext, e);
}

/* Names in a path: the host of a UNC path; the CA in <CA>.edb, <CA>[(n)][+].crl and
 * <host>_<CA>[(n)].crt (the file names Certificate Services gives them). */
static void learn_path(const WCHAR *s, size_t n)
{
    if (n > 2 && s[0] == '\\' && s[1] == '\\') {
        size_t e = 2;
        while (e < n && s[e] != '\\' && s[e] != '/') {
            e++;
        }
        learn_host(s + 2, e - 2, 0);
    }
    size_t b = n;
    while (b > 0 && s[b - 1] != '\\' && s[b - 1] != '/') {
        b--;
    }
    const WCHAR *base = s + b;
    size_t bn = n - b;
    if (ends_ci(base, bn, L".edb")) {
        learn_ca(base, bn - 4, 0);
        return;
    }
    int crl = ends_ci(base, bn, L".crl"), crt = ends_ci(base, bn, L".crt");
    if (!crl && !crt) {
        return;
    }
    bn -= 4;
    if (crl && bn > 0 && base[bn - 1] == '+') {
        bn--;
    }
    if (bn > 0 && base[bn - 1] == ')') { /* the key index suffix "(n)" */
        size_t k = bn - 1;
        while (k > 0 && base[k - 1] >= '0' && base[k - 1] <= '9') {
            k--;
        }
        if (k > 0 && k < bn - 1 && base[k - 1] == '(') {
            bn = k - 1;
        }
    }
    if (crt) {
        size_t u = 0;
        while (u < bn && base[u] != '_') {
            u++;
        }
        if (u == bn) {
            return;
        }
        learn_host(base, u, 0);
        learn_ca(base + u + 1, bn - u - 1, 0);
    } else {
        learn_ca(base, bn, 0);
    }
}

/* A pwszServerName: a host, or a config string "host\CA name". */
static void learn_server(const WCHAR *s, size_t n)
{
    if (n > 2 && s[0] == '\\' && s[1] == '\\') {
        learn_path(s, n);
        return;
    }
    size_t h = 0;
    while (h < n && s[h] != '\\') {
        h++;
    }
    learn_host(s, h, 0);
    if (h + 1 < n) {
        learn_ca(s + h + 1, n - h - 1, 0);
    }
}

/* The longest known name at s[i] with word boundaries on both sides. */
static const Name *name_at(const WCHAR *s, size_t n, size_t i)
{
    if (i > 0 && is_word(s[i - 1])) {
        return NULL;
    }
    const Name *best = NULL;
    for (size_t k = 0; k < g_nnames; k++) {
        const Name *x = &g_names[k];
        size_t l = x->len;
        if (i + l > n || (best != NULL && l <= best->len) || towlower(s[i]) != towlower(x->w[0])) {
            continue;
        }
        if ((i + l == n || !is_word(s[i + l])) && ci_equal(s + i, l, x->w, l)) {
            best = x;
        }
    }
    return best;
}

/* n UTF-16 units as the body of a JSON string (anonymised when asked). */
static void out_wbody(const WCHAR *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (g_anon) {
            const Name *x = name_at(s, n, i);
            if (x != NULL) {
                out_str(x->ph);
                i += x->len;
                continue;
            }
        }
        uint32_t c = s[i++];
        if (c >= 0xD800 && c <= 0xDBFF && i < n && s[i] >= 0xDC00 && s[i] <= 0xDFFF) {
            c = 0x10000 + ((c - 0xD800) << 10) + (s[i++] - 0xDC00);
        } else if (c >= 0xD800 && c <= 0xDFFF) {
            c = 0xFFFD; /* an unpaired surrogate */
        }
        out_cp(c);
    }
}

/* A client string argument: null, a JSON string, or "(unreadable)". */
static void out_wstr(const WCHAR *s)
{
    if (s == NULL) {
        out_str("null");
        return;
    }
    long n = wstr_len(s);
    if (n < 0) {
        out_str("\"(unreadable)\"");
        return;
    }
    out_c('"');
    out_wbody(s, (size_t)n);
    out_c('"');
}

/* A string of our own (NUL-terminated) or null. */
static void out_own_wstr(const WCHAR *s)
{
    if (s == NULL) {
        out_str("null");
        return;
    }
    out_c('"');
    out_wbody(s, wcslen(s));
    out_c('"');
}

/* The file name part of a path. */
static const WCHAR *wbase(const WCHAR *p)
{
    const WCHAR *b = p;
    for (const WCHAR *q = p; *q; q++) {
        if (*q == '\\' || *q == '/') {
            b = q + 1;
        }
    }
    return b;
}

/* ------------------------------------------------------------------ handle numbers */

typedef struct {
    const void *raw;
    uint64_t id;
} IdEntry;

typedef struct {
    IdEntry *v;
    size_t n, cap;
    uint64_t next;
} IdTable;

static IdTable g_handles, g_buffers;

static uint64_t id_insert(IdTable *t, const void *raw)
{
    uint64_t id = ++t->next;
    for (size_t i = t->n; i-- > 0;) { /* a reused address gets the new number */
        if (t->v[i].raw == raw) {
            memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof(IdEntry));
            t->n--;
            break;
        }
    }
    if (t->n == MAX_IDS) { /* forget the oldest */
        memmove(&t->v[0], &t->v[1], (t->n - 1) * sizeof(IdEntry));
        t->n--;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        IdEntry *v = (IdEntry *)mem_realloc(t->v, cap * sizeof(IdEntry));
        if (v == NULL) {
            return id;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n].raw = raw;
    t->v[t->n].id = id;
    t->n++;
    return id;
}

/* The number of a handle or buffer passed in: its number if seen, else a new one
 * (a value no function returned); NULL is 0. */
static uint64_t id_of(IdTable *t, const void *raw)
{
    if (raw == NULL) {
        return 0;
    }
    for (size_t i = t->n; i-- > 0;) {
        if (t->v[i].raw == raw) {
            return t->v[i].id;
        }
    }
    return id_insert(t, raw);
}

/* ------------------------------------------------------------------ events */

enum {
    F_U64,    /* a number */
    F_I64,    /* a signed number */
    F_ID,     /* a handle or buffer number, resolved when the argument was taken */
    F_NEWID,  /* a handle or buffer returned: numbered when the event is written */
    F_WSTR,   /* a client string */
    F_LIST,   /* a returned list (decoded in place) */
    F_RSTMAP, /* a restore map */
    F_HR      /* an HRESULT argument: "0x%08X NAME" */
};

typedef struct {
    const char *key;
    int kind;
    uint64_t u;
    int64_t i;
    const void *raw;
    IdTable *table;
    const WCHAR *w;
    size_t n;
    int prefixed;
    const CSEDB_RSTMAPW *map;
} Field;

enum { MSG_NONE, MSG_NOT_LOADED, MSG_NO_EXPORT };

typedef struct {
    const char *call;
    int on;
    uint64_t client;
    Field args[8];
    int nargs;
    Field out[3];
    int nout;
    LARGE_INTEGER t0;
    uint64_t ns;
    int msg;
    DWORD last_error;
} Ev;

static void init(void);

static void ev_begin(Ev *e, const char *call)
{
    init();
    memset(e, 0, sizeof *e);
    e->call = call;
    e->on = g_recording;
    if (!e->on) {
        return;
    }
    uint64_t c = (uint64_t)(uintptr_t)TlsGetValue(g_tls);
    if (c == 0) {
        EnterCriticalSection(&g_lock);
        c = ++g_next_client;
        LeaveCriticalSection(&g_lock);
        TlsSetValue(g_tls, (void *)(uintptr_t)c);
    }
    e->client = c;
}

static Field *add(Field *v, int *n, int cap, const char *key, int kind)
{
    if (*n >= cap) {
        return NULL;
    }
    Field *f = &v[(*n)++];
    memset(f, 0, sizeof *f);
    f->key = key;
    f->kind = kind;
    return f;
}

#define ADD_ARG(e, key, kind) add((e)->args, &(e)->nargs, 8, key, kind)
#define ADD_OUT(e, key, kind) add((e)->out, &(e)->nout, 3, key, kind)

static void a_u64(Ev *e, const char *key, uint64_t v)
{
    Field *f = e->on ? ADD_ARG(e, key, F_U64) : NULL;
    if (f != NULL) {
        f->u = v;
    }
}

static void a_i64(Ev *e, const char *key, int64_t v)
{
    Field *f = e->on ? ADD_ARG(e, key, F_I64) : NULL;
    if (f != NULL) {
        f->i = v;
    }
}

static void a_wstr(Ev *e, const char *key, const WCHAR *s)
{
    Field *f = e->on ? ADD_ARG(e, key, F_WSTR) : NULL;
    if (f != NULL) {
        f->w = s;
    }
}

static void a_hr(Ev *e, const char *key, HRESULT hr)
{
    Field *f = e->on ? ADD_ARG(e, key, F_HR) : NULL;
    if (f != NULL) {
        f->u = (uint32_t)hr;
    }
}

static void a_rstmap(Ev *e, const CSEDB_RSTMAPW *map, LONG count)
{
    Field *f = e->on ? ADD_ARG(e, "rgrstmap", F_RSTMAP) : NULL;
    if (f != NULL) {
        f->map = map;
        f->n = count > 0 ? (size_t)count : 0;
        if (f->n > MAX_RSTMAP_DECODED) {
            f->n = MAX_RSTMAP_DECODED;
        }
    }
}

/* A handle or buffer argument, numbered now (before the call can free or end it). */
static void a_id(Ev *e, const char *key, IdTable *t, const void *raw)
{
    Field *f = e->on ? ADD_ARG(e, key, F_ID) : NULL;
    if (f != NULL) {
        EnterCriticalSection(&g_lock);
        f->u = id_of(t, raw);
        LeaveCriticalSection(&g_lock);
    }
}

static void o_u64(Ev *e, const char *key, uint64_t v)
{
    Field *f = e->on ? ADD_OUT(e, key, F_U64) : NULL;
    if (f != NULL) {
        f->u = v;
    }
}

static void o_newid(Ev *e, const char *key, IdTable *t, const void *raw)
{
    Field *f = e->on ? ADD_OUT(e, key, F_NEWID) : NULL;
    if (f != NULL) {
        f->table = t;
        f->raw = raw;
    }
}

/* The three out-values of a list function, in the emulator's order. */
static void o_list(Ev *e, WCHAR *list, DWORD *pcb, int prefixed)
{
    if (!e->on) {
        return;
    }
    o_newid(e, "buffer", &g_buffers, list);
    o_u64(e, "cbSize", pcb != NULL ? *pcb : 0);
    Field *f = ADD_OUT(e, "list", F_LIST);
    if (f != NULL) {
        f->w = list;
        f->n = pcb != NULL ? *pcb : 0;
        f->prefixed = prefixed;
    }
}

static void ev_call_start(Ev *e)
{
    QueryPerformanceCounter(&e->t0);
}

static void ev_call_stop(Ev *e)
{
    e->last_error = GetLastError();
    LARGE_INTEGER t1;
    QueryPerformanceCounter(&t1);
    uint64_t ticks = (uint64_t)(t1.QuadPart - e->t0.QuadPart);
    uint64_t f = g_qpf.QuadPart > 0 ? (uint64_t)g_qpf.QuadPart : 1;
    e->ns = ticks / f * 1000000000ULL + ticks % f * 1000000000ULL / f;
}

/* The result of a function that cannot be forwarded. */
static HRESULT unavailable(Ev *e)
{
    if (g_real == NULL) {
        e->msg = MSG_NOT_LOADED;
        e->last_error = (DWORD)(g_load_hr & 0xFFFF);
        return g_load_hr;
    }
    e->msg = MSG_NO_EXPORT;
    e->last_error = ERROR_PROC_NOT_FOUND;
    return HR_PROC_NOT_FOUND;
}

/* Learns the names in the strings of a field (anonymisation). */
static void learn_field(const Field *f)
{
    if (f->kind == F_WSTR && f->w != NULL) {
        long n = wstr_len(f->w);
        if (n > 0) {
            if (strcmp(f->key, "pwszServerName") == 0) {
                learn_server(f->w, (size_t)n);
            } else {
                learn_path(f->w, (size_t)n);
            }
        }
    } else if (f->kind == F_LIST && f->w != NULL) {
        size_t avail = list_units(f->w, f->n), i = 0;
        while (i < avail && f->w[i] != 0) {
            size_t k = 0;
            while (i + k < avail && f->w[i + k] != 0) {
                k++;
            }
            size_t skip = f->prefixed ? 1 : 0;
            learn_path(f->w + i + skip, k - skip);
            i += k + 1;
        }
    } else if (f->kind == F_RSTMAP && f->map != NULL) {
        if (readable_bytes(f->map, f->n * sizeof(CSEDB_RSTMAPW)) < f->n * sizeof(CSEDB_RSTMAPW)) {
            return;
        }
        for (size_t k = 0; k < f->n; k++) {
            const WCHAR *names[2] = {f->map[k].pwszDatabaseName, f->map[k].pwszNewDatabaseName};
            for (int j = 0; j < 2; j++) {
                long n = names[j] != NULL ? wstr_len(names[j]) : -1;
                if (n > 0) {
                    learn_path(names[j], (size_t)n);
                }
            }
        }
    }
}

static const char *hr_name(HRESULT hr)
{
    for (size_t i = 0; i < sizeof HRESULT_NAMES / sizeof HRESULT_NAMES[0]; i++) {
        if (HRESULT_NAMES[i].hr == (uint32_t)hr) {
            return HRESULT_NAMES[i].name;
        }
    }
    return NULL;
}

/* The list's entries as certadm-emu's list_value renders them: the CSBFT character
 * (printable ASCII as itself, else "\u{xx}") then the name. */
static void out_list(const WCHAR *p, size_t cb, int prefixed)
{
    out_c('[');
    if (p != NULL) {
        size_t avail = list_units(p, cb), i = 0;
        int first = 1;
        while (i < avail && p[i] != 0) {
            size_t k = 0;
            while (i + k < avail && p[i + k] != 0) {
                k++;
            }
            if (!first) {
                out_c(',');
            }
            first = 0;
            out_c('"');
            const WCHAR *s = p + i;
            size_t n = k;
            if (prefixed) {
                WCHAR t = s[0];
                if (t >= 0x20 && t < 0x7F) {
                    out_cp(t);
                } else {
                    out_str("\\\\u{");
                    out_hex(t, 1, 0);
                    out_c('}');
                }
                s++;
                n--;
            }
            out_wbody(s, n);
            out_c('"');
            i += k + 1;
        }
    }
    out_c(']');
}

static void out_rstmap(const CSEDB_RSTMAPW *map, size_t n)
{
    out_c('[');
    if (map != NULL && readable_bytes(map, n * sizeof *map) == n * sizeof *map) {
        for (size_t k = 0; k < n; k++) {
            if (k > 0) {
                out_c(',');
            }
            const WCHAR *names[2] = {map[k].pwszDatabaseName, map[k].pwszNewDatabaseName};
            out_c('"');
            for (int j = 0; j < 2; j++) {
                if (j == 1) {
                    out_str(" -> ");
                }
                long len = names[j] != NULL ? wstr_len(names[j]) : -1;
                if (len >= 0) {
                    out_wbody(names[j], (size_t)len);
                } else {
                    out_str(names[j] == NULL ? "(null)" : "(unreadable)");
                }
            }
            out_c('"');
        }
    }
    out_c(']');
}

static void out_fields(const Field *v, int n)
{
    for (int k = 0; k < n; k++) {
        const Field *f = &v[k];
        if (k > 0) {
            out_c(',');
        }
        out_jstr(f->key);
        out_c(':');
        switch (f->kind) {
        case F_U64: out_u64(f->u); break;
        case F_I64: out_i64(f->i); break;
        case F_ID:
        case F_NEWID:
            out_str("\"0x");
            out_hex(f->u, 1, 0);
            out_c('"');
            break;
        case F_WSTR: out_wstr(f->w); break;
        case F_LIST: out_list(f->w, f->n, f->prefixed); break;
        case F_RSTMAP: out_rstmap(f->map, f->n); break;
        case F_HR: {
            const char *name = hr_name((HRESULT)(uint32_t)f->u);
            out_str("\"0x");
            out_hex(f->u, 8, 1);
            if (name != NULL) {
                out_c(' ');
                out_str(name);
            }
            out_c('"');
            break;
        }
        default: out_str("null"); break;
        }
    }
}

/* Writes the collected line (one WriteFile, under g_lock). */
static void write_line(void)
{
    if (!g_oom && g_len > 0 && g_file != INVALID_HANDLE_VALUE) {
        DWORD w = 0;
        WriteFile(g_file, g_out, (DWORD)g_len, &w, NULL);
    }
    g_len = 0;
    g_oom = 0;
}

/* Writes the event of a call that returned `hr`. Out-values only for a success. */
static void ev_end(Ev *e, HRESULT hr)
{
    if (!e->on) {
        return;
    }
    if (FAILED(hr)) {
        e->nout = 0;
    }
    EnterCriticalSection(&g_lock);
    uint64_t seq = ++g_seq;
    for (int k = 0; k < e->nout; k++) {
        Field *f = &e->out[k];
        if (f->kind == F_NEWID) {
            f->u = f->raw != NULL ? id_insert(f->table, f->raw) : 0;
        }
    }
    if (g_anon) {
        for (int k = 0; k < e->nargs; k++) {
            learn_field(&e->args[k]);
        }
        for (int k = 0; k < e->nout; k++) {
            learn_field(&e->out[k]);
        }
    }
    g_len = 0;
    out_str("{\"seq\":");
    out_u64(seq);
    out_str(",\"call\":");
    out_jstr(e->call);
    out_str(",\"client\":");
    out_u64(e->client);
    out_str(",\"args\":{");
    out_fields(e->args, e->nargs);
    out_str("},\"hr\":\"0x");
    out_hex((uint32_t)hr, 8, 1);
    out_str("\",\"out\":{");
    out_fields(e->out, e->nout);
    out_str("},\"count\":1,\"elapsed_ns\":");
    out_u64(e->ns);
    const char *name = hr_name(hr);
    if (name != NULL) {
        out_str(",\"hr_name\":");
        out_jstr(name);
    }
    if (e->msg == MSG_NOT_LOADED) {
        out_str(",\"message\":\"certadm-emu recorder: the real certadm.dll is not loaded: ");
        out_str(g_load_why);
        out_c('"');
    } else if (e->msg == MSG_NO_EXPORT) {
        out_str(",\"message\":\"certadm-emu recorder: the real certadm.dll does not export ");
        out_str(e->call);
        out_c('"');
    }
    out_str("}\n");
    write_line();
    LeaveCriticalSection(&g_lock);
}

/* ------------------------------------------------------------------ start-up */

/* An environment variable (HeapAlloc'd), or NULL if unset or empty. */
static WCHAR *env(const WCHAR *name)
{
    DWORD n = GetEnvironmentVariableW(name, NULL, 0);
    if (n <= 1) {
        return NULL;
    }
    WCHAR *v = (WCHAR *)mem_realloc(NULL, n * sizeof(WCHAR));
    if (v != NULL && GetEnvironmentVariableW(name, v, n) + 1 != n) {
        mem_free(v);
        return NULL;
    }
    return v;
}

static WCHAR *module_path(HMODULE m)
{
    DWORD cap = MAX_PATH;
    for (;;) {
        WCHAR *p = (WCHAR *)mem_realloc(NULL, cap * sizeof(WCHAR));
        if (p == NULL) {
            return NULL;
        }
        DWORD n = GetModuleFileNameW(m, p, cap);
        if (n == 0) {
            mem_free(p);
            return NULL;
        }
        if (n < cap) {
            return p;
        }
        mem_free(p);
        cap *= 2;
    }
}

static WCHAR *full_path(const WCHAR *p)
{
    DWORD n = GetFullPathNameW(p, 0, NULL, NULL);
    WCHAR *r = n ? (WCHAR *)mem_realloc(NULL, n * sizeof(WCHAR)) : NULL;
    if (r != NULL && GetFullPathNameW(p, n, r, NULL) == 0) {
        mem_free(r);
        r = NULL;
    }
    return r != NULL ? r : wdup_n(p, wcslen(p));
}

/* True if both paths name the same file (volume and file index), or the same path. */
static int same_file(const WCHAR *a, const WCHAR *b)
{
    if (a == NULL || b == NULL) {
        return 0;
    }
    if (CompareStringOrdinal(a, -1, b, -1, TRUE) == CSTR_EQUAL) {
        return 1;
    }
    BY_HANDLE_FILE_INFORMATION ia, ib;
    int same = 0;
    HANDLE fa = CreateFileW(a, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                            OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    HANDLE fb = CreateFileW(b, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                            OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    if (fa != INVALID_HANDLE_VALUE && fb != INVALID_HANDLE_VALUE &&
        GetFileInformationByHandle(fa, &ia) && GetFileInformationByHandle(fb, &ib)) {
        same = ia.dwVolumeSerialNumber == ib.dwVolumeSerialNumber &&
               ia.nFileIndexHigh == ib.nFileIndexHigh && ia.nFileIndexLow == ib.nFileIndexLow;
    }
    if (fa != INVALID_HANDLE_VALUE) {
        CloseHandle(fa);
    }
    if (fb != INVALID_HANDLE_VALUE) {
        CloseHandle(fb);
    }
    return same;
}

#define RESOLVE(field, name)                                                                 \
    do {                                                                                     \
        FARPROC f_ = GetProcAddress(g_real, name);                                           \
        memcpy(&R.field, &f_, sizeof R.field);                                               \
        if (f_ == NULL) {                                                                    \
            size_t l_ = strlen(g_missing);                                                   \
            snprintf(g_missing + l_, sizeof g_missing - l_, "%s\"%s\"", l_ ? "," : "", name); \
        }                                                                                    \
    } while (0)

static void load_real(void)
{
    WCHAR *named = env(L"CERTADM_RECORD_REAL");
    if (named != NULL) {
        g_real_from = "CERTADM_RECORD_REAL";
        g_real_path = full_path(named);
        mem_free(named);
    } else {
        g_real_from = "system directory";
        WCHAR sys[MAX_PATH + 16];
        UINT n = GetSystemDirectoryW(sys, MAX_PATH);
        if (n == 0 || n >= MAX_PATH) {
            sys[0] = 0;
        }
        wcscat(sys, L"\\certadm.dll");
        g_real_path = wdup_n(sys, wcslen(sys));
    }
    g_load_hr = HR_MOD_NOT_FOUND;
    WCHAR *self = module_path(g_self);
    int is_self = same_file(g_real_path, self);
    mem_free(self);
    if (g_real_path == NULL) {
        snprintf(g_load_why, sizeof g_load_why, "out of memory");
        return;
    }
    if (is_self) {
        snprintf(g_load_why, sizeof g_load_why,
                 "%s names this recorder itself; refusing to load it", g_real_from);
        return;
    }
    g_real = LoadLibraryExW(g_real_path, NULL, LOAD_WITH_ALTERED_SEARCH_PATH);
    if (g_real == NULL) {
        DWORD err = GetLastError();
        if (err != 0) {
            g_load_hr = HRESULT_FROM_WIN32(err);
        }
        snprintf(g_load_why, sizeof g_load_why, "LoadLibraryExW failed with error %lu",
                 (unsigned long)err);
        return;
    }
    if (g_real == g_self) {
        FreeLibrary(g_real);
        g_real = NULL;
        snprintf(g_load_why, sizeof g_load_why,
                 "%s resolves to this recorder itself; refusing to use it", g_real_from);
        return;
    }
    RESOLVE(is_server_online, "CertSrvIsServerOnlineW");
    RESOLVE(backup_prepare, "CertSrvBackupPrepareW");
    RESOLVE(get_database_names, "CertSrvBackupGetDatabaseNamesW");
    RESOLVE(get_dynamic_file_list, "CertSrvBackupGetDynamicFileListW");
    RESOLVE(open_file, "CertSrvBackupOpenFileW");
    RESOLVE(read, "CertSrvBackupRead");
    RESOLVE(close, "CertSrvBackupClose");
    RESOLVE(get_backup_logs, "CertSrvBackupGetBackupLogsW");
    RESOLVE(truncate_logs, "CertSrvBackupTruncateLogs");
    RESOLVE(backup_end, "CertSrvBackupEnd");
    RESOLVE(free, "CertSrvBackupFree");
    RESOLVE(get_database_locations, "CertSrvRestoreGetDatabaseLocationsW");
    RESOLVE(restore_prepare, "CertSrvRestorePrepareW");
    RESOLVE(restore_register, "CertSrvRestoreRegisterW");
    RESOLVE(restore_register_through_file, "CertSrvRestoreRegisterThroughFile");
    RESOLVE(register_complete, "CertSrvRestoreRegisterComplete");
    RESOLVE(restore_end, "CertSrvRestoreEnd");
    RESOLVE(server_control, "CertSrvServerControlW");
}

/* ----- the facts of the first line */

#define CONFIG_KEY L"SYSTEM\\CurrentControlSet\\Services\\CertSvc\\Configuration"

/* A key of HKLM (the 64-bit view also for a 32-bit recorder), or NULL. */
static HKEY reg_open(HKEY parent, const WCHAR *subkey)
{
    HKEY k = NULL;
    if (parent == NULL ||
        RegOpenKeyExW(parent, subkey, 0, KEY_READ | KEY_WOW64_64KEY, &k) != ERROR_SUCCESS) {
        return NULL;
    }
    return k;
}

/* A REG_SZ (or expanded REG_EXPAND_SZ) value, HeapAlloc'd, or NULL if absent or empty. */
static WCHAR *reg_string(HKEY key, const WCHAR *value)
{
    DWORD cb = 0;
    if (key == NULL ||
        RegGetValueW(key, NULL, value, RRF_RT_REG_SZ, NULL, NULL, &cb) != ERROR_SUCCESS ||
        cb < sizeof(WCHAR)) {
        return NULL;
    }
    WCHAR *v = (WCHAR *)mem_realloc(NULL, cb + sizeof(WCHAR));
    if (v == NULL) {
        return NULL;
    }
    if (RegGetValueW(key, NULL, value, RRF_RT_REG_SZ, NULL, v, &cb) != ERROR_SUCCESS) {
        mem_free(v);
        return NULL;
    }
    v[cb / sizeof(WCHAR)] = 0;
    if (v[0] == 0) {
        mem_free(v);
        return NULL;
    }
    return v;
}

/* A REG_DWORD value as a JSON number, or null. */
static void out_reg_dword(HKEY key, const WCHAR *value)
{
    DWORD v = 0, cb = sizeof v;
    if (key != NULL &&
        RegGetValueW(key, NULL, value, RRF_RT_REG_DWORD, NULL, &v, &cb) == ERROR_SUCCESS) {
        out_u64(v);
    } else {
        out_str("null");
    }
}

static WCHAR *computer_name(COMPUTER_NAME_FORMAT f)
{
    DWORD n = 0;
    GetComputerNameExW(f, NULL, &n);
    if (n == 0) {
        return NULL;
    }
    WCHAR *v = (WCHAR *)mem_realloc(NULL, (n + 1) * sizeof(WCHAR));
    if (v != NULL && !GetComputerNameExW(f, v, &n)) {
        mem_free(v);
        v = NULL;
    }
    return v;
}

typedef LONG(WINAPI *RtlGetVersionFn)(OSVERSIONINFOEXW *);
typedef const char *(CDECL *WineGetVersionFn)(void);

static void write_header(void)
{
    WCHAR *netbios = computer_name(ComputerNameNetBIOS);
    WCHAR *dns_host = computer_name(ComputerNameDnsHostname);
    WCHAR *dns = computer_name(ComputerNameDnsFullyQualified);
    HKEY config = reg_open(HKEY_LOCAL_MACHINE, CONFIG_KEY);
    WCHAR *active = reg_string(config, L"Active");
    HKEY ca_key = active != NULL ? reg_open(config, active) : NULL;
    WCHAR *common = reg_string(ca_key, L"CommonName");
    if (g_anon) { /* the local computer is HOST, its CA is CA */
        if (netbios) learn_host(netbios, wcslen(netbios), 1);
        if (dns_host) learn_host(dns_host, wcslen(dns_host), 1);
        if (dns) learn_host(dns, wcslen(dns), 1);
        if (active) learn_ca(active, wcslen(active), 1);
        if (common) learn_ca(common, wcslen(common), 1);
    }
    g_len = 0;
    out_str("{\"recording\":{\"format\":");
    out_u64(RECORDING_FORMAT);
    out_str(",\"recorder\":");
    out_jstr(RECORDER_NAME);
    out_str(",\"bits\":");
    out_u64(sizeof(void *) * 8);
    out_str(",\"pid\":");
    out_u64(GetCurrentProcessId());
    SYSTEMTIME t;
    GetSystemTime(&t);
    char when[40];
    snprintf(when, sizeof when, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ", t.wYear, t.wMonth, t.wDay,
             t.wHour, t.wMinute, t.wSecond, t.wMilliseconds);
    out_str(",\"start\":");
    out_jstr(when);
    WCHAR *image = module_path(NULL);
    out_str(",\"image\":");
    out_own_wstr(image != NULL && g_anon ? wbase(image) : image);
    mem_free(image);
    out_str(",\"computer\":{\"netbios\":");
    out_own_wstr(netbios);
    out_str(",\"dns_hostname\":");
    out_own_wstr(dns_host);
    out_str(",\"dns\":");
    out_own_wstr(dns);
    out_str("},\"windows\":");
    OSVERSIONINFOEXW v;
    memset(&v, 0, sizeof v);
    v.dwOSVersionInfoSize = sizeof v;
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    FARPROC f = ntdll ? GetProcAddress(ntdll, "RtlGetVersion") : NULL;
    RtlGetVersionFn get_version;
    memcpy(&get_version, &f, sizeof f);
    if (get_version != NULL && get_version(&v) == 0) {
        out_str("{\"major\":");
        out_u64(v.dwMajorVersion);
        out_str(",\"minor\":");
        out_u64(v.dwMinorVersion);
        out_str(",\"build\":");
        out_u64(v.dwBuildNumber);
        out_str(",\"product_type\":");
        out_u64(v.wProductType);
        out_str(",\"csd\":");
        out_own_wstr(v.szCSDVersion);
        f = ntdll ? GetProcAddress(ntdll, "wine_get_version") : NULL;
        WineGetVersionFn wine_version;
        memcpy(&wine_version, &f, sizeof f);
        out_str(",\"wine\":");
        if (wine_version != NULL) {
            out_jstr(wine_version());
        } else {
            out_str("null");
        }
        out_c('}');
    } else {
        out_str("null");
    }
    out_str(",\"ca\":{\"name\":");
    out_own_wstr(active);
    out_str(",\"common_name\":");
    out_own_wstr(common);
    static const struct {
        const char *key;
        const WCHAR *value;
    } dirs[] = {{"db_directory", L"DBDirectory"},
                {"db_log_directory", L"DBLogDirectory"},
                {"db_system_directory", L"DBSystemDirectory"},
                {"db_temp_directory", L"DBTempDirectory"}};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        WCHAR *d = reg_string(config, dirs[i].value);
        out_c(',');
        out_jstr(dirs[i].key);
        out_c(':');
        out_own_wstr(d);
        mem_free(d);
    }
    out_str(",\"db_flags\":");
    out_reg_dword(config, L"DBFlags");
    out_str(",\"interface_flags\":");
    out_reg_dword(ca_key, L"InterfaceFlags");
    HKEY marker = reg_open(config, L"RestoreInProgress");
    int restoring = marker != NULL;
    if (marker != NULL) {
        RegCloseKey(marker);
    }
    out_str(",\"restore_in_progress\":");
    out_str(restoring ? "true" : "false");
    out_str("},\"real_dll\":{\"path\":");
    out_own_wstr(g_real_path != NULL && g_anon ? wbase(g_real_path) : g_real_path);
    out_str(",\"from\":");
    out_jstr(g_real_from);
    out_str(",\"loaded\":");
    out_str(g_real != NULL ? "true" : "false");
    out_str(",\"error\":");
    if (g_real == NULL) {
        out_jstr(g_load_why);
    } else {
        out_str("null");
    }
    out_str(",\"missing_exports\":[");
    out_str(g_missing);
    out_str("]},\"anonymised\":");
    out_str(g_anon ? "true" : "false");
    out_str(",\"folded_reads\":false}}\n");
    write_line();
    mem_free(netbios);
    mem_free(dns_host);
    mem_free(dns);
    mem_free(active);
    mem_free(common);
    if (ca_key != NULL) {
        RegCloseKey(ca_key);
    }
    if (config != NULL) {
        RegCloseKey(config);
    }
}

/* "%p" in the file name becomes the process id. */
static WCHAR *expand_pid(const WCHAR *p)
{
    size_t n = wcslen(p);
    WCHAR *r = (WCHAR *)mem_realloc(NULL, (n * 6 + 1) * sizeof(WCHAR));
    if (r == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '%' && p[i + 1] == 'p') {
            WCHAR digits[12];
            int d = 0;
            DWORD pid = GetCurrentProcessId();
            do {
                digits[d++] = (WCHAR)('0' + pid % 10);
                pid /= 10;
            } while (pid != 0);
            while (d > 0) {
                r[o++] = digits[--d];
            }
            i++;
        } else {
            r[o++] = p[i];
        }
    }
    r[o] = 0;
    return r;
}

static BOOL CALLBACK init_once(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once;
    (void)param;
    (void)ctx;
    DWORD saved = GetLastError();
    QueryPerformanceFrequency(&g_qpf);
    load_real();
    WCHAR *anon = env(L"CERTADM_RECORD_ANONYMISE");
    g_anon = anon != NULL && wcscmp(anon, L"0") != 0;
    mem_free(anon);
    WCHAR *name = env(L"CERTADM_RECORD");
    if (name != NULL) {
        WCHAR *path = expand_pid(name);
        if (path != NULL) {
            g_file = CreateFileW(path, FILE_APPEND_DATA,
                                 FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                                 OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
            if (g_file == INVALID_HANDLE_VALUE) {
                OutputDebugStringW(L"certadm-emu recorder: cannot open the CERTADM_RECORD file; "
                                   L"nothing is recorded\n");
            }
        }
        mem_free(path);
        mem_free(name);
    }
    if (g_file != INVALID_HANDLE_VALUE) {
        EnterCriticalSection(&g_lock);
        write_header();
        LeaveCriticalSection(&g_lock);
        g_recording = 1;
    }
    SetLastError(saved);
    return TRUE;
}

static void init(void)
{
    InitOnceExecuteOnce(&g_once, init_once, NULL, NULL);
}

/* ------------------------------------------------------------------ the 18 functions */

/* Runs `call` on the real DLL (timed), or gives `unavailable` and runs `zero`. */
#define FORWARD(e, hr, fn, call, zero)                                                       \
    do {                                                                                     \
        if (R.fn != NULL) {                                                                  \
            ev_call_start(&(e));                                                             \
            (hr) = R.fn call;                                                                \
            ev_call_stop(&(e));                                                              \
        } else {                                                                             \
            (hr) = unavailable(&(e));                                                        \
            zero;                                                                            \
        }                                                                                    \
    } while (0)

#define ZERO(p, v)                                                                           \
    do {                                                                                     \
        if ((p) != NULL) {                                                                   \
            *(p) = (v);                                                                      \
        }                                                                                    \
    } while (0)

static HRESULT finish(Ev *e, HRESULT hr)
{
    ev_end(e, hr);
    SetLastError(e->last_error);
    return hr;
}

HRESULT WINAPI CertSrvIsServerOnlineW(WCHAR const *pwszServerName, BOOL *pfServerOnline)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvIsServerOnlineW");
    a_wstr(&e, "pwszServerName", pwszServerName);
    FORWARD(e, hr, is_server_online, (pwszServerName, pfServerOnline),
            ZERO(pfServerOnline, FALSE));
    if (SUCCEEDED(hr) && pfServerOnline != NULL) {
        o_u64(&e, "fServerOnline", (uint32_t)*pfServerOnline);
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupPrepareW(WCHAR const *pwszServerName, ULONG grbitJet,
                                     ULONG dwBackupFlags, HCSBC *phbc)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupPrepareW");
    a_wstr(&e, "pwszServerName", pwszServerName);
    a_u64(&e, "grbitJet", grbitJet);
    a_u64(&e, "dwBackupFlags", dwBackupFlags);
    FORWARD(e, hr, backup_prepare, (pwszServerName, grbitJet, dwBackupFlags, phbc),
            ZERO(phbc, NULL));
    if (SUCCEEDED(hr) && phbc != NULL) {
        o_newid(&e, "hbc", &g_handles, *phbc);
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupGetDatabaseNamesW(HCSBC hbc, WCHAR **ppwszzAttachmentInformation,
                                              DWORD *pcbSize)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupGetDatabaseNamesW");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, get_database_names, (hbc, ppwszzAttachmentInformation, pcbSize),
            { ZERO(ppwszzAttachmentInformation, NULL); ZERO(pcbSize, 0); });
    if (SUCCEEDED(hr) && ppwszzAttachmentInformation != NULL) {
        o_list(&e, *ppwszzAttachmentInformation, pcbSize, 1);
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupGetDynamicFileListW(HCSBC hbc, WCHAR **ppwszzFileList, DWORD *pcbSize)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupGetDynamicFileListW");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, get_dynamic_file_list, (hbc, ppwszzFileList, pcbSize),
            { ZERO(ppwszzFileList, NULL); ZERO(pcbSize, 0); });
    if (SUCCEEDED(hr) && ppwszzFileList != NULL) {
        o_list(&e, *ppwszzFileList, pcbSize, 0); /* plain names, no CSBFT character */
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupOpenFileW(HCSBC hbc, WCHAR const *pwszAttachmentName,
                                      DWORD cbReadHintSize, LARGE_INTEGER *pliFileSize)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupOpenFileW");
    a_id(&e, "hbc", &g_handles, hbc);
    a_wstr(&e, "pwszAttachmentName", pwszAttachmentName);
    a_u64(&e, "cbReadHintSize", cbReadHintSize);
    FORWARD(e, hr, open_file, (hbc, pwszAttachmentName, cbReadHintSize, pliFileSize),
            { if (pliFileSize != NULL) pliFileSize->QuadPart = 0; });
    if (SUCCEEDED(hr) && pliFileSize != NULL) {
        o_u64(&e, "liFileSize", (uint64_t)pliFileSize->QuadPart);
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupRead(HCSBC hbc, VOID *pvBuffer, DWORD cbBuffer, DWORD *pcbRead)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupRead");
    a_id(&e, "hbc", &g_handles, hbc);
    a_u64(&e, "cbBuffer", cbBuffer);
    FORWARD(e, hr, read, (hbc, pvBuffer, cbBuffer, pcbRead), ZERO(pcbRead, 0));
    if (SUCCEEDED(hr) && pcbRead != NULL) {
        o_u64(&e, "read", *pcbRead); /* the size only: never the bytes */
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupClose(HCSBC hbc)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupClose");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, close, (hbc), (void)0);
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupGetBackupLogsW(HCSBC hbc, WCHAR **ppwszzBackupLogFiles,
                                           DWORD *pcbSize)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupGetBackupLogsW");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, get_backup_logs, (hbc, ppwszzBackupLogFiles, pcbSize),
            { ZERO(ppwszzBackupLogFiles, NULL); ZERO(pcbSize, 0); });
    if (SUCCEEDED(hr) && ppwszzBackupLogFiles != NULL) {
        o_list(&e, *ppwszzBackupLogFiles, pcbSize, 1);
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupTruncateLogs(HCSBC hbc)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupTruncateLogs");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, truncate_logs, (hbc), (void)0);
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvBackupEnd(HCSBC hbc)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvBackupEnd");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, backup_end, (hbc), (void)0);
    return finish(&e, hr);
}

VOID WINAPI CertSrvBackupFree(VOID *pv)
{
    Ev e;
    ev_begin(&e, "CertSrvBackupFree");
    a_id(&e, "pv", &g_buffers, pv); /* numbered before the buffer is gone */
    if (R.free != NULL) {
        ev_call_start(&e);
        R.free(pv);
        ev_call_stop(&e);
    } else {
        (void)unavailable(&e);
    }
    /* A void function: the event says S_OK, as the emulator's does for a live buffer. */
    (void)finish(&e, S_OK);
}

HRESULT WINAPI CertSrvRestoreGetDatabaseLocationsW(HCSBC hbc, WCHAR **ppwszzDatabaseLocationList,
                                                   DWORD *pcbSize)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvRestoreGetDatabaseLocationsW");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, get_database_locations, (hbc, ppwszzDatabaseLocationList, pcbSize),
            { ZERO(ppwszzDatabaseLocationList, NULL); ZERO(pcbSize, 0); });
    if (SUCCEEDED(hr) && ppwszzDatabaseLocationList != NULL) {
        o_list(&e, *ppwszzDatabaseLocationList, pcbSize, 1);
    }
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvRestorePrepareW(WCHAR const *pwszServerName, ULONG dwRestoreFlags,
                                      HCSBC *phbc)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvRestorePrepareW");
    a_wstr(&e, "pwszServerName", pwszServerName);
    a_u64(&e, "dwRestoreFlags", dwRestoreFlags);
    FORWARD(e, hr, restore_prepare, (pwszServerName, dwRestoreFlags, phbc), ZERO(phbc, NULL));
    if (SUCCEEDED(hr) && phbc != NULL) {
        o_newid(&e, "hbc", &g_handles, *phbc);
    }
    return finish(&e, hr);
}

/* The arguments of both registration functions, named as the emulator's trace names them. */
static void registration_args(Ev *e, HCSBC hbc, WCHAR const *pwszCheckPointFilePath,
                              WCHAR const *pwszLogPath, CSEDB_RSTMAPW *rgrstmap, LONG crstmap,
                              WCHAR const *pwszBackupLogPath, ULONG genLow, ULONG genHigh)
{
    a_id(e, "hbc", &g_handles, hbc);
    a_wstr(e, "pwszCheckPointFilePath", pwszCheckPointFilePath);
    a_wstr(e, "pwszLogPath", pwszLogPath);
    a_rstmap(e, rgrstmap, crstmap);
    a_i64(e, "crstmap", crstmap);
    a_wstr(e, "pwszBackupLogPath", pwszBackupLogPath);
    a_u64(e, "genLow", genLow);
    a_u64(e, "genHigh", genHigh);
}

HRESULT WINAPI CertSrvRestoreRegisterW(HCSBC hbc, WCHAR const *pwszCheckPointFilePath,
                                       WCHAR const *pwszLogPath, CSEDB_RSTMAPW rgrstmap[],
                                       LONG crstmap, WCHAR const *pwszBackupLogPath,
                                       ULONG genLow, ULONG genHigh)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvRestoreRegisterW");
    registration_args(&e, hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap,
                      pwszBackupLogPath, genLow, genHigh);
    FORWARD(e, hr, restore_register,
            (hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap, pwszBackupLogPath,
             genLow, genHigh),
            (void)0);
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvRestoreRegisterThroughFile(HCSBC hbc, WCHAR const *pwszCheckPointFilePath,
                                                 WCHAR const *pwszLogPath,
                                                 CSEDB_RSTMAPW rgrstmap[], LONG crstmap,
                                                 WCHAR const *pwszBackupLogPath, ULONG genLow,
                                                 ULONG genHigh)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvRestoreRegisterThroughFile");
    registration_args(&e, hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap,
                      pwszBackupLogPath, genLow, genHigh);
    FORWARD(e, hr, restore_register_through_file,
            (hbc, pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap, pwszBackupLogPath,
             genLow, genHigh),
            (void)0);
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvRestoreRegisterComplete(HCSBC hbc, HRESULT hrRestoreState)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvRestoreRegisterComplete");
    a_id(&e, "hbc", &g_handles, hbc);
    a_hr(&e, "hrRestoreState", hrRestoreState);
    FORWARD(e, hr, register_complete, (hbc, hrRestoreState), (void)0);
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvRestoreEnd(HCSBC hbc)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvRestoreEnd");
    a_id(&e, "hbc", &g_handles, hbc);
    FORWARD(e, hr, restore_end, (hbc), (void)0);
    return finish(&e, hr);
}

HRESULT WINAPI CertSrvServerControlW(WCHAR const *pwszServerName, DWORD dwControlFlags,
                                     DWORD *pcbOut, BYTE **ppbOut)
{
    Ev e;
    HRESULT hr;
    ev_begin(&e, "CertSrvServerControlW");
    a_wstr(&e, "pwszServerName", pwszServerName);
    a_u64(&e, "dwControlFlags", dwControlFlags);
    FORWARD(e, hr, server_control, (pwszServerName, dwControlFlags, pcbOut, ppbOut),
            { ZERO(pcbOut, 0); ZERO(ppbOut, NULL); });
    /* Documented to allocate nothing: a size here would be news (the bytes stay out). */
    if (SUCCEEDED(hr) && pcbOut != NULL && *pcbOut != 0) {
        o_u64(&e, "cbOut", *pcbOut);
    }
    return finish(&e, hr);
}

/* ------------------------------------------------------------------ DllMain */

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    switch (reason) {
    case DLL_PROCESS_ATTACH:
        g_self = inst;
        InitializeCriticalSection(&g_lock);
        g_tls = TlsAlloc();
        if (g_tls == TLS_OUT_OF_INDEXES) {
            return FALSE;
        }
        DisableThreadLibraryCalls(inst);
        break;
    case DLL_PROCESS_DETACH:
        /* FreeLibrary (reserved == NULL): close the file. At process exit the system does.
         * The real DLL is not freed here (no FreeLibrary under the loader lock). */
        if (reserved == NULL && g_file != INVALID_HANDLE_VALUE) {
            CloseHandle(g_file);
            g_file = INVALID_HANDLE_VALUE;
            g_recording = 0;
        }
        break;
    default:
        break;
    }
    return TRUE;
}
