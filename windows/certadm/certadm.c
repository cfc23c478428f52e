/*
 * certadm.dll for Windows (and Wine): the 18 certbcli functions of Certadm.dll, each
 * forwarded over TCP (Winsock) to a `certadm-emu serve` process, with the protocol of
 * docs/PROTOCOL.md (version 1).
 *
 * Build (MinGW-w64):
 *   x86_64-w64-mingw32-gcc -std=c11 -O2 -shared -o certadm.dll certadm.c certadm.def -lws2_32
 *
 * Environment:
 *   CERTADM_EMU_SERVER  host:port of the server (as `certadm-emu serve` prints it after
 *                       "listening on "). Required: without it every call fails with
 *                       RPC_S_SERVER_UNAVAILABLE (0x800706BA). Unix sockets are not supported.
 *   CERTADM_EMU_SECRET  the shared secret, if the server wants one.
 *   CERTADM_EMU_LOG     if set (non-empty), every failure is written to stderr with the
 *                       server's message.
 *
 * Behaviour (as src/abi/forward.rs, the Rust forwarder):
 *   - A thread is a client: each thread gets its own connection, opened at its first call
 *     and closed when the thread ends (DLL_THREAD_DETACH); the server then runs down the
 *     contexts the thread left open. A failed connect is RPC_S_SERVER_UNAVAILABLE and the
 *     next call tries again; a connection that breaks during a call gives
 *     RPC_S_CALL_FAILED (0x800706BE) on this and every later call of the thread.
 *   - Pointer arguments are checked here before anything is sent: out-parameters are set
 *     to NULL / 0 on entry, a NULL required pointer is E_POINTER, a string longer than
 *     32767 units or with an unpaired surrogate is E_INVALIDARG, a NULL hbc is E_HANDLE.
 *   - Lists are requested with track = 1 and copied into a LocalAlloc buffer; the buffer
 *     remembers its server token, and CertSrvBackupFree frees the buffer and forwards
 *     BackupFree(token) on the connection that received it (or on the calling thread's if
 *     that one is closed). Unknown pointers are ignored.
 *   - A read larger than the server's max_read (4 MiB) is split into several remote reads.
 */
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ constants */

/* Operation codes, MAGIC, VERSION, the limits and the HRESULTs: generated from the Rust
 * tables (CERTADM_EMU_BLESS=1 cargo test generated). */
#include "protocol.h"

#define MAX_WSTR 32767
#define MAX_RSTMAP 64

static const unsigned char MAGIC[8] = PROTO_MAGIC_BYTES;

typedef struct {
    WCHAR *pwszDatabaseName;
    WCHAR *pwszNewDatabaseName;
} RSTMAPW;

/* ------------------------------------------------------------------ logging */

static int g_log = -1;

static void log_failure(const char *call, HRESULT hr, const char *fmt, ...)
{
    if (g_log < 0) {
        const char *v = getenv("CERTADM_EMU_LOG");
        g_log = (v != NULL && v[0] != 0) ? 1 : 0;
    }
    if (!g_log) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "certadm.dll: %s: 0x%08lX: ", call, (unsigned long)(uint32_t)hr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

/* ------------------------------------------------------------------ buffers */

typedef struct {
    unsigned char *p;
    size_t len, cap;
    int oom;
} Buf;

static void buf_reserve(Buf *b, size_t more)
{
    if (b->oom) {
        return;
    }
    if (b->len + more <= b->cap) {
        return;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) {
        cap *= 2;
    }
    unsigned char *n = (unsigned char *)realloc(b->p, cap);
    if (n == NULL) {
        b->oom = 1;
        return;
    }
    b->p = n;
    b->cap = cap;
}

static void put_bytes(Buf *b, const void *p, size_t n)
{
    buf_reserve(b, n);
    if (!b->oom) {
        memcpy(b->p + b->len, p, n);
        b->len += n;
    }
}

static void put_u8(Buf *b, uint8_t v) { put_bytes(b, &v, 1); }
static void put_u16(Buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put_bytes(b, x, 2);
}
static void put_u32(Buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put_bytes(b, x, 4);
}
static void put_u64(Buf *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}
/* A validated wide string of n units. */
static void put_wstr(Buf *b, const WCHAR *s, size_t n)
{
    put_u32(b, (uint32_t)n);
    buf_reserve(b, n * 2);
    for (size_t i = 0; i < n && !b->oom; i++) {
        put_u16(b, (uint16_t)s[i]);
    }
}
static void put_astr(Buf *b, const char *s) /* ASCII only */
{
    size_t n = strlen(s);
    put_u32(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        put_u16(b, (uint16_t)(unsigned char)s[i]);
    }
}

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    int bad;
} Rd;

