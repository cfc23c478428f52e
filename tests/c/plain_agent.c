/*
 * An unmodified backup agent: it includes only certbcli.h and knows nothing of the
 * emulator. Its CA comes from the CERTADM_EMU_CONFIG file.
 *
 *   plain_agent SERVER OUTDIR [leaky]
 *
 * Full backup of SERVER into OUTDIR, careful cleanup on every error path; with "leaky"
 * it exits on the first failure without CertSrvBackupEnd, as the Microsoft samples do.
 */
#define _XOPEN_SOURCE 700
#include "certbcli.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int leaky = 0;

static void die(const char *what, HRESULT hr)
{
    fprintf(stderr, "plain_agent: %s failed [%x]\n", what, (unsigned)hr);
    exit(1);
}

static size_t wlen16(const WCHAR *s)
{
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

/* Copies one file; returns S_OK or the failing HRESULT (the file is closed either way). */
static HRESULT copy(HCSBC h, const WCHAR *name, const char *dir, int index)
{
    LARGE_INTEGER size;
    static unsigned char buf[65536];
    DWORD n = 0;
    char path[4096];
    FILE *f;
    HRESULT hr;
    memset(&size, 0, sizeof size);
    hr = CertSrvBackupOpenFileW(h, name, 0, &size);
    if (FAILED(hr)) return hr;
    snprintf(path, sizeof path, "%s/file%d", dir, index);
    f = fopen(path, "wb");
    do {
        hr = CertSrvBackupRead(h, buf, sizeof buf, &n);
        if (FAILED(hr)) {
            if (leaky) die("CertSrvBackupRead", hr);
            break;
        }
        if (f) fwrite(buf, 1, n, f);
    } while (n == sizeof buf);
    if (f) fclose(f);
    {
        HRESULT close = CertSrvBackupClose(h);
        if (SUCCEEDED(hr)) hr = close;
    }
    return hr;
}

static HRESULT copy_list(HCSBC h, const WCHAR *list, const char *dir, int *index)
{
    const WCHAR *p;
    for (p = list; *p; p += wlen16(p) + 1) {
        HRESULT hr = copy(h, p + 1, dir, (*index)++); /* skip the CSBFT prefix */
        if (FAILED(hr)) return hr;
    }
    return S_OK;
}

int main(int argc, char **argv)
{
    WCHAR server[256];
    HCSBC h = NULL;
    BOOL online = FALSE;
    WCHAR *locs = NULL, *dbs = NULL, *logs = NULL;
    DWORD cb = 0;
    HRESULT hr;
    int index = 0;
    size_t i;
    if (argc < 3) {
        fprintf(stderr, "usage: plain_agent SERVER OUTDIR [leaky]\n");
        return 2;
    }
    leaky = argc > 3 && strcmp(argv[3], "leaky") == 0;
    for (i = 0; argv[1][i] && i < 255; i++) server[i] = (WCHAR)(unsigned char)argv[1][i];
    server[i] = 0;

    hr = CertSrvIsServerOnlineW(server, &online);
    if (FAILED(hr)) die("CertSrvIsServerOnlineW", hr);
    hr = CertSrvBackupPrepareW(server, 0, CSBACKUP_TYPE_FULL, &h);
    if (FAILED(hr)) die("CertSrvBackupPrepareW", hr);
    hr = CertSrvRestoreGetDatabaseLocationsW(h, &locs, &cb);
    if (SUCCEEDED(hr)) hr = CertSrvBackupGetDatabaseNamesW(h, &dbs, &cb);
    if (SUCCEEDED(hr)) hr = copy_list(h, dbs, argv[2], &index);
    if (SUCCEEDED(hr)) hr = CertSrvBackupGetBackupLogsW(h, &logs, &cb);
    if (SUCCEEDED(hr)) hr = copy_list(h, logs, argv[2], &index);
    if (SUCCEEDED(hr)) hr = CertSrvBackupTruncateLogs(h);
    if (FAILED(hr) && leaky) die("backup", hr);
    {
        HRESULT end = CertSrvBackupEnd(h);
        if (FAILED(end)) end = CertSrvBackupEnd(h); /* a session left open blocks the CA */
        if (SUCCEEDED(hr)) hr = end;
    }
    CertSrvBackupFree(locs);
    CertSrvBackupFree(dbs);
    CertSrvBackupFree(logs);
    if (FAILED(hr)) die("backup", hr);
    printf("plain_agent: %d files backed up\n", index);
    return 0;
}