static int rd_need(Rd *r, size_t n)
{
    if (r->bad || r->len - r->pos < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}
static uint8_t get_u8(Rd *r)
{
    if (!rd_need(r, 1)) return 0;
    return r->p[r->pos++];
}
static uint16_t get_u16(Rd *r)
{
    if (!rd_need(r, 2)) return 0;
    uint16_t v = (uint16_t)(r->p[r->pos] | (r->p[r->pos + 1] << 8));
    r->pos += 2;
    return v;
}
static uint32_t get_u32(Rd *r)
{
    if (!rd_need(r, 4)) return 0;
    const unsigned char *q = r->p + r->pos;
    uint32_t v = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) |
                 ((uint32_t)q[3] << 24);
    r->pos += 4;
    return v;
}
static uint64_t get_u64(Rd *r)
{
    uint64_t lo = get_u32(r);
    uint64_t hi = get_u32(r);
    return lo | (hi << 32);
}
static int get_bool(Rd *r)
{
    uint8_t v = get_u8(r);
    if (v > 1) {
        r->bad = 1;
    }
    return v;
}
/* A str: returns a pointer into the frame (not aligned) and its unit count. */
static const unsigned char *get_str(Rd *r, uint32_t *units)
{
    uint32_t n = get_u32(r);
    if (r->bad || (uint64_t)n * 2 > r->len - r->pos) {
        r->bad = 1;
        *units = 0;
        return NULL;
    }
    const unsigned char *p = r->p + r->pos;
    r->pos += (size_t)n * 2;
    *units = n;
    return p;
}
/* A str as a narrow (lossy, for messages) NUL-terminated malloc'd string. */
static char *get_str_narrow(Rd *r)
{
    uint32_t n = 0;
    const unsigned char *p = get_str(r, &n);
    if (r->bad) {
        return NULL;
    }
    WCHAR *w = (WCHAR *)malloc(((size_t)n + 1) * sizeof(WCHAR));
    if (w == NULL) {
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        w[i] = (WCHAR)(p[2 * i] | (p[2 * i + 1] << 8));
    }
    w[n] = 0;
    int need = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
    char *s = (char *)malloc(need > 0 ? (size_t)need : 1);
    if (s != NULL) {
        if (need > 0) {
            WideCharToMultiByte(CP_UTF8, 0, w, -1, s, need, NULL, NULL);
        } else {
            s[0] = 0;
        }
    }
    free(w);
    return s;
}

/* ------------------------------------------------------------------ argument checks */

/* Length of a caller's string; E_INVALIDARG if no terminator within MAX_WSTR units or
 * an unpaired surrogate. */
static HRESULT check_wstr(const WCHAR *s, size_t *len)
{
    size_t n = 0;
    while (s[n] != 0) {
        if (n >= MAX_WSTR) {
            return HR_E_INVALIDARG;
        }
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        WCHAR c = s[i];
        if (c >= 0xD800 && c <= 0xDBFF) {
            if (i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
                i++;
                continue;
            }
            return HR_E_INVALIDARG;
        }
        if (c >= 0xDC00 && c <= 0xDFFF) {
            return HR_E_INVALIDARG;
        }
    }
    *len = n;
    return S_OK;
}

static HRESULT put_checked_wstr(Buf *b, const WCHAR *s)
{
    size_t n = 0;
    if (s == NULL) {
        return HR_E_POINTER;
    }
    HRESULT hr = check_wstr(s, &n);
    if (FAILED(hr)) {
        return hr;
    }
    put_wstr(b, s, n);
    return S_OK;
}

static HRESULT put_checked_opt_wstr(Buf *b, const WCHAR *s)
{
    if (s == NULL) {
        put_u8(b, 0);
        return S_OK;
    }
    put_u8(b, 1);
    return put_checked_wstr(b, s);
}

/* ------------------------------------------------------------------ connections */

typedef struct Conn {
    SOCKET s;
    CRITICAL_SECTION cs; /* one exchange at a time (frees may come from other threads) */
    LONG refs;           /* the owning thread + each live list buffer */
    int broken;          /* transport failed, or the owning thread ended */
    int closed;          /* the owning thread ended (tokens may go on any connection) */
    uint32_t max_read;
    unsigned char *frame; /* the last response frame */
    size_t frame_cap;
} Conn;

static DWORD g_tls = TLS_OUT_OF_INDEXES;
static CRITICAL_SECTION g_lock; /* the list registry and WSAStartup */
static int g_wsa_ok = 0;

static void conn_release(Conn *c)
{
    if (InterlockedDecrement(&c->refs) == 0) {
        if (c->s != INVALID_SOCKET) {
            closesocket(c->s);
        }
        DeleteCriticalSection(&c->cs);
        free(c->frame);
        free(c);
    }
}

/* Closes the calling thread's connection (thread exit). */
static void conn_thread_end(void)
{
    if (g_tls == TLS_OUT_OF_INDEXES) {
        return;
    }
    Conn *c = (Conn *)TlsGetValue(g_tls);
    if (c == NULL) {
        return;
    }
    TlsSetValue(g_tls, NULL);
    EnterCriticalSection(&c->cs);
    c->closed = 1;
    c->broken = 1;
    if (c->s != INVALID_SOCKET) {
        closesocket(c->s);
        c->s = INVALID_SOCKET;
    }
    LeaveCriticalSection(&c->cs);
    conn_release(c);
}

static int send_all(SOCKET s, const unsigned char *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int k = send(s, (const char *)p, chunk, 0);
        if (k <= 0) {
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int recv_all(SOCKET s, unsigned char *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int k = recv(s, (char *)p, chunk, 0);
        if (k <= 0) {
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int send_frame(SOCKET s, const Buf *payload)
{
    unsigned char head[4];
    uint32_t n = (uint32_t)payload->len;
    head[0] = (unsigned char)n;
    head[1] = (unsigned char)(n >> 8);
    head[2] = (unsigned char)(n >> 16);
    head[3] = (unsigned char)(n >> 24);
    if (send_all(s, head, 4) != 0) {
        return -1;
    }
    return send_all(s, payload->p, payload->len);
}

/* Reads one frame into c->frame; returns its length or -1. */
static long long recv_frame(SOCKET s, unsigned char **frame, size_t *cap, uint32_t limit)
{
    unsigned char head[4];
    if (recv_all(s, head, 4) != 0) {
        return -1;
    }
    uint32_t n = (uint32_t)head[0] | ((uint32_t)head[1] << 8) | ((uint32_t)head[2] << 16) |
                 ((uint32_t)head[3] << 24);
    if (n > limit) {
        return -1;
    }
    if (n > *cap || *frame == NULL) {
        size_t want = n ? n : 1;
        unsigned char *p = (unsigned char *)realloc(*frame, want);
        if (p == NULL) {
            return -1;
        }
        *frame = p;
        *cap = want;
    }
    if (recv_all(s, *frame, n) != 0) {
        return -1;
    }
    return (long long)n;
}

static void wsa_init(void)
{
    EnterCriticalSection(&g_lock);
    if (!g_wsa_ok) {
        WSADATA d;
        if (WSAStartup(MAKEWORD(2, 2), &d) == 0) {
            g_wsa_ok = 1;
        }
    }
    LeaveCriticalSection(&g_lock);
}

/* Opens a connection and runs the handshake. */
static HRESULT conn_open(const char *call, Conn **out)
{
    *out = NULL;
    const char *addr = getenv("CERTADM_EMU_SERVER");
    if (addr == NULL || addr[0] == 0) {
        log_failure(call, HR_RPC_S_SERVER_UNAVAILABLE, "CERTADM_EMU_SERVER is not set");
        return HR_RPC_S_SERVER_UNAVAILABLE;
    }
    wsa_init();
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || (size_t)(colon - addr) >= sizeof host || colon[1] == 0) {
        log_failure(call, HR_RPC_S_SERVER_UNAVAILABLE,
                    "CERTADM_EMU_SERVER=%s: expected host:port", addr);
        return HR_RPC_S_SERVER_UNAVAILABLE;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = 0;
    /* [::1]:port */
    char *h = host;
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h[hl - 1] = 0;
        h++;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    if (getaddrinfo(h, colon + 1, &hints, &res) != 0 || res == NULL) {
        log_failure(call, HR_RPC_S_SERVER_UNAVAILABLE, "cannot resolve %s", addr);
        return HR_RPC_S_SERVER_UNAVAILABLE;
    }
    SOCKET s = INVALID_SOCKET;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        s = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (s == INVALID_SOCKET) {
            continue;
        }
        if (connect(s, a->ai_addr, (int)a->ai_addrlen) == 0) {
            break;
        }
        closesocket(s);
        s = INVALID_SOCKET;
    }
    freeaddrinfo(res);
    if (s == INVALID_SOCKET) {
        log_failure(call, HR_RPC_S_SERVER_UNAVAILABLE, "cannot connect to %s (WSA error %d)",
                    addr, WSAGetLastError());
        return HR_RPC_S_SERVER_UNAVAILABLE;
    }
    BOOL one = TRUE;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);

    /* Hello */
    Buf b = {0};
    put_bytes(&b, MAGIC, 8);
    put_u16(&b, PROTO_VERSION);
    const char *secret = getenv("CERTADM_EMU_SECRET");
    if (secret != NULL && secret[0] != 0) {
        int n = MultiByteToWideChar(CP_UTF8, 0, secret, -1, NULL, 0);
        WCHAR *w = (WCHAR *)malloc((size_t)(n > 0 ? n : 1) * sizeof(WCHAR));
        if (w != NULL && n > 0) {
            MultiByteToWideChar(CP_UTF8, 0, secret, -1, w, n);
            put_u8(&b, 1);
            put_wstr(&b, w, (size_t)n - 1);
        } else {
            put_u8(&b, 0);
        }
        free(w);
    } else {
        put_u8(&b, 0);
    }
    char client[96];
    snprintf(client, sizeof client, "certadm.dll (Win32 forwarder, pid %lu)",
             (unsigned long)GetCurrentProcessId());
    put_astr(&b, client);
    if (b.oom) {
        free(b.p);
        closesocket(s);
        return HR_E_OUTOFMEMORY;
    }
    unsigned char *frame = NULL;
    size_t cap = 0;
    long long n = -1;
    if (send_frame(s, &b) == 0) {
        n = recv_frame(s, &frame, &cap, PROTO_MAX_HELLO_FRAME);
    }
    free(b.p);
    if (n < 0) {
        free(frame);
        closesocket(s);
        log_failure(call, HR_RPC_S_SERVER_UNAVAILABLE, "handshake with %s failed", addr);
        return HR_RPC_S_SERVER_UNAVAILABLE;
    }
    Rd r = {frame, (size_t)n, 0, 0};
    HRESULT hr = S_OK;
    uint32_t max_read = PROTO_MAX_READ;
    if (!rd_need(&r, 8) || memcmp(frame, MAGIC, 8) != 0) {
        hr = HR_RPC_S_SERVER_UNAVAILABLE;
    } else {
        r.pos = 8;
        uint16_t version = get_u16(&r);
        HRESULT rhr = (HRESULT)get_u32(&r);
        char *msg = get_str_narrow(&r);
        uint32_t units = 0;
        (void)get_str(&r, &units); /* server name */
        (void)get_u32(&r);         /* max_frame */
        max_read = get_u32(&r);
        if (r.bad || r.pos != r.len) {
            hr = HR_RPC_S_SERVER_UNAVAILABLE;
        } else if (FAILED(rhr)) {
            hr = rhr;
            log_failure(call, hr, "%s refused the connection: %s", addr, msg ? msg : "");
        } else if (version != PROTO_VERSION) {
            hr = HR_ERROR_NOT_SUPPORTED;
            log_failure(call, hr, "%s speaks protocol version %u, this client %u", addr,
                        (unsigned)version, (unsigned)PROTO_VERSION);
        }
        free(msg);
    }
    if (hr == HR_RPC_S_SERVER_UNAVAILABLE) {
        log_failure(call, hr, "handshake with %s: bad reply", addr);
    }
    if (FAILED(hr)) {
        free(frame);
        closesocket(s);
        return hr;
    }
    Conn *c = (Conn *)calloc(1, sizeof *c);
    if (c == NULL) {
        free(frame);
        closesocket(s);
        return HR_E_OUTOFMEMORY;
    }
    c->s = s;
    InitializeCriticalSection(&c->cs);
    c->refs = 1;
    c->max_read = max_read == 0 ? 1 : (max_read > PROTO_MAX_READ ? PROTO_MAX_READ : max_read);
    c->frame = frame;
    c->frame_cap = cap;
    *out = c;
    return S_OK;
}

/* The calling thread's connection, opened on first use. */
static HRESULT conn_get(const char *call, Conn **out)
{
    *out = NULL;
    if (g_tls == TLS_OUT_OF_INDEXES) {
        return HR_RPC_S_SERVER_UNAVAILABLE;
    }
    Conn *c = (Conn *)TlsGetValue(g_tls);
    if (c == NULL) {
        HRESULT hr = conn_open(call, &c);
        if (FAILED(hr)) {
            return hr;
        }
        TlsSetValue(g_tls, c);
    }
    *out = c;
    return S_OK;
}

/* One exchange on c: sends req (its op is the first two bytes), reads the response.
 * Returns the response's hr (or a transport failure); on success *out is a reader
 * positioned at the out-values (valid until the next exchange on c; call with c->cs held). */
static HRESULT exchange_locked(Conn *c, const char *call, Buf *req, Rd *out)
{
    if (req->oom) {
        return HR_E_OUTOFMEMORY;
    }
    if (req->len > PROTO_MAX_FRAME) {
        log_failure(call, HR_E_INVALIDARG, "the request exceeds the frame limit");
        return HR_E_INVALIDARG;
    }
    if (c->broken) {
        log_failure(call, HR_RPC_S_CALL_FAILED, "the connection to the server is broken");
        return HR_RPC_S_CALL_FAILED;
    }
    uint16_t op = (uint16_t)(req->p[0] | (req->p[1] << 8));
    long long n = -1;
    if (send_frame(c->s, req) == 0) {
        n = recv_frame(c->s, &c->frame, &c->frame_cap, PROTO_MAX_FRAME);
    }
    if (n < 0) {
        c->broken = 1;
        log_failure(call, HR_RPC_S_CALL_FAILED, "the connection to the server broke");
        return HR_RPC_S_CALL_FAILED;
    }
    Rd r = {c->frame, (size_t)n, 0, 0};
    uint16_t rop = get_u16(&r);
    HRESULT hr = (HRESULT)get_u32(&r);
    char *msg = get_str_narrow(&r);
    if (r.bad || rop != op) {
        free(msg);
        c->broken = 1;
        log_failure(call, HR_RPC_S_CALL_FAILED, "protocol error: bad response");
        return HR_RPC_S_CALL_FAILED;
    }
    if (FAILED(hr)) {
        if (r.pos != r.len) {
            c->broken = 1;
            free(msg);
            log_failure(call, HR_RPC_S_CALL_FAILED, "protocol error: trailing bytes");
            return HR_RPC_S_CALL_FAILED;
        }
        log_failure(call, hr, "%s", msg ? msg : "");
    }
    free(msg);
    *out = r;
    return hr;
}

/* Marks a response that does not have the expected shape. */
static HRESULT bad_out(Conn *c, const char *call, Rd *r)
{
    (void)r;
    c->broken = 1;
    log_failure(call, HR_RPC_S_CALL_FAILED, "protocol error: unexpected out-values");
    return HR_RPC_S_CALL_FAILED;
}

/* A call on the calling thread's connection with no out-values (or that ignores them). */
static HRESULT call_unit(const char *call, Buf *req, int ignore_out)
{
    Conn *c = NULL;
    HRESULT hr = conn_get(call, &c);
    if (FAILED(hr)) {
        free(req->p);
        return hr;
    }
    EnterCriticalSection(&c->cs);
    Rd r;
    hr = exchange_locked(c, call, req, &r);
    if (SUCCEEDED(hr) && !ignore_out && r.pos != r.len) {
        hr = bad_out(c, call, &r);
    }
    LeaveCriticalSection(&c->cs);
    free(req->p);
    return hr;
}

static void req_init(Buf *b, uint16_t op)
{
    memset(b, 0, sizeof *b);
    put_u16(b, op);
}

static uint64_t hraw(const void *h) { return (uint64_t)(uintptr_t)h; }

/* ------------------------------------------------------------------ list buffers */

typedef struct ListBuf {
    void *p;
    uint64_t token;
    Conn *conn; /* a reference */
    int live;
    struct ListBuf *next;
} ListBuf;

static ListBuf *g_lists = NULL;

static HRESULT list_call(const char *call, uint16_t op, const void *hbc, WCHAR **pp, DWORD *pcb)
{
    if (pp != NULL) {
        *pp = NULL;
    }
    if (pcb != NULL) {
        *pcb = 0;
    }
    if (pp == NULL || pcb == NULL) {
        log_failure(call, HR_E_POINTER, "%s is NULL", pp == NULL ? "ppwszz" : "pcbSize");
        return HR_E_POINTER;
    }
    if (hbc == NULL) {
        log_failure(call, HR_E_HANDLE, "hbc is NULL");
        return HR_E_HANDLE;
    }
    Conn *c = NULL;
    HRESULT hr = conn_get(call, &c);
    if (FAILED(hr)) {
        return hr;
    }
    Buf b;
    req_init(&b, op);
    put_u64(&b, hraw(hbc));
    put_u8(&b, 1); /* track */
    EnterCriticalSection(&c->cs);
    Rd r;
    hr = exchange_locked(c, call, &b, &r);
    free(b.p);
    void *mem = NULL;
    uint64_t token = 0;
    uint32_t size = 0;
    if (SUCCEEDED(hr)) {
        token = get_u64(&r);
        size = get_u32(&r);
        if (r.bad || size < 2 || (size & 1) != 0 || (size_t)size != r.len - r.pos) {
            hr = bad_out(c, call, &r);
        } else {
            mem = LocalAlloc(LMEM_FIXED, size);
            if (mem == NULL) {
                hr = HR_E_OUTOFMEMORY;
            } else {
                memcpy(mem, r.p + r.pos, size);
            }
        }
    }
    LeaveCriticalSection(&c->cs);
    if (FAILED(hr)) {
        if (mem != NULL) {
            LocalFree(mem);
        }
        return hr;
    }
    ListBuf *l = (ListBuf *)calloc(1, sizeof *l);
    if (l == NULL) {
        LocalFree(mem);
        return HR_E_OUTOFMEMORY;
    }
    l->p = mem;
    l->token = token;
    l->conn = c;
    InterlockedIncrement(&c->refs);
    l->live = 1;
    EnterCriticalSection(&g_lock);
    l->next = g_lists;
    g_lists = l;
    LeaveCriticalSection(&g_lock);
    *pp = (WCHAR *)mem;
    *pcb = size;
    return S_OK;
}

/* ------------------------------------------------------------------ the 18 exports */

HRESULT WINAPI CertSrvIsServerOnlineW(const WCHAR *pwszServerName, BOOL *pfServerOnline)
{
    static const char CALL[] = "CertSrvIsServerOnlineW";
    if (pfServerOnline != NULL) {
        *pfServerOnline = FALSE;
    }
    if (pfServerOnline == NULL) {
        return HR_E_POINTER;
    }
    Buf b;
    req_init(&b, OP_IS_SERVER_ONLINE);
    HRESULT hr = put_checked_wstr(&b, pwszServerName);
    if (FAILED(hr)) {
        free(b.p);
        log_failure(CALL, hr, "bad pwszServerName");
        return hr;
    }
    Conn *c = NULL;
    hr = conn_get(CALL, &c);
    if (FAILED(hr)) {
        free(b.p);
        return hr;
    }
    EnterCriticalSection(&c->cs);
    Rd r;
    hr = exchange_locked(c, CALL, &b, &r);
    if (SUCCEEDED(hr)) {
        int v = get_bool(&r);
        if (r.bad || r.pos != r.len) {
            hr = bad_out(c, CALL, &r);
        } else {
            *pfServerOnline = v ? TRUE : FALSE;
        }
    }
    LeaveCriticalSection(&c->cs);
    free(b.p);
    return hr;
}

/* BackupPrepare / RestorePrepare: a request whose answer is a handle. */
static HRESULT call_handle(const char *call, Buf *b, void **phbc)
{
    Conn *c = NULL;
    HRESULT hr = conn_get(call, &c);
    if (FAILED(hr)) {
        free(b->p);
        return hr;
    }
    EnterCriticalSection(&c->cs);
    Rd r;
    hr = exchange_locked(c, call, b, &r);
    if (SUCCEEDED(hr)) {
        uint64_t h = get_u64(&r);
        if (r.bad || r.pos != r.len || h == 0 || h > (uint64_t)UINTPTR_MAX) {
            hr = bad_out(c, call, &r);
        } else {
            *phbc = (void *)(uintptr_t)h;
        }
    }
    LeaveCriticalSection(&c->cs);
    free(b->p);
    return hr;
}

HRESULT WINAPI CertSrvBackupPrepareW(const WCHAR *pwszServerName, ULONG grbitJet,
                                     ULONG dwBackupFlags, void **phbc)
{
    static const char CALL[] = "CertSrvBackupPrepareW";
    if (phbc != NULL) {
        *phbc = NULL;
    }
    if (phbc == NULL) {
        return HR_E_POINTER;
    }
    Buf b;
    req_init(&b, OP_BACKUP_PREPARE);
    HRESULT hr = put_checked_wstr(&b, pwszServerName);
    if (FAILED(hr)) {
        free(b.p);
        return hr;
    }
    put_u32(&b, grbitJet);
    put_u32(&b, dwBackupFlags);
    return call_handle(CALL, &b, phbc);
}

HRESULT WINAPI CertSrvBackupGetDatabaseNamesW(void *hbc, WCHAR **ppwszzAttachmentInformation,
                                              DWORD *pcbSize)
{
    return list_call("CertSrvBackupGetDatabaseNamesW", OP_BACKUP_GET_DATABASE_NAMES, hbc,
                     ppwszzAttachmentInformation, pcbSize);
}

HRESULT WINAPI CertSrvBackupGetDynamicFileListW(void *hbc, WCHAR **ppwszzFileList,
                                                DWORD *pcbSize)
{
    return list_call("CertSrvBackupGetDynamicFileListW", OP_BACKUP_GET_DYNAMIC_FILE_LIST, hbc,
                     ppwszzFileList, pcbSize);
}

HRESULT WINAPI CertSrvBackupOpenFileW(void *hbc, const WCHAR *pwszAttachmentName,
                                      DWORD cbReadHintSize, LARGE_INTEGER *pliFileSize)
{
    static const char CALL[] = "CertSrvBackupOpenFileW";
    if (pliFileSize != NULL) {
        pliFileSize->QuadPart = 0;
    }
    if (pliFileSize == NULL) {
        return HR_E_POINTER;
    }
    Buf b;
    req_init(&b, OP_BACKUP_OPEN_FILE);
    put_u64(&b, hraw(hbc));
    HRESULT hr = put_checked_wstr(&b, pwszAttachmentName);
    if (FAILED(hr)) {
        free(b.p);
        return hr;
    }
    if (hbc == NULL) {
        free(b.p);
        return HR_E_HANDLE;
    }
    put_u32(&b, cbReadHintSize);
    Conn *c = NULL;
    hr = conn_get(CALL, &c);
    if (FAILED(hr)) {
        free(b.p);
        return hr;
    }
    EnterCriticalSection(&c->cs);
    Rd r;
    hr = exchange_locked(c, CALL, &b, &r);
    if (SUCCEEDED(hr)) {
        uint64_t size = get_u64(&r);
        if (r.bad || r.pos != r.len) {
            hr = bad_out(c, CALL, &r);
        } else {
            pliFileSize->QuadPart = (LONGLONG)size;
        }
    }
    LeaveCriticalSection(&c->cs);
    free(b.p);
    return hr;
}

HRESULT WINAPI CertSrvBackupRead(void *hbc, void *pvBuffer, DWORD cbBuffer, DWORD *pcbRead)
{
    static const char CALL[] = "CertSrvBackupRead";
    if (pcbRead != NULL) {
        *pcbRead = 0;
    }
    if (pcbRead == NULL || pvBuffer == NULL) {
        return HR_E_POINTER;
    }
    if (hbc == NULL) {
        return HR_E_HANDLE;
    }
    Conn *c = NULL;
    HRESULT hr = conn_get(CALL, &c);
    if (FAILED(hr)) {
        return hr;
    }
    unsigned char *dst = (unsigned char *)pvBuffer;
    DWORD total = 0;
    EnterCriticalSection(&c->cs);
    /* Remote reads of at most max_read until the buffer is full or a read is short. A
     * cbBuffer of 0 is still sent once. */
    do {
        DWORD want = cbBuffer - total;
        if (want > c->max_read) {
            want = c->max_read;
        }
        Buf b;
        req_init(&b, OP_BACKUP_READ);
        put_u64(&b, hraw(hbc));
        put_u32(&b, want);
        Rd r;
        hr = exchange_locked(c, CALL, &b, &r);
        free(b.p);
        if (FAILED(hr)) {
            break;
        }
        uint32_t got = get_u32(&r);
        if (r.bad || got > want || (size_t)got != r.len - r.pos) {
            hr = bad_out(c, CALL, &r);
            break;
        }
        memcpy(dst + total, r.p + r.pos, got);
        total += got;
        if (got < want) {
            break;
        }
    } while (total < cbBuffer);
    LeaveCriticalSection(&c->cs);
    if (FAILED(hr)) {
        return hr;
    }
    *pcbRead = total;
    return hr;
}

/* Calls taking only hbc. */
static HRESULT call_hbc(const char *call, uint16_t op, void *hbc, int ignore_out)
{
    if (hbc == NULL) {
        log_failure(call, HR_E_HANDLE, "hbc is NULL");
        return HR_E_HANDLE;
    }
    Buf b;
    req_init(&b, op);
    put_u64(&b, hraw(hbc));
    return call_unit(call, &b, ignore_out);
}

HRESULT WINAPI CertSrvBackupClose(void *hbc)
{
    return call_hbc("CertSrvBackupClose", OP_BACKUP_CLOSE, hbc, 0);
}

HRESULT WINAPI CertSrvBackupGetBackupLogsW(void *hbc, WCHAR **ppwszzBackupLogFiles,
                                           DWORD *pcbSize)
{
    return list_call("CertSrvBackupGetBackupLogsW", OP_BACKUP_GET_BACKUP_LOGS, hbc,
                     ppwszzBackupLogFiles, pcbSize);
}

HRESULT WINAPI CertSrvBackupTruncateLogs(void *hbc)
{
    /* The out-value (the generations deleted) is not part of the C API. */
    return call_hbc("CertSrvBackupTruncateLogs", OP_BACKUP_TRUNCATE_LOGS, hbc, 1);
}

HRESULT WINAPI CertSrvBackupEnd(void *hbc)
{
    return call_hbc("CertSrvBackupEnd", OP_BACKUP_END, hbc, 0);
}

VOID WINAPI CertSrvBackupFree(void *pv)
{
    static const char CALL[] = "CertSrvBackupFree";
    if (pv == NULL) {
        return;
    }
    EnterCriticalSection(&g_lock);
    ListBuf *l = g_lists;
    while (l != NULL && l->p != pv) {
        l = l->next;
    }
    uint64_t token = 0;
    Conn *owner = NULL;
    int was_live = 0;
    if (l != NULL) {
        token = l->token;
        owner = l->conn;
        was_live = l->live;
        l->live = 0;
        if (owner != NULL) {
            InterlockedIncrement(&owner->refs); /* held for this call */
        }
    }
    LeaveCriticalSection(&g_lock);
    if (l == NULL) {
        log_failure(CALL, HR_E_INVALIDARG,
                    "%p is not a live buffer of certadm.dll (never returned by a list "
                    "function); ignored",
                    pv);
        return;
    }
    if (was_live) {
        LocalFree(pv);
    }
    /* The owner connection while its thread lives; the caller's otherwise. */
    Conn *c = owner;
    int use_owner = 0;
    if (owner != NULL) {
        EnterCriticalSection(&owner->cs);
        use_owner = !owner->closed && !owner->broken;
        LeaveCriticalSection(&owner->cs);
    }
    if (!use_owner) {
        if (FAILED(conn_get(CALL, &c))) {
            c = NULL;
        }
    }
    if (c != NULL) {
        Buf b;
        req_init(&b, OP_BACKUP_FREE);
        put_u64(&b, token);
        EnterCriticalSection(&c->cs);
        Rd r;
        (void)exchange_locked(c, CALL, &b, &r);
        LeaveCriticalSection(&c->cs);
        free(b.p);
    }
    if (owner != NULL) {
        conn_release(owner);
    }
    /* A first free drops the buffer's reference on its connection; the entry stays so a
     * second free is still forwarded (the server reports it) but its address may be
     * reused by LocalAlloc: then the newer entry (at the head) wins. */
    if (was_live && owner != NULL) {
        EnterCriticalSection(&g_lock);
        l->conn = NULL;
        LeaveCriticalSection(&g_lock);
        conn_release(owner);
    }
}

HRESULT WINAPI CertSrvRestoreGetDatabaseLocationsW(void *hbc, WCHAR **ppwszzDatabaseLocationList,
                                                   DWORD *pcbSize)
{
    return list_call("CertSrvRestoreGetDatabaseLocationsW", OP_RESTORE_GET_DATABASE_LOCATIONS, hbc,
                     ppwszzDatabaseLocationList, pcbSize);
}

HRESULT WINAPI CertSrvRestorePrepareW(const WCHAR *pwszServerName, ULONG dwRestoreFlags,
                                      void **phbc)
{
    static const char CALL[] = "CertSrvRestorePrepareW";
    if (phbc != NULL) {
        *phbc = NULL;
    }
    if (phbc == NULL) {
        return HR_E_POINTER;
    }
    Buf b;
    req_init(&b, OP_RESTORE_PREPARE);
    HRESULT hr = put_checked_wstr(&b, pwszServerName);
    if (FAILED(hr)) {
        free(b.p);
        return hr;
    }
    put_u32(&b, dwRestoreFlags);
    return call_handle(CALL, &b, phbc);
}

static HRESULT registration(const char *call, uint16_t op, void *hbc, const WCHAR *ckpt,
                            const WCHAR *logpath, const RSTMAPW *map, LONG crstmap,
                            const WCHAR *backuplog, ULONG genLow, ULONG genHigh)
{
    if (crstmap < 0 || crstmap > MAX_RSTMAP) {
        log_failure(call, HR_E_INVALIDARG, "crstmap %ld is outside 0..=%d", (long)crstmap,
                    MAX_RSTMAP);
        return HR_E_INVALIDARG;
    }
    if (crstmap > 0 && map == NULL) {
        log_failure(call, HR_E_POINTER, "rgrstmap is NULL");
        return HR_E_POINTER;
    }
    Buf b;
    req_init(&b, op);
    put_u64(&b, hraw(hbc));
    /* The map is validated first, as in process. */
    Buf m = {0};
    HRESULT hr = S_OK;
    for (LONG i = 0; i < crstmap && SUCCEEDED(hr); i++) {
        hr = put_checked_wstr(&m, map[i].pwszDatabaseName);
        if (SUCCEEDED(hr)) {
            hr = put_checked_wstr(&m, map[i].pwszNewDatabaseName);
        }
    }
    if (SUCCEEDED(hr)) hr = put_checked_opt_wstr(&b, ckpt);
    if (SUCCEEDED(hr)) hr = put_checked_opt_wstr(&b, logpath);
    if (SUCCEEDED(hr)) {
        put_u32(&b, (uint32_t)crstmap);
        if (m.len > 0) {
            put_bytes(&b, m.p, m.len);
        }
        hr = put_checked_opt_wstr(&b, backuplog);
    }
    free(m.p);
    if (FAILED(hr)) {
        free(b.p);
        log_failure(call, hr, "bad string argument");
        return hr;
    }
    if (m.oom) {
        free(b.p);
        return HR_E_OUTOFMEMORY;
    }
    put_u32(&b, genLow);
    put_u32(&b, genHigh);
    return call_unit(call, &b, 0);
}

HRESULT WINAPI CertSrvRestoreRegisterW(void *hbc, const WCHAR *pwszCheckPointFilePath,
                                       const WCHAR *pwszLogPath, RSTMAPW rgrstmap[],
                                       LONG crstmap, const WCHAR *pwszBackupLogPath,
                                       ULONG genLow, ULONG genHigh)
{
    return registration("CertSrvRestoreRegisterW", OP_RESTORE_REGISTER, hbc,
                        pwszCheckPointFilePath, pwszLogPath, rgrstmap, crstmap,
                        pwszBackupLogPath, genLow, genHigh);
}

HRESULT WINAPI CertSrvRestoreRegisterThroughFile(void *hbc, const WCHAR *pwszCheckPointFilePath,
                                                 const WCHAR *pwszLogPath, RSTMAPW rgrstmap[],
                                                 LONG crstmap, const WCHAR *pwszBackupLogPath,
                                                 ULONG genLow, ULONG genHigh)
{
    static const char CALL[] = "CertSrvRestoreRegisterThroughFile";
    if (hbc == NULL) {
        /* As the in-process export: this one needs a handle. */
        log_failure(CALL, HR_E_HANDLE, "hbc is NULL");
        return HR_E_HANDLE;
    }
    return registration(CALL, OP_RESTORE_REGISTER_THROUGH_FILE, hbc, pwszCheckPointFilePath,
                        pwszLogPath, rgrstmap, crstmap, pwszBackupLogPath, genLow, genHigh);
}

HRESULT WINAPI CertSrvRestoreRegisterComplete(void *hbc, HRESULT hrRestoreState)
{
    Buf b;
    req_init(&b, OP_RESTORE_REGISTER_COMPLETE);
    put_u64(&b, hraw(hbc));
    put_u32(&b, (uint32_t)hrRestoreState);
    return call_unit("CertSrvRestoreRegisterComplete", &b, 0);
}

HRESULT WINAPI CertSrvRestoreEnd(void *hbc)
{
    return call_hbc("CertSrvRestoreEnd", OP_RESTORE_END, hbc, 0);
}

HRESULT WINAPI CertSrvServerControlW(const WCHAR *pwszServerName, DWORD dwControlFlags,
                                     DWORD *pcbOut, BYTE **ppbOut)
{
    if (pcbOut != NULL) {
        *pcbOut = 0;
    }
    if (ppbOut != NULL) {
        *ppbOut = NULL;
    }
    Buf b;
    req_init(&b, OP_SERVER_CONTROL);
    HRESULT hr = put_checked_wstr(&b, pwszServerName);
    if (FAILED(hr)) {
        free(b.p);
        return hr;
    }
    put_u32(&b, dwControlFlags);
    return call_unit("CertSrvServerControlW", &b, 0);
}

/* ------------------------------------------------------------------ DllMain */

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    switch (reason) {
    case DLL_PROCESS_ATTACH:
        InitializeCriticalSection(&g_lock);
        g_tls = TlsAlloc();
        if (g_tls == TLS_OUT_OF_INDEXES) {
            return FALSE;
        }
        break;
    case DLL_THREAD_DETACH:
        conn_thread_end();
        break;
    case DLL_PROCESS_DETACH:
        /* At process exit (reserved != NULL) other threads are gone and sockets are
         * closed by the system; on FreeLibrary close the calling thread's connection. */
        if (reserved == NULL) {
            conn_thread_end();
            TlsFree(g_tls);
            g_tls = TLS_OUT_OF_INDEXES;
        }
        break;
    default:
        break;
    }
    return TRUE;
}
